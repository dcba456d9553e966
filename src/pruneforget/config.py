"""Config checks: the JSON schema (workflow/schemas/config.schema.yaml) plus the cross-field checks
a schema cannot express. The Snakefile runs both before any job starts.

Every error names the offending key (dotted path, e.g. `base.unet.steps`) and how to fix it.
"""

from __future__ import annotations

import difflib
import re
import string
from pathlib import Path
from typing import Any, Iterator

from pruneforget.io import is_local_path

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"

# A Hugging Face hub id: `name` or `org/name` (letters, digits, `-`, `_`, `.`).
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and the fix."""


def _load_yaml(text: str):
    """yaml.safe_load through libyaml where PyYAML has it: the Snakefile reads the config and its
    schema at every Snakemake start (each DVC stage is one), and the pure-Python parser took
    about 0.5 s of that."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def read_config_file(path: str | Path) -> dict:
    """A YAML config file as a dict; ConfigError names the file, line and column of a syntax error
    (Snakemake's own loader says only "not valid JSON or YAML")."""
    import yaml

    try:
        config = _load_yaml(Path(path).read_text())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise ConfigError(f"{path}, line {mark.line + 1}, column {mark.column + 1}: {exc.problem} "
                          f"({exc.context or 'YAML syntax'}); fix the YAML there") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config is a YAML mapping of sections (scale, world, ...), got {type(config).__name__}")
    return config


# The spellings YAML 1.1 (PyYAML, Snakemake) reads as a boolean.
_YAML11_BOOLEANS = {False: {"no", "off", "n", "false"}, True: {"yes", "on", "y", "true"}}


def restore_yaml11_strings(config: dict, schema_path: str | Path = SCHEMA) -> dict:
    """Put back values that a YAML 1.2 writer spelled in a way a YAML 1.1 reader misreads.
    `dvc exp run -S` rewrites the config with ruamel (YAML 1.2): it writes "no" as bare no, which
    PyYAML (Snakemake's reader) takes for False, and 1.0e-6 as 1e-06, which PyYAML takes for a
    string. Where the schema's enum has exactly one spelling of such a boolean
    (finetune.mixed_precision: "no"), or asks for a number, the value is restored, in place."""
    schema = _load_yaml(Path(schema_path).read_text())

    def walk(node: dict, spec: dict) -> None:
        for key, sub in spec.get("properties", {}).items():
            if key not in node:
                continue
            value = node[key]
            types = sub.get("type", [])
            types = [types] if isinstance(types, str) else types
            if isinstance(value, dict):
                walk(value, sub)
            elif isinstance(value, bool) and "enum" in sub:
                spelled = [e for e in sub["enum"] if isinstance(e, str) and e.lower() in _YAML11_BOOLEANS[value]]
                if len(spelled) == 1:
                    node[key] = spelled[0]
            elif isinstance(value, str) and "number" in types and "string" not in types:
                try:
                    node[key] = float(value)
                except ValueError:
                    pass  # a real error: the schema check names it

    walk(config, schema)
    return config


