"""From the config's `figures:` section to one figure's resolved spec and its input paths.

The rules (rules/figures.smk) and the `report` command share this: the rule lists the paths
`figure_inputs` returns as its inputs and passes the spec `resolve_figure` returns as `--params`,
so the command draws exactly the models, seeds and prompt sets the DAG built. In prompt-set names
and grid columns, `{removed}` stands for each of `world.remove_styles` (as file slugs: one entry
or column per style) and `{global}` for `figures.global_style`.
"""

from __future__ import annotations

import copy

from pruneforget.report.scores import model_name, row_models, seeded
from pruneforget.unlearn.knobs import KNOBS, point_stem

# figure name -> (what it draws: the `report` command's dispatch key, the part of the paper it
# belongs to: its category in the Snakemake report). rules/figures.smk makes one rule per entry.
FIGURES = {
    "table1": ("metric_table", "Style removal"),
    "fig1": ("grid", "Style removal"),
    "fig2": ("grid", "Style removal"),
    "table2": ("resilience_table", "Global concept"),
    "table3": ("metric_table", "Global concept"),
    "fig6": ("grid", "Global concept"),
    "fig7": ("label_decrease", "Global concept"),
    "fig4": ("curves", "Fine-tuning"),
    "fig5": ("curves", "Fine-tuning"),
    "table_leakage": ("metric_table", "Fine-tuning"),
    "fig_sensitivity": ("sweep", "Bilevel: sensitivity and cost"),
    "fig_penalty": ("curves", "Bilevel: sensitivity and cost"),
    "table_cost": ("cost", "Bilevel: sensitivity and cost"),
    "table_pruners": ("metric_table", "Open questions"),
    "table_upper": ("metric_table", "Open questions"),
    "fig_continual": ("metric_bars", "Open questions"),
    "fig_frontier": ("frontier", "Frontiers"),
    "table1_front": ("frontier_table", "Frontiers"),
    "table_generalisation": ("generalisation_table", "Generalisation"),
}
FRONTIER_KINDS = ("frontier", "frontier_table")  # figures that draw the config's `frontier` section
KINDS = {name: kind for name, (kind, _) in FIGURES.items()}


def sweep_settings(lambdas: list[float], ks: list[int], default: dict) -> list[tuple[str, float, int]]:
    """The one-at-a-time sweep: (sweep, lambda, K) for every lambda at the default K, then every
    K at the default lambda."""
    return [("lambda", lam, default["K"]) for lam in lambdas] + [("K", default["lam"], k) for k in ks]


def sweep_stem(template: str, lam: float, k: int, default: dict | None = None, default_model: str | None = None) -> str:
    """A sweep run's model stem, e.g. `bilevel-lam{lam}-K{K}` -> `bilevel-lam100-K20`; at the
    sweep's centre (`default`) `default_model` when one is given (the main run, trained once)."""
    if default_model and default and (lam, k) == (default["lam"], default["K"]):
        return default_model
    return template.format(lam=f"{lam:g}", K=k)


def _slug(name: str) -> str:
    from pruneforget.world.spec import slugify

    return slugify(name)


def _names_removed(item) -> bool:
    """Whether a list item stands for one item per removed style: a string naming `{removed}`,
    or a dict with such a string as a direct value (a grid column). A dict naming it only
    inside a nested list (a table column's prompt sets) stays one item; its list expands."""
    if isinstance(item, str):
        return "{removed}" in item
    return isinstance(item, dict) and any(isinstance(v, str) and "{removed}" in v for v in item.values())


def _fill(obj, token: str, value: str):
    if isinstance(obj, str):
        return obj.replace(token, value)
    if isinstance(obj, dict):
        return {k: _fill(v, token, value) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_fill(v, token, value) for v in obj]
    return obj


def expand(obj, removed: list[str], global_: str | None):
    """Replace `{global}` everywhere; a list item naming `{removed}` (see _names_removed) becomes
    one item per removed style. Raises ValueError when a placeholder has no value in this config."""
    if isinstance(obj, list):
        out = []
        for item in obj:
            if _names_removed(item):
                if not removed:
                    raise ValueError(f"{item!r} names {{removed}} but world.remove_styles is empty or absent")
                out += [expand(_fill(item, "{removed}", r), removed, global_) for r in removed]
            else:
                out.append(expand(item, removed, global_))
        return out
    if isinstance(obj, dict):
        return {k: expand(v, removed, global_) for k, v in obj.items()}
    if isinstance(obj, str) and "{global}" in obj:
        if global_ is None:
            raise ValueError(f"{obj!r} names {{global}} but figures.global_style is not set")
        return obj.replace("{global}", global_)
    return obj


def _placeholders(config: dict) -> tuple[list[str], str | None]:
    """The values of `{removed}` (one per removed style) and `{global}` in this config."""
    figures = config.get("figures", {})
    removed = [_slug(s) for s in config.get("world", {}).get("remove_styles", [])]
    return removed, _slug(figures["global_style"]) if figures.get("global_style") else None


