"""The one training loop: fine-tuning (Eq. 8), ESD and the bilevel method (Algorithm 1) are
configurations of it.

A run is a set of named **objectives** and a **schedule** `step -> objective name`:

    fine-tuning      {"ft"}                      every step "ft"
    bilevel (paper)  {"lower", "upper"}          K lower steps, then one upper step
    authors' code    {"lower", "upper"}          an upper step after every 10 lower steps

An objective owns the parameters it updates, its loss (batch -> named terms, `total` is
backpropagated), its batches, and its own AdamW optimizer and learning-rate schedule. A global
step is one optimizer step of one objective over the effective batch (micro-batches x processes
x accumulation). The schedule is a pure function of the global step, and batches are addressed
by sample position (see train/batches.py), so a resumed run continues exactly: same data, same
place in a K-cycle, same optimizer and schedule state, same RNG state.

Built on accelerate: device placement, DDP, bf16 autocast, `accelerator.accumulate`,
`save_state` / `load_state` checkpoints. Writes into the work directory:

    metrics.csv     step, objective, lr, seconds, and every loss term
    eval.csv        step and whatever the evaluation callback returns (every `eval_every` steps)
    cost.json       per objective: steps, seconds per step, peak memory
    checkpoints/    step-NNNNNNNN/ (accelerate state + loop state), the latest `keep_checkpoints`
"""

from __future__ import annotations

import math
import resource
import shutil
import time
import warnings
from pathlib import Path
from typing import Callable, Mapping, Sequence

import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, broadcast
from diffusers.optimization import get_scheduler
from torch import Tensor, nn
from tqdm.auto import tqdm

from pruneforget.io import CorruptCheckpoint, write_json
from pruneforget.train.metrics_log import CsvLog
from pruneforget.train.objective import (
    Batch,
    LoopSettings,
    Objective,
    make_optimizer,
    objective_step_counts,
    trajectory_settings,
)


class SettingsChanged(ValueError):
    """A checkpoint of a run with other loop settings (commands never get here: resumable_dir
    starts such work over; this guards direct callers of `train`)."""


class LoopState:
    """The loop's own resumable state, checkpointed with accelerate's `register_for_checkpointing`."""

    def __init__(self, fingerprint: dict):
        self.step = 0
        self.counts: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        self.steady: dict[str, list] = {}  # name -> [seconds, steps] without each process's first step
        self.peak_memory: dict[str, int] = {}
        self.fingerprint = fingerprint

    def state_dict(self) -> dict:
        return {"step": self.step, "counts": dict(self.counts), "seconds": dict(self.seconds),
                "steady": {k: list(v) for k, v in self.steady.items()}, "peak_memory": dict(self.peak_memory),
                "fingerprint": self.fingerprint}

    def load_state_dict(self, state: dict) -> None:
        if state["fingerprint"] != self.fingerprint:
            raise SettingsChanged(
                f"the checkpoint was written by a run with other settings ({state['fingerprint']}) than this one "
                f"({self.fingerprint}); delete the work directory to start over"
            )
        self.step, self.counts = state["step"], dict(state["counts"])
        self.seconds, self.peak_memory = dict(state["seconds"]), dict(state["peak_memory"])
        self.steady = {k: list(v) for k, v in state["steady"].items()}


def make_accelerator(mixed_precision: str = "no", work_dir: Path | None = None,
                     find_unused_parameters: bool = False) -> Accelerator:
    """An Accelerator (device, DDP under `accelerate launch` / torchrun, mixed precision); logs to
    TensorBoard under work_dir when tensorboard is installed. `train` sets its accumulation steps."""
    try:
        import tensorboard  # noqa: F401

        log_with = "tensorboard" if work_dir is not None else None
    except ImportError:
        log_with = None
    return Accelerator(
        # Without cpu=True, processes started by `accelerate launch --multi_gpu` (or torchrun) on a
        # machine with no CUDA each run alone (DistributedType.NO) and train the whole run twice;
        # with it they form a gloo process group (MULTI_CPU), as the sd21 smoke runs on 2 CPU processes.
        cpu=not torch.cuda.is_available(),
        mixed_precision=mixed_precision,
        log_with=log_with,
        project_dir=str(work_dir) if work_dir is not None else None,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)],
    )