def validate_config(config: dict, schema_path: str | Path = SCHEMA) -> None:
    """Check `config` against the JSON schema, then run `check_config`.

    The Snakefile uses Snakemake's own `validate` for the schema; this function is the same check
    for code and tests that run outside Snakemake.
    """
    import jsonschema

    schema = _load_yaml(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{_dotted(e.absolute_path) or '<top level>'}: {_explain(e)}" for e in errors]
        raise ConfigError("config does not match workflow/schemas/config.schema.yaml:\n  " + "\n  ".join(lines))
    check_config(config)


def check_config(config: dict) -> None:
    """Cross-field checks on a schema-valid config; raise ConfigError naming the key and the fix."""
    for key, value in _step_counts(config):
        if not isinstance(value, int) or isinstance(value, bool) or value < _min_steps(key):
            raise ConfigError(
                f"{key}: {value!r} is not a valid step count; use an integer >= {_min_steps(key)}"
            )

    world = config.get("world", {})
    if world.get("kind") == "tiny":
        styles = world.get("styles", {})
        for style in world.get("remove_styles", []):
            if style not in styles:
                raise ConfigError(
                    f"world.remove_styles: {style!r} is not a style of world.styles "
                    f"(known: {', '.join(styles)}); add it to world.styles or remove it from world.remove_styles"
                )
        # The world builder's own checks (texture kinds and parameters, unique caption words, ...)
        # run here too, so a bad world fails before any job rather than in the first one.
        from pruneforget.world.spec import WorldConfigError, parse_world

        try:
            parse_world(world)
        except WorldConfigError as exc:
            raise ConfigError(str(exc)) from exc
    elif world.get("kind") == "coco" and not world.get("download", True):
        root = world.get("root")
        if not root or not Path(root).expanduser().is_dir():
            raise ConfigError(
                f"world.root: {root!r} is not an existing directory, and world.download is false; "
                "point world.root at a copy of MS-COCO 2017 (train2017/, val2017/, annotations/) "
                "or set world.download: true"
            )

    _check_batches(config)
    if config.get("unlearn"):
        check_unlearn(config["unlearn"], world)
    if "score" in config:
        _check_score(config["score"], world.get("kind"))
    check_esd_bilevel(config, world)

    pretrained = config.get("base", {}).get("pretrained")
    if isinstance(pretrained, str):
        if is_local_path(pretrained):
            if not Path(pretrained).expanduser().is_dir():
                raise ConfigError(
                    f"base.pretrained: local model directory {pretrained!r} does not exist "
                    "(relative paths are relative to the repository root); fix the path, or give "
                    "a hub id such as stabilityai/stable-diffusion-2-1"
                    + ("; the smoke's stand-ins are built by `python -m pruneforget make-standins`"
                       if "standins" in pretrained else "")
                )
        elif not HUB_ID.match(pretrained):
            raise ConfigError(
                f"base.pretrained: {pretrained!r} is neither a hub id (org/name) nor a local path "
                "(starting with /, ./, ../ or ~); write it as one of those"
            )

    _check_figures(config)
    _check_frontier(config)
    _check_sample_bundle(config)
    _check_variants(config)


def _check_variants(config: dict) -> None:
    """Each generalisation variant (pruneforget.variants): only world-defining keys, and its
    overlaid config passes every check above (its removed styles exist, its concepts are styles)."""
    from pruneforget.variants import VariantError, check_variants

    try:
        check_variants(config, check_config)
    except VariantError as exc:
        raise ConfigError(str(exc)) from exc


def _check_sample_bundle(config: dict) -> None:
    """A bundle holds sets sampled alike (sample.eval_prompts, seeds_per_prompt) from the data
    step's prompt files: not `val` (quality_prompts, one seed) and not a downloaded set."""
    from pruneforget.report.specs import sample_bundle

    try:
        names = sample_bundle(config)
    except ValueError as exc:
        raise ConfigError(f"sample.bundle: {exc}") from exc
    downloaded = set(config.get("prompt_sets", {}).get("sets", []))
    for name in names:
        if name == "val" or name in downloaded:
            raise ConfigError(f"sample.bundle: {name!r} cannot be bundled ({'sampled with quality_prompts, one seed each' if name == 'val' else 'a downloaded set'}); "
                              "remove it from the bundle: it is sampled by its own job")
    if len(set(names)) != len(names):
        raise ConfigError(f"sample.bundle: {names} names a prompt set twice; list each once")


def _check_figures(config: dict) -> None:
    """figures.global_style names a world style, and every figure's placeholders have values."""
    figures = config.get("figures")
    if not figures:
        return
    styles = config.get("world", {}).get("styles", {})
    global_style = figures.get("global_style")
    if global_style is not None and global_style not in styles:
        raise ConfigError(f"figures.global_style: {global_style!r} is not a style of world.styles "
                          f"(known: {', '.join(styles) or 'none at this scale'}); name one of them or remove the key")
    from pruneforget.report.specs import KINDS, resolve_figure

    for name in KINDS:
        if name in figures:
            try:
                resolve_figure(config, name)
            except (ValueError, KeyError) as exc:
                raise ConfigError(f"figures.{name}: {exc}") from exc


def _check_frontier(config: dict) -> None:
    """Every point of a `frontier` curve is a run name the rules build (its knob of the run's
    family, an integer knob at integer values), and the operating point's column is a panel."""
    frontier = config.get("frontier")
    if not frontier:
        return
    from pruneforget.bilevel.runs import parse_run as parse_bilevel
    from pruneforget.unlearn.knobs import KNOBS, tag
    from pruneforget.unlearn.runs import parse_run as parse_unlearn

    for i, curve in enumerate(frontier["curves"]):
        for value in curve["values"]:
            try:
                if KNOBS[curve["knob"]].kind is int and not float(value).is_integer():
                    raise ValueError(f"knob {curve['knob']!r} ({KNOBS[curve['knob']].key}) takes integers, got {value!r}")
                name = f"{curve['run']}{tag(curve['knob'], value)}-s0"
                kind = curve["run"].split("-")[0]
                (parse_bilevel if kind.startswith("bilevel") else parse_unlearn)(name)
            except ValueError as exc:
                raise ConfigError(f"frontier.curves[{i}] ({curve['label']}): {exc}") from exc
    labels = [c["label"] for c in frontier["retention"]]
    if frontier["operating_point"]["best"] not in labels:
        raise ConfigError(f"frontier.operating_point.best: {frontier['operating_point']['best']!r} is not a "
                          f"retention column's label ({', '.join(labels)}); name one of them")


def _check_batches(config: dict) -> None:
    """finetune.batch_size is micro-batches x processes x accumulation steps, for every job that
    trains with it (fine-tuning, bilevel): checked here, before Snakemake removes any output."""
    ft = config.get("finetune")
    if not ft:
        return
    for group in ("finetune", "bilevel"):
        processes = max(1, config.get("resources", {}).get(group, {}).get("gpu", 0))
        per_pass = ft["micro_batch_size"] * processes
        if ft["batch_size"] % per_pass:
            raise ConfigError(
                f"finetune.micro_batch_size: {ft['micro_batch_size']} x {processes} process(es) (resources.{group}.gpu) "
                f"does not divide finetune.batch_size {ft['batch_size']}; use a micro_batch_size that divides "
                f"{ft['batch_size'] // processes}"
            )


def check_unlearn(unlearn: dict, world: dict) -> None:
    """The `unlearn` section against the world: in the tiny world every concept, guide and preserved
    concept is a style of world.styles; nothing is both erased and preserved; ConceptPrune's
    templates use only {subject} and {concept}, and the `world` subjects exist only in the tiny world."""
    tiny = world.get("kind") == "tiny"
    styles = world.get("styles", {})
    for setting in ("artists", "global"):
        s = unlearn.get(setting)
        if not s:
            continue
        key = f"unlearn.{setting}"
        both = sorted(set(s["concepts"]) & set(s["preserve"]))
        if both:
            raise ConfigError(f"{key}: {both} are both in concepts and in preserve; a concept is either erased or kept")
        if s["guide"] and s["guide"] in s["concepts"]:
            raise ConfigError(f"{key}.guide: {s['guide']!r} is also erased ({key}.concepts); UCE would map it onto "
                              "itself and leave it intact: guide towards another concept, or null (the empty prompt)")
        if tiny:
            named = [("concepts", c) for c in s["concepts"]] + [("preserve", c) for c in s["preserve"]]
            named += [("guide", s["guide"])] if s["guide"] else []
            for field, value in named:
                if value not in styles:
                    raise ConfigError(
                        f"{key}.{field}: {value!r} is not a style of world.styles (known: {', '.join(styles)}); "
                        "in the tiny world concepts are styles"
                    )
        pairs = s["prompt_pairs"]
        if pairs["subjects"] == "world" and not tiny:
            raise ConfigError(
                f"{key}.prompt_pairs.subjects: 'world' (colour-shape subjects) exists only in the tiny world; "
                "use things or humans (config/prompts/)"
            )
        for field in ("base", "target"):
            names = {name for _, name, _, _ in string.Formatter().parse(pairs[field]) if name is not None}
            if not names <= {"subject", "concept"}:
                raise ConfigError(
                    f"{key}.prompt_pairs.{field}: {pairs[field]!r} uses {sorted(names - {'subject', 'concept'})}; "
                    "templates may use only {subject} and {concept}"
                )


# Metrics of each world and the `score` settings each needs (src/pruneforget/metrics/scoring.py).
SCORE_METRICS = {
    "tiny": ("judge", "ua", "retain", "cp_evaluator", "frechet_evaluator", "denoising_error"),
    "coco": ("clip", "cp_clip", "csd", "fid", "nudenet"),
}
SCORE_SETTINGS = {"clip": ("clip_model",), "cp_clip": ("clip_model",), "csd": ("csd_checkpoint", "csd_backbone"),
                  "fid": ("fid_mode", "fid_reference_size"), "denoising_error": ("denoising",)}


def _check_score(score: dict, kind: str | None) -> None:
    """Each metric belongs to its world (the tiny judges need the ground-truth evaluator; CLIP, CSD,
    FID and NudeNet need real images) and has the settings it reads."""
    allowed = SCORE_METRICS.get(kind or "", ())
    for metric in score.get("metrics", []):
        if metric not in allowed:
            raise ConfigError(
                f"score.metrics: {metric!r} is not measured in the {kind} world; use some of {', '.join(allowed)}"
            )
        for key in SCORE_SETTINGS.get(metric, ()):
            if key not in score:
                raise ConfigError(f"score.{key}: missing; metric {metric!r} needs it (see config/sd21.yaml or config/config.yaml)")
def check_esd_bilevel(config: dict, world: dict) -> None:
    """ESD's anchor is a style of the tiny world; the bilevel method's x_t from concept images needs
    the tiny world's labelled images; its total iterations hold at least one K-cycle."""
    tiny = world.get("kind") == "tiny"
    esd = config.get("unlearn", {}).get("esd")
    if esd and tiny and esd["anchor"] not in world.get("styles", {}):
        raise ConfigError(f"unlearn.esd.anchor: {esd['anchor']!r} is not a style of world.styles; "
                          "in the tiny world the anchor is a neutral style such as plain")
    for setting in ("artists", "global"):
        erased = config.get("unlearn", {}).get(setting, {}).get("concepts", [])
        if esd and esd["anchor"] in erased:
            raise ConfigError(f"unlearn.esd.anchor: {esd['anchor']!r} is erased in unlearn.{setting}.concepts; ESD "
                              "would steer the concept towards itself and erase nothing: anchor on a neutral concept")
    bilevel = config.get("bilevel")
    if not bilevel:
        return
    variants = {"bilevel": bilevel, "bilevel.code": {**bilevel, **bilevel.get("code", {}),
                                                     "upper": {**bilevel["upper"], **bilevel.get("code", {}).get("upper", {})}}}
    for key, v in variants.items():
        if v["upper"]["x_t"] == "images" and not tiny:
            raise ConfigError(f"{key}.upper.x_t: 'images' needs labelled images of each concept, which only the tiny "
                              "world has; use sample")
        for k in [v["k"], *bilevel["sweep"]["Ks"]]:
            if bilevel["steps"] < k + 1:
                raise ConfigError(f"bilevel.steps: {bilevel['steps']} iterations cannot hold one cycle of K = {k} lower "
                                  f"steps and an upper step; use at least {k + 1}")


def _step_counts(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted key, value) for every `steps` or `*_steps` key anywhere in the config, so a stage
    added later is covered without touching this function."""
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if key == "steps" or str(key).endswith("_steps"):
                yield path, value
            else:
                yield from _step_counts(value, path)


def _min_steps(key: str) -> int:
    """A step count must be positive; a warm-up may be skipped (0 steps)."""
    return 0 if key.rsplit(".", 1)[-1].startswith("warmup") else 1


def _dotted(path) -> str:
    return ".".join(str(p) for p in path)


def _explain(error) -> str:
    """jsonschema's message, made to name the unknown key (its default wording buries it)."""
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = _dotted(error.absolute_path)
        named = []
        for k in extra:
            close = difflib.get_close_matches(k, allowed, n=1)
            hint = f" (a typo of `{close[0]}`?)" if close else ""
            named.append(f"`{where}.{k}`{hint}" if where else f"`{k}`{hint}")
        return f"unknown key {', '.join(named)}; allowed here: {', '.join(allowed)}"
    return error.message
