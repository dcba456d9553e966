"""The tiny world's description: the `world` config section, validated into a `WorldSpec`.

Validation happens before any work and names the offending key and the fix, so a typo in
config fails in a second rather than after a build. Nothing here knows a particular style,
shape or colour: styles are texture kinds plus parameters, shapes are shape kinds by name.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field

from pruneforget.world.shapes import SHAPES
from pruneforget.world.textures import TEXTURES, texture_params

TEMPLATE_FIELDS = {"colour", "shape", "style"}


class WorldConfigError(ValueError):
    """A `world` config value is missing or wrong; the message names the key and the fix."""


@dataclass(frozen=True)
class Style:
    """A style: canonical name, the texture kind that draws it, its parameters and caption synonyms."""

    name: str
    texture: str
    params: dict
    synonyms: tuple[str, ...]
    contrast: float

    @property
    def slug(self) -> str:
        return slugify(self.name)


@dataclass(frozen=True)
class WorldSpec:
    """Everything needed to build the tiny world deterministically."""

    image_size: int
    seed: int
    supersample: int
    background: tuple[int, int, int]
    colour_jitter: float
    texture_jitter: dict
    shape_jitter: dict
    shapes: tuple[str, ...]
    colours: dict[str, tuple[int, int, int]]
    styles: dict[str, Style]
    remove_styles: tuple[str, ...]
    templates: tuple[str, ...]
    synonym_prob: float
    images_per_combo: int
    val_images_per_combo: int
    prompts_per_style: int
    retain_prompts_per_style: int
    raw: dict = field(repr=False, compare=False, default_factory=dict)

    @property
    def retain_styles(self) -> tuple[str, ...]:
        return tuple(s for s in self.styles if s not in self.remove_styles)


def slugify(name: str) -> str:
    """File-name-safe form of a label: lower case, runs of other characters become '_'."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not slug:
        raise WorldConfigError(f"name {name!r} has no letters or digits; it cannot name a file")
    return slug


# Every key is required: a value lives in one place (config/config.yaml), not in code defaults too.
_KEYS = {
    "kind", "image_size", "seed", "supersample", "background", "colour_jitter", "texture_contrast",
    "texture_jitter", "shape_jitter", "shapes", "colours", "styles", "remove_styles", "templates",
    "synonym_prob", "images_per_combo", "val_images_per_combo", "prompts_per_style",
    "retain_prompts_per_style",
}


def _fail(key: str, problem: str, fix: str) -> None:
    raise WorldConfigError(f"world.{key}: {problem}; {fix}")


def _int(p: dict, key: str, lo: int) -> int:
    v = p.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        _fail(key, f"got {v!r}", f"set an integer >= {lo}")
    return v


def _num(p: dict, key: str, lo: float, hi: float) -> float:
    v = p.get(key)
    if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
        _fail(key, f"got {v!r}", f"set a number in [{lo}, {hi}]")
    return float(v)


def _rgb(key: str, v: object) -> tuple[int, int, int]:
    if not (isinstance(v, list) and len(v) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in v)):
        _fail(key, f"got {v!r}", "give an RGB triple of integers in [0, 255], e.g. [220, 40, 40]")
    return tuple(v)  # type: ignore[return-value]


def _names(key: str, v: object, minimum: int) -> list[str]:
    if not (isinstance(v, list) and all(isinstance(s, str) and s.strip() for s in v)):
        _fail(key, f"got {v!r}", "give a list of non-empty strings")
    if len(v) < minimum:
        _fail(key, f"has {len(v)} entries", f"give at least {minimum}")
    if len(set(v)) != len(v):
        _fail(key, f"has duplicates in {v!r}", "list each name once")
    return list(v)


def _style(name: str, v: object, contrast: float) -> Style:
    key = f"styles[{name!r}]"
    if not isinstance(v, dict):
        _fail(key, f"got {v!r}", "give a mapping {texture: KIND, synonyms: [...], <texture parameters>}")
    kind = v.get("texture")
    if kind not in TEXTURES:
        _fail(f"{key}.texture", f"unknown texture kind {kind!r}", f"use one of {sorted(TEXTURES)}")
    synonyms = _names(f"{key}.synonyms", v.get("synonyms"), 2)
    if name in synonyms:
        _fail(f"{key}.synonyms", f"repeats the canonical name {name!r}", "list other words only")
    overrides = {k: x for k, x in v.items() if k not in ("texture", "synonyms", "contrast")}
    for k, x in overrides.items():
        if k not in TEXTURES[kind].defaults:
            _fail(f"{key}.{k}", f"not a parameter of texture {kind!r}",
                  f"use texture, synonyms, contrast or one of {sorted(TEXTURES[kind].defaults)}")
        if not isinstance(x, (int, float)) or isinstance(x, bool):
            _fail(f"{key}.{k}", f"got {x!r}", "give a number")
    c = v.get("contrast", contrast)
    if not isinstance(c, (int, float)) or not 0.0 <= c <= 1.0:
        _fail(f"{key}.contrast", f"got {c!r}", "give a number in [0, 1]")
    return Style(name, kind, texture_params(kind, overrides), tuple(synonyms), float(c))