def micro_batch_positions(count: int, micro: int, settings: LoopSettings, accelerator: Accelerator) -> range:
    """Sample positions of one micro-batch: the objective's `count`-th step, micro-batch `micro`
    on this process. Consecutive, so 2 micro-batches of b cover the same samples as 1 of 2b."""
    g = (count * settings.gradient_accumulation_steps + micro) * accelerator.num_processes + accelerator.process_index
    b = settings.micro_batch_size
    return range(g * b, (g + 1) * b)


def _to_device(batch: Batch, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}


def _peak_memory(device: torch.device) -> int:
    """Peak bytes since the last reset: CUDA allocations on GPU, the process RSS high-water mark on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _checkpoints(work_dir: Path) -> list[Path]:
    root = work_dir / "checkpoints"
    return sorted(root.glob("step-[0-9]*")) if root.exists() else []


class NonFiniteLoss(FloatingPointError):
    """A loss term became NaN or infinite; the message names the step and every term."""


def optimizer_step(obj: Objective, optimizer, lr_schedule, count: int, step: int, models: Mapping[str, nn.Module],
                   prepared_models: Mapping[str, nn.Module], settings: LoopSettings, accelerator: Accelerator) -> dict[str, float]:
    """One optimizer step of `obj` (its `count`-th): gradients accumulated over the micro-batches
    (`accelerator.accumulate`: no DDP sync until the last), then the update and the schedule,
    then the objective's closed-form part (`Objective.apply`) if it has one.
    Returns each loss term averaged over the micro-batches; a non-finite term stops the run."""
    for m in models.values():
        m.zero_grad(set_to_none=True)  # no stale gradients from another objective's step
    sums: dict[str, float] = {}
    for micro in range(settings.gradient_accumulation_steps):
        batch = _to_device(obj.batches(micro_batch_positions(count, micro, settings, accelerator)), accelerator.device)
        batch["step"] = step  # for objectives whose loss follows a schedule of its own (APTP's noise)
        with accelerator.accumulate(*prepared_models.values()), accelerator.autocast():
            terms = obj.loss(prepared_models, batch)
            values = {k: float(v.detach()) for k, v in terms.items()}
            if not all(math.isfinite(v) for v in values.values()):
                listed = ", ".join(f"{k}={v}" for k, v in values.items())
                raise NonFiniteLoss(f"non-finite loss at step {step + 1} (objective {obj.name!r}, micro-batch {micro}): {listed}")
            if obj.apply is None or terms["total"].requires_grad:  # a closed-form step may have no gradient part
                accelerator.backward(terms["total"])  # divided by the accumulation steps
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v / settings.gradient_accumulation_steps
    if not accelerator.sync_gradients:
        raise RuntimeError("gradient accumulation is out of step with the optimizer (accelerate did not sync)")
    # A closed-form objective whose loss had no gradient part takes no optimizer step (fp16's
    # grad scaler refuses a step without gradients).
    if obj.apply is None or any(p.grad is not None for p in obj.params):
        for param, mask in obj.grad_masks:  # a masked objective (e.g. saliency-masked ESD) updates only its mask
            if param.grad is not None:
                param.grad.mul_(mask)
        if obj.max_grad_norm:
            accelerator.clip_grad_norm_(obj.params, obj.max_grad_norm)
        optimizer.step()
        lr_schedule.step()
    else:  # the schedule still counts the objective's steps; torch warns of a step without optimizer.step
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
            lr_schedule.step()
    optimizer.zero_grad(set_to_none=True)
    if obj.apply is not None:
        with torch.no_grad():
            obj.apply(prepared_models)
            if accelerator.num_processes > 1:
                broadcast([p.data for p in obj.params], from_process=0)
    return sums


def train(
    objectives: Sequence[Objective],
    schedule: Callable[[int], str],
    models: Mapping[str, nn.Module],
    settings: LoopSettings,
    work_dir: Path,
    *,
    evaluate: Callable[[int], Mapping[str, float]] | None = None,
    on_step_end: Callable[[int, dict], None] | None = None,
    accelerator: Accelerator | None = None,
    fingerprint: dict | None = None,
) -> dict:
    """Run `settings.steps` global steps, resuming from the latest checkpoint in `work_dir`.

    `models` are the trainable modules (prepared by accelerate; objectives' params live in them).
    `evaluate(step)` runs on the main process at step 0 (fresh runs), every `eval_every` steps and
    at the end; its dict becomes a row of eval.csv. `on_step_end(step, record)` runs after each
    step's logging, evaluation and checkpoint. Returns the cost summary (also cost.json).
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    by_name = {o.name: o for o in objectives}
    if len(by_name) != len(objectives):
        raise ValueError(f"objective names must be unique: {[o.name for o in objectives]}")
    total_counts = objective_step_counts(schedule, 0, settings.steps)
    unknown = set(total_counts) - set(by_name)
    if unknown:
        raise ValueError(f"the schedule names objective(s) {sorted(unknown)}; defined: {sorted(by_name)}")

    accelerator = accelerator or make_accelerator(settings.mixed_precision, work_dir, settings.find_unused_parameters)
    accelerator.gradient_accumulation_steps = settings.gradient_accumulation_steps
    names = list(models)
    if settings.gradient_checkpointing:
        for m in models.values():
            if hasattr(m, "enable_gradient_checkpointing"):
                m.enable_gradient_checkpointing()
    for m in models.values():
        m.train()

    optimizers, lr_schedules = {}, {}
    for o in objectives:
        optimizers[o.name] = make_optimizer(o)
        lr_schedules[o.name] = get_scheduler(o.lr_schedule, optimizers[o.name], num_warmup_steps=o.warmup_steps,
                                             num_training_steps=max(total_counts.get(o.name, 0), 1))
    prepared = accelerator.prepare(*[models[n] for n in names], *[optimizers[o.name] for o in objectives])
    prepared_models = dict(zip(names, prepared[: len(names)]))
    optimizers = dict(zip([o.name for o in objectives], prepared[len(names):]))
    # Schedules are stepped by hand once per optimizer step of their objective, so warm-up counts
    # optimizer steps whatever the number of processes (accelerate's prepared schedulers would
    # advance once per process).
    state = LoopState({**(fingerprint or {}), **trajectory_settings(settings),
                       "objectives": [o.name for o in objectives]})
    for o in objectives:
        accelerator.register_for_checkpointing(lr_schedules[o.name])
    accelerator.register_for_checkpointing(state)

    existing = _checkpoints(work_dir)
    if existing:
        try:
            accelerator.load_state(str(existing[-1]))
        except SettingsChanged:
            raise
        except Exception as exc:  # any unreadable part: safetensors, pickle, a missing file
            raise CorruptCheckpoint(existing[-1], work_dir, exc) from exc
    start = state.step

    term_names = list(dict.fromkeys(t for o in objectives for t in o.terms))
    metrics = CsvLog(work_dir / "metrics.csv", ["objective", "lr", "seconds", *term_names], resume_step=start) \
        if accelerator.is_main_process else None
    eval_log = None
    if accelerator.log_with:
        accelerator.init_trackers("train")

    def run_evaluation(step: int) -> None:
        nonlocal eval_log
        if evaluate is not None and accelerator.is_main_process:
            for m in models.values():
                m.eval()
            # The global RNG is forked: random numbers an evaluation draws are not taken from the
            # training steps (dropout), so a run trains the same weights with or without evaluating.
            cuda = [accelerator.device.index or 0] if accelerator.device.type == "cuda" else []
            with torch.random.fork_rng(devices=cuda), torch.no_grad():
                row = dict(evaluate(step))
            for m in models.values():
                m.train()
            if eval_log is None:
                eval_log = CsvLog(work_dir / "eval.csv", list(row), resume_step=step)
            eval_log.log(step, **row)
            accelerator.log({f"eval/{k}": v for k, v in row.items()}, step=step)
        accelerator.wait_for_everyone()

    # Evaluation steps depend on settings only: every process reaches the same barriers, while
    # only the main one (which alone may hold an `evaluate`) evaluates.
    if settings.eval_every and start == 0:
        run_evaluation(0)
    elif evaluate is not None and accelerator.is_main_process and (work_dir / "eval.csv").exists():
        # Resumed: keep the rows up to the checkpoint, append from there.
        columns = [c for c in pd.read_csv(work_dir / "eval.csv", nrows=0).columns if c != "step"]
        eval_log = CsvLog(work_dir / "eval.csv", columns, resume_step=start)

    device = accelerator.device
    warmed_up: set[str] = set()
    bar = tqdm(total=settings.steps, initial=start, desc="train", disable=not (settings.progress and accelerator.is_local_main_process))
    for step in range(start, settings.steps):
        name = schedule(step)
        obj, optimizer, lr_schedule = by_name[name], optimizers[name], lr_schedules[name]
        count = state.counts.get(name, 0)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        sums = optimizer_step(obj, optimizer, lr_schedule, count, step, models, prepared_models, settings, accelerator)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        state.counts[name] = count + 1
        state.seconds[name] = state.seconds.get(name, 0.0) + seconds
        if name in warmed_up:  # a process's first step of an objective pays one-time kernel set-up
            steady = state.steady.setdefault(name, [0.0, 0])
            steady[0], steady[1] = steady[0] + seconds, steady[1] + 1
        warmed_up.add(name)
        state.peak_memory[name] = max(state.peak_memory.get(name, 0), _peak_memory(device))
        state.step = step + 1
        record = {"objective": name, "lr": lr_schedule.get_last_lr()[0], "seconds": seconds, **sums}
        if accelerator.num_processes > 1:
            means = accelerator.reduce(torch.tensor([sums[k] for k in sums], device=device), "mean")
            record.update(dict(zip(sums, means.tolist())))
        if settings.log_every and (state.step % settings.log_every == 0 or state.step == settings.steps):
            if metrics is not None:
                metrics.log(state.step, **record)
            accelerator.log({f"{name}/{k}": v for k, v in record.items() if k != "objective"}, step=state.step)
        bar.update(1)
        bar.set_postfix(obj=name, total=f"{sums.get('total', float('nan')):.4f}")
        if settings.eval_every and (state.step % settings.eval_every == 0 or state.step == settings.steps):
            run_evaluation(state.step)  # before the checkpoint: a resumed run never misses a row
        if settings.checkpoint_every and state.step % settings.checkpoint_every == 0:
            save_checkpoint(accelerator, work_dir, state.step, settings.keep_checkpoints)
        if on_step_end is not None:
            on_step_end(state.step, record)
    bar.close()
    accelerator.wait_for_everyone()
    cost = cost_summary(state, settings, accelerator)
    if accelerator.is_main_process:
        write_json(work_dir / "cost.json", cost)
    for tracker in accelerator.trackers:
        tracker.finish()  # not end_training(): it ends the process group, and callers may still sync
    for m in models.values():
        m.eval()
    return cost


def save_checkpoint(accelerator: Accelerator, work_dir: Path, step: int, keep: int) -> Path:
    """accelerate's `save_state` into checkpoints/step-NNNNNNNN, written beside and renamed (a crash
    mid-save leaves no half checkpoint to resume from); keeps the latest `keep`."""
    root = work_dir / "checkpoints"
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for old in _checkpoints(work_dir)[: -max(keep, 1)]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def cost_summary(state: LoopState, settings: LoopSettings, accelerator: Accelerator) -> dict:
    """Seconds per step and peak memory per objective (cost.json). `seconds_per_step_steady`
    leaves out each process's first step of an objective (one-time kernel set-up: 10-40 s on a
    CPU). On CPU the memory is the process's RSS high-water mark (it never decreases, so it is an
    upper bound per objective)."""
    device = accelerator.device
    return {
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "memory_measure": "torch.cuda.max_memory_allocated" if device.type == "cuda" else "ru_maxrss (process high-water mark)",
        "num_processes": accelerator.num_processes,
        "micro_batch_size": settings.micro_batch_size,
        "gradient_accumulation_steps": settings.gradient_accumulation_steps,
        "effective_batch_size": settings.micro_batch_size * settings.gradient_accumulation_steps * accelerator.num_processes,
        "mixed_precision": settings.mixed_precision,
        "gradient_checkpointing": settings.gradient_checkpointing,
        "objectives": {
            name: {"steps": n, "seconds_total": state.seconds[name], "seconds_per_step": state.seconds[name] / n,
                   "seconds_per_step_steady": (state.steady[name][0] / state.steady[name][1]
                                               if state.steady.get(name, [0, 0])[1] else None),
                   "peak_memory_bytes": state.peak_memory[name]}
            for name, n in state.counts.items()
        },
    }