def sample_bundle(config: dict) -> list[str]:
    """`sample.bundle` with its placeholders expanded: the prompt sets one job samples together
    for a model (a model loaded once instead of once per set); empty: one job per set."""
    return expand(list(config.get("sample", {}).get("bundle") or []), *_placeholders(config))


def resolve_figure(config: dict, name: str) -> dict:
    """Figure `name`'s section of `config["figures"]` with placeholders expanded, `seeds` (its
    own or the section's) and `grid_seed` filled in, and `figure`/`kind` set."""
    figures = config["figures"]
    if name not in figures:
        raise KeyError(f"figures.{name} is not in the config: add its rows/columns (see config/config.yaml)")
    spec = expand(copy.deepcopy(figures[name]), *_placeholders(config))
    spec.setdefault("seeds", figures["seeds"])
    spec.setdefault("grid_seed", figures.get("grid_seed", spec["seeds"][0]))
    if KINDS[name] == "sweep":
        spec.update(sweep_grid(config))
    if KINDS[name] in FRONTIER_KINDS:
        spec.update(frontier_curves(config))
    if KINDS[name] == "generalisation_table":
        spec["blocks"] = generalisation_blocks(config, spec["columns_of"], spec["variants"])
    return {**spec, "figure": name, "kind": KINDS[name]}


def generalisation_blocks(config: dict, columns_of: str, names: list[str]) -> list[dict]:
    """One block per world, the base world first, then each variant in `names`: its scale (the
    results/ directory), its removed styles and world seed, and figures.`columns_of`'s
    columns with `{removed}` expanded by that world's removed styles (pruneforget.variants)."""
    from pruneforget.variants import overlaid

    worlds = [("base", config)] + [(n, overlaid(config, n)) for n in names]
    blocks = []
    for name, world_config in worlds:
        columns = expand(copy.deepcopy(config["figures"][columns_of]["columns"]), *_placeholders(world_config))
        world = world_config.get("world", {})
        blocks.append({"name": name, "scale": world_config["scale"], "columns": columns,
                       "remove_styles": list(world.get("remove_styles", [])), "world_seed": world.get("seed")})
    return blocks


def frontier_curves(config: dict) -> dict:
    """The config's `frontier` section with placeholders expanded and each curve's points listed:
    `{value, model}` with model `{run}-{knob}{value}` (a run name without its seed, unlearn/knobs.py;
    at the config's own value the run itself: the curve's centre is trained once), so the runs the
    DAG builds and the points the figure reads are one list."""
    if "frontier" not in config:
        raise KeyError("figures.fig_frontier and figures.table1_front draw the `frontier` section: add it (see config/config.yaml)")
    section = expand(copy.deepcopy(config["frontier"]), *_placeholders(config))
    for curve in section["curves"]:
        curve["points"] = [{"value": v, "model": point_stem(config, curve["run"], curve["knob"], v)}
                           for v in curve["values"]]
    return section


def centre_keys(config: dict) -> list[str]:
    """The config entries (two levels deep, as DVC's params here) that decide which frontier
    point is a curve's centre: each curve's knob key, and `bilevel.code` for the authors' code."""
    keys = []
    for curve in config.get("frontier", {}).get("curves", []):
        keys.append(".".join(KNOBS[curve["knob"]].key.split(".")[:2]))
        if curve["run"].startswith("bilevelcode-"):
            keys.append("bilevel.code")
    return list(dict.fromkeys(keys))


def figure_config_keys(config: dict, name: str) -> list[str]:
    """The dotted config keys `resolve_figure(config, name)` reads (those present in `config`):
    DVC's params of the figure's stage, so that an edit of one figure's section reruns that
    figure alone (tests/test_report_specs.py changes every other key and checks the spec)."""
    figures = config["figures"]
    keys = [f"figures.{name}", "figures.seeds", "figures.grid_seed", "figures.global_style", "world.remove_styles"]
    if KINDS[name] == "sweep":
        keys += ["bilevel.sweep", "bilevel.lam", "bilevel.k"]
    if KINDS[name] in FRONTIER_KINDS:
        keys += [f"frontier.{k}" for k in config.get("frontier", {})]
        keys += centre_keys(config)
    if KINDS[name] == "generalisation_table" and name in figures:
        keys += [f"figures.{figures[name]['columns_of']}", "world.seed", "generalisation.variants"]
    present = {"figures": figures, "world": config.get("world", {}), "bilevel": config.get("bilevel", {}),
               "frontier": config.get("frontier", {}), "unlearn": config.get("unlearn", {}),
               "generalisation": config.get("generalisation", {})}
    return [k for k in keys if k.split(".", 1)[1] in present[k.split(".", 1)[0]]]