def _template(i: int, t: object) -> str:
    if not isinstance(t, str):
        _fail(f"templates[{i}]", f"got {t!r}", "give a string")
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(t) if f is not None}
    except ValueError as exc:
        _fail(f"templates[{i}]", f"{t!r} is not a format string ({exc})", "balance the braces")
    if fields != TEMPLATE_FIELDS:
        _fail(f"templates[{i}]", f"{t!r} uses fields {sorted(fields)}",
              f"use exactly {{colour}}, {{shape}} and {{style}} once each")
    return t


def parse_world(params: dict) -> WorldSpec:
    """Validate the tiny `world` config section and resolve it into a `WorldSpec`.

    Raises WorldConfigError naming the key and the fix on the first problem found."""
    if not isinstance(params, dict):
        raise WorldConfigError("world: expected a mapping (the `world` config section)")
    unknown = sorted(set(params) - _KEYS)
    if unknown:
        _fail(unknown[0], "unknown key", f"remove it or use one of {sorted(_KEYS)}")
    missing = sorted(_KEYS - set(params))
    if missing:
        _fail(missing[0], "missing", "add it (see config/config.yaml for every key with its meaning)")
    if params["kind"] != "tiny":
        _fail("kind", f"got {params['kind']!r}", "the procedural builder needs kind: tiny")
    p = params
    size = _int(p, "image_size", 8)
    contrast = _num(p, "texture_contrast", 0.0, 1.0)
    shapes = _names("shapes", p.get("shapes"), 1)
    for s in shapes:
        if s not in SHAPES:
            _fail("shapes", f"unknown shape {s!r}", f"use shape kinds from {sorted(SHAPES)}")
    colours_in = p.get("colours")
    if not isinstance(colours_in, dict) or not colours_in:
        _fail("colours", f"got {colours_in!r}", "give a mapping name -> [R, G, B]")
    colours = {str(k): _rgb(f"colours[{k!r}]", v) for k, v in colours_in.items()}
    styles_in = p.get("styles")
    if not isinstance(styles_in, dict) or len(styles_in) < 2:
        _fail("styles", f"got {styles_in!r}", "give a mapping of at least two style names to {texture, synonyms}")
    styles = {str(k): _style(str(k), v, contrast) for k, v in styles_in.items()}
    words: dict[str, str] = {}
    for st in styles.values():
        for w in (st.name, *st.synonyms):
            if w in words and words[w] != st.name:
                _fail(f"styles[{st.name!r}]", f"word {w!r} also names style {words[w]!r}",
                      "make every canonical name and synonym unique so captions are unambiguous")
            words[w] = st.name
    if len({st.slug for st in styles.values()}) != len(styles):
        _fail("styles", "two style names give the same file name", "rename one of them")
    remove = _names("remove_styles", p["remove_styles"], 0)
    for s in remove:
        if s not in styles:
            _fail("remove_styles", f"{s!r} is not a style", f"use names from world.styles: {sorted(styles)}")
    if len(remove) == len(styles):
        _fail("remove_styles", "removes every style", "keep at least one style to retain")
    templates = p.get("templates")
    if not isinstance(templates, list) or not templates:
        _fail("templates", f"got {templates!r}", "give a list of caption templates")
    tj, sj = p["texture_jitter"], p["shape_jitter"]
    if not (isinstance(tj, dict) and set(tj) == {"period", "angle"}):
        _fail("texture_jitter", f"got {tj!r}", "give {period: FRACTION, angle: DEGREES}")
    if not (isinstance(sj, dict) and set(sj) == {"radius", "offset", "rotation"}
            and isinstance(sj["radius"], list) and len(sj["radius"]) == 2 and 0 < sj["radius"][0] <= sj["radius"][1] <= 0.5):
        _fail("shape_jitter", f"got {sj!r}",
              "give {radius: [MIN, MAX] as fractions of image size in (0, 0.5], offset: FRACTION, rotation: DEGREES}")
    return WorldSpec(
        image_size=size,
        seed=_int(p, "seed", 0),
        supersample=_int(p, "supersample", 1),
        background=_rgb("background", p["background"]),
        colour_jitter=_num(p, "colour_jitter", 0.0, 128.0),
        texture_jitter={k: float(v) for k, v in tj.items()},
        shape_jitter={"radius": [float(x) for x in sj["radius"]], "offset": float(sj["offset"]),
                      "rotation": float(sj["rotation"])},
        shapes=tuple(shapes),
        colours=colours,
        styles=styles,
        remove_styles=tuple(remove),
        templates=tuple(_template(i, t) for i, t in enumerate(templates)),
        synonym_prob=_num(p, "synonym_prob", 0.0, 1.0),
        images_per_combo=_int(p, "images_per_combo", 1),
        val_images_per_combo=_int(p, "val_images_per_combo", 1),
        prompts_per_style=_int(p, "prompts_per_style", 1),
        retain_prompts_per_style=_int(p, "retain_prompts_per_style", 1),
        raw=dict(params),
    )
