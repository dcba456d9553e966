"""The training loop: exact resume (one objective, and a K-cycle killed mid-cycle), gradient
accumulation that accumulates, non-finite losses named, evaluation rows and cost records."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from torch import nn

from pruneforget.report.cost import cost_table, read_costs
from pruneforget.train.batches import sample_generator
from pruneforget.train.loop import NonFiniteLoss, micro_batch_positions, train
from pruneforget.train.objective import LoopSettings, Objective, constant_schedule, cycle_schedule


def toy_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))


def toy_batches(seed: int):
    """Regression pairs addressed by position: x ~ N(0, I), y = sum(x) + noise."""
    def batches(positions):
        xs = torch.stack([torch.randn(3, generator=sample_generator(seed, p)) for p in positions])
        return {"x": xs, "y": xs.sum(1, keepdim=True) + 0.1 * torch.sin(xs[:, :1] * 7)}
    return batches


def mse_objective(name: str, model: nn.Module, params=None, **kw) -> Objective:
    def loss(models, batch):
        pred = models["net"](batch["x"])
        mse = (pred - batch["y"]).pow(2).mean()
        return {"mse": mse, "total": mse}
    return Objective(name=name, params=list(params if params is not None else model.parameters()), loss=loss,
                     batches=toy_batches(kw.pop("seed", 0)), terms=("mse", "total"), **kw)


def settings(**kw) -> LoopSettings:
    return LoopSettings(**{"steps": 6, "micro_batch_size": 4, "checkpoint_every": 2, "progress": False, **kw})


class Crash(RuntimeError):
    pass


def crash_at(step_to_crash: int):
    def hook(step, record):
        if step == step_to_crash:
            raise Crash(f"killed after step {step}")
    return hook


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_resumed_run_matches_uninterrupted_run(tmp_path):
    model = toy_model()
    train([mse_objective("ft", model, lr=0.05, warmup_steps=3)], constant_schedule("ft"), {"net": model},
          settings(), tmp_path / "full")
    full = weights(model)

    model = toy_model()
    with pytest.raises(Crash):
        train([mse_objective("ft", model, lr=0.05, warmup_steps=3)], constant_schedule("ft"), {"net": model},
              settings(), tmp_path / "cut", on_step_end=crash_at(3))
    assert [p.name for p in (tmp_path / "cut" / "checkpoints").iterdir()] == ["step-00000002"]
    model = toy_model()  # a fresh process: weights come back from the checkpoint
    train([mse_objective("ft", model, lr=0.05, warmup_steps=3)], constant_schedule("ft"), {"net": model},
          settings(), tmp_path / "cut")
    assert_same_weights(weights(model), full)

    a = pd.read_csv(tmp_path / "full" / "metrics.csv").drop(columns="seconds")
    b = pd.read_csv(tmp_path / "cut" / "metrics.csv").drop(columns="seconds")
    pd.testing.assert_frame_equal(a, b)  # step 3 logged once, not twice
    assert a["step"].tolist() == [1, 2, 3, 4, 5, 6]
    assert a["lr"].tolist()[:3] == pytest.approx([0.05 / 3, 0.05 * 2 / 3, 0.05])  # warm-up counted in steps


def two_objectives(model):
    first, last = list(model[0].parameters()), list(model[2].parameters())
    return [mse_objective("lower", model, params=first + last, lr=0.03, warmup_steps=2, seed=1),
            mse_objective("upper", model, params=last, lr=0.1, seed=2)]


def test_k_cycle_resumed_mid_cycle_matches_uninterrupted_run(tmp_path):
    schedule = cycle_schedule("lower", "upper", k=2)  # steps 1..8: L L U L L U L L
    assert [schedule(s) for s in range(8)] == ["lower", "lower", "upper"] * 2 + ["lower", "lower"]
    cfg = settings(steps=8, checkpoint_every=4)

    model = toy_model()
    full_cost = train(two_objectives(model), schedule, {"net": model}, cfg, tmp_path / "full")
    full = weights(model)

    model = toy_model()
    with pytest.raises(Crash):  # checkpoint after step 4 (the first lower step of a cycle), killed at 5
        train(two_objectives(model), schedule, {"net": model}, cfg, tmp_path / "cut", on_step_end=crash_at(5))
    model = toy_model()
    cost = train(two_objectives(model), schedule, {"net": model}, cfg, tmp_path / "cut")
    assert_same_weights(weights(model), full)
    log = pd.read_csv(tmp_path / "cut" / "metrics.csv")
    assert log["objective"].tolist() == [schedule(s) for s in range(8)]
    assert {k: v["steps"] for k, v in cost["objectives"].items()} == {"lower": 6, "upper": 2}
    assert cost == json.loads((tmp_path / "cut" / "cost.json").read_text())
    assert full_cost["objectives"]["upper"]["seconds_per_step"] > 0
    assert full_cost["objectives"]["upper"]["seconds_per_step_steady"] > 0  # 2 upper steps, the first left out
    assert full_cost["objectives"]["lower"]["peak_memory_bytes"] > 0
    # The cost table reads what the loop writes: every kind, in its units, nothing noted missing.
    costs = {"run-s0": read_costs([tmp_path / "full"])["full"]}  # as training seed 0 of a row `run`
    table = cost_table(costs, [{"label": "b", "model": "run", "kinds": ["lower", "upper"]}], [], [0])
    assert (table["note"] == "").all(), table
    upper = table[table.kind == "upper"].iloc[0]
    assert upper.steps == 2 and upper.seconds_per_step == full_cost["objectives"]["upper"]["seconds_per_step_steady"]
    assert upper.peak_memory_mb == full_cost["objectives"]["upper"]["peak_memory_bytes"] / 2**20


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_two_accumulated_micro_batches_equal_one_double_batch(tmp_path, optimizer):
    results = []
    for micro, accum in [(8, 1), (4, 2)]:
        model = toy_model()
        train([mse_objective("ft", model, lr=0.1, optimizer=optimizer)], constant_schedule("ft"), {"net": model},
              settings(steps=2, micro_batch_size=micro, gradient_accumulation_steps=accum, checkpoint_every=0),
              tmp_path / f"{micro}x{accum}")
        results.append(weights(model))
    for k in results[0]:
        torch.testing.assert_close(results[1][k], results[0][k], rtol=1e-6, atol=1e-7)
    # and it is not a no-op: the weights moved
    assert not torch.allclose(results[0]["0.weight"], toy_model()[0].weight)


def test_micro_batches_tile_the_effective_batch():
    class One:
        num_processes, process_index = 1, 0
    cfg = settings(micro_batch_size=3, gradient_accumulation_steps=2)
    got = [list(micro_batch_positions(c, m, cfg, One)) for c in range(2) for m in range(2)]
    assert got == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]


def test_non_finite_loss_stops_naming_step_and_terms(tmp_path):
    model = toy_model()

    def loss(models, batch):
        mse = (models["net"](batch["x"]) - batch["y"]).pow(2).mean()
        bad = torch.tensor(float("nan")) if loss.calls >= 2 else torch.tensor(0.5)
        loss.calls += 1
        return {"mse": mse, "kd": bad, "total": mse + bad}
    loss.calls = 0
    obj = Objective("ft", list(model.parameters()), loss, toy_batches(0), lr=0.01, terms=("mse", "kd", "total"))
    with pytest.raises(NonFiniteLoss, match=r"step 3 .*'ft'.*mse=[0-9.]+, kd=nan, total=nan"):
        train([obj], constant_schedule("ft"), {"net": model}, settings(checkpoint_every=0), tmp_path)


def test_evaluation_rows_every_n_steps_survive_resume(tmp_path):
    def evaluate(step):
        return {"denoising_error": float(step) / 10, "frechet": 1.0}

    model = toy_model()
    with pytest.raises(Crash):
        train([mse_objective("ft", model, lr=0.01)], constant_schedule("ft"), {"net": model},
              settings(steps=6, eval_every=2, checkpoint_every=4), tmp_path, evaluate=evaluate, on_step_end=crash_at(5))
    model = toy_model()
    train([mse_objective("ft", model, lr=0.01)], constant_schedule("ft"), {"net": model},
          settings(steps=6, eval_every=2, checkpoint_every=4), tmp_path, evaluate=evaluate)
    rows = pd.read_csv(tmp_path / "eval.csv")
    assert rows.columns.tolist() == ["step", "denoising_error", "frechet"]
    assert rows["step"].tolist() == [0, 2, 4, 6]


def test_unknown_objective_in_schedule_is_rejected_before_training(tmp_path):
    model = toy_model()
    with pytest.raises(ValueError, match="upper"):
        train([mse_objective("lower", model, lr=0.01)], cycle_schedule("lower", "upper", 2), {"net": model},
              settings(), tmp_path)
    assert not (tmp_path / "metrics.csv").exists()


def test_resume_with_other_settings_is_refused(tmp_path):
    model = toy_model()
    with pytest.raises(Crash):
        train([mse_objective("ft", model, lr=0.01)], constant_schedule("ft"), {"net": model}, settings(),
              tmp_path, on_step_end=crash_at(3))
    with pytest.raises(ValueError, match="other settings"):
        train([mse_objective("ft", model, lr=0.01)], constant_schedule("ft"), {"net": model},
              settings(micro_batch_size=5), tmp_path)


def test_a_step_uses_only_its_own_objectives_gradients(tmp_path):
    """An upper step backpropagates into parameters it does not update; the next lower step must
    not see those gradients (checked against plain SGD steps by hand)."""
    model = toy_model()
    objs = [mse_objective("lower", model, params=list(model[0].parameters()), lr=0.1, optimizer="sgd", seed=1),
            mse_objective("upper", model, params=list(model[2].parameters()), lr=0.1, optimizer="sgd", seed=2)]
    train(objs, lambda s: ["upper", "lower"][s], {"net": model}, settings(steps=2, checkpoint_every=0), tmp_path)

    ref = toy_model()
    for params, seed in [(list(ref[2].parameters()), 2), (list(ref[0].parameters()), 1)]:
        batch = toy_batches(seed)(range(4))
        loss = (ref(batch["x"]) - batch["y"]).pow(2).mean()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= 0.1 * g
    for k, v in weights(ref).items():
        torch.testing.assert_close(weights(model)[k], v, rtol=1e-6, atol=1e-7)


def test_evaluations_leave_training_untouched(tmp_path):
    """A run that evaluates every step ends with the weights of a run that never evaluates (what
    lets the workflow pass --no-eval to every run no curve figure plots): an evaluation that puts
    the model in eval mode and draws from the global RNG changes nothing the training reads."""
    def evaluate_with(model):
        def evaluate(step):
            model.eval()
            with torch.no_grad():
                out = model(torch.randn(5, 3))
            return {"mean": float(out.mean())}
        return evaluate

    def run(eval_every, out):
        torch.manual_seed(1)
        model = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.3), nn.Tanh(), nn.Linear(8, 1))
        train([mse_objective("ft", model, lr=0.05)], constant_schedule("ft"), {"net": model},
              settings(steps=6, eval_every=eval_every, checkpoint_every=0), tmp_path / out,
              evaluate=evaluate_with(model) if eval_every else None)
        return weights(model)

    with_eval, without = run(1, "eval"), run(0, "no-eval")
    assert (tmp_path / "eval" / "eval.csv").exists() and not (tmp_path / "no-eval" / "eval.csv").exists()
    assert_same_weights(with_eval, without)