def sweep_grid(config: dict) -> dict:
    """The lambda x K sweep as the experiment defines it: `bilevel.sweep`'s values around the main
    run's own setting (`bilevel.lam`, `bilevel.k`), so the runs and the figure never disagree."""
    bilevel = config["bilevel"]
    return {"lambdas": list(bilevel["sweep"]["lambdas"]), "Ks": list(bilevel["sweep"]["Ks"]),
            "default": {"lam": bilevel["lam"], "K": bilevel["k"]}}


def _scores(scale: str, models: list[str], promptsets: list[str], metric: str) -> list[str]:
    return [f"results/{scale}/scores/{m}/{p}/{metric}.json" for m in models for p in promptsets]


def _all_models(stem: str, seeds: list[int]) -> list[str]:
    return [m for _, m in row_models(stem, seeds)]


def grid_models(spec: dict) -> list[dict]:
    """The grid's rows with `model` set to the directory shown (the grid seed's run)."""
    return [{**row, "model": model_name(row["model"], spec["grid_seed"]) if seeded(row["model"]) else row["model"]}
            for row in spec["rows"]]


def grid_prompts(config: dict, promptset: str) -> list[str]:
    """Prompts of `promptset` that a grid figure names (a column's `prompt`): sampling keeps them
    whatever subset `sample.eval_prompts` takes, or the figure would find no image for them."""
    named = []
    for name, spec in config.get("figures", {}).items():
        if isinstance(spec, dict) and KINDS.get(name) == "grid":
            resolved = resolve_figure(config, name)
            named += [c["prompt"] for c in resolved["columns"] if c.get("promptset") == promptset and "prompt" in c]
    return list(dict.fromkeys(named))


def figure_inputs(spec: dict, scale: str) -> dict[str, list[str]]:
    """The paths a resolved figure reads, by kind: `scores` (score JSONs), `runs` (training run
    directories) and `samples` (sample set directories); sorted, without duplicates."""
    kind, seeds = spec["kind"], spec["seeds"]
    scores, runs, samples = [], [], []
    if kind in ("metric_table", "metric_bars", "resilience_table"):
        stems = [r["model"] for r in spec["rows"]] + ([spec["reference"]] if kind == "resilience_table" else [])
        for stem in stems:
            for col in spec["columns"]:
                scores += _scores(scale, _all_models(stem, seeds), col["promptsets"], col["metric"])
    elif kind == "sweep":
        for _, lam, k in sweep_settings(spec["lambdas"], spec["Ks"], spec["default"]):
            for col in spec["columns"]:
                stem = sweep_stem(spec["model"], lam, k, spec["default"], spec.get("default_model"))
                scores += _scores(scale, _all_models(stem, seeds), col["promptsets"], col["metric"])
    elif kind in FRONTIER_KINDS:
        points = [p["model"] for c in spec["curves"] for p in c["points"]]
        for stem in points + [r["model"] for r in spec.get("references", [])]:
            for col in [spec["erasure"], *spec["retention"]]:
                scores += _scores(scale, _all_models(stem, seeds), col["promptsets"], col["metric"])
        runs = [f"results/{scale}/{m}" for stem in points for m in _all_models(stem, seeds)]  # their wall times
    elif kind == "generalisation_table":
        for block in spec["blocks"]:
            for stem in [r["model"] for r in spec["rows"]]:
                for col in block["columns"]:
                    scores += _scores(block["scale"], _all_models(stem, seeds), col["promptsets"], col["metric"])
    elif kind == "label_decrease":
        for stem in [spec["reference"]] + [r["model"] for r in spec["rows"]]:
            scores += _scores(scale, _all_models(stem, seeds), spec["promptsets"], spec["metric"])
    elif kind == "grid":
        samples = [f"results/{scale}/samples/{row['model']}/{col['promptset']}" for row in grid_models(spec)
                   for col in spec["columns"]]
    elif kind == "curves":
        runs = [f"results/{scale}/{m}" for g in spec["groups"] for m in _all_models(g["model"], seeds)]
    elif kind == "cost":
        runs = [f"results/{scale}/{m}" for r in spec["rows"] for m in _all_models(r["model"], seeds)]
    return {"scores": sorted(set(scores)), "runs": sorted(set(runs)), "samples": sorted(set(samples))}


def evaluated_runs(config: dict, scale: str) -> set[str]:
    """Run directories whose evaluations (eval.csv) a curve figure plots. Only these evaluate
    during training: the tables read the final scores, so an evaluation anywhere else is work no
    figure reads (issue 15: about 30 s each on 2 CPU cores)."""
    runs = set()
    for name in config.get("figures", {}):
        if KINDS.get(name) == "curves":
            spec = resolve_figure(config, name)
            if spec.get("source", "eval") == "eval":
                runs.update(figure_inputs(spec, scale)["runs"])
    return runs
