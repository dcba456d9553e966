"""World variants for generalisation: the same experiment on other removed styles or another
world seed, each built as an extra scale `{scale}-{variant}` (results/tiny-near/...).

A variant is an overlay of the config's `generalisation.variants.{name}`, deep-merged onto the
config. It may change only what defines another world of the same experiment (OVERLAY_KEYS): the
removed styles, the world seed and the artist setting's concepts. Everything else (models, steps,
methods, figures) stays the base scale's, so the variant measures the same methods on another world.
Nothing here names a style or a seed: the variants are data in the config.
"""

from __future__ import annotations

import copy
import re

# What an overlay may set, as nested key sets (a leaf is None): every other key is refused.
OVERLAY_KEYS = {
    "world": {"remove_styles": None, "seed": None},
    "unlearn": {"artists": {"concepts": None, "preserve": None}},
}

# The world keys whose change leaves the training images (train.csv, val.csv, images/) as they
# are: a variant changing only these reuses the base scale's teacher, VAE and evaluator, which see
# every style (world/splits.py: D_f alone drops the removed styles).
SAME_IMAGES_KEYS = {"remove_styles"}

# Artifacts trained on the training images only, never on D_f (rules/base.smk, rules/data.smk).
SHARED_ARTIFACTS = ("vae", "base", "evaluator")

VARIANT_NAME = re.compile(r"^[a-z0-9]+$")


class VariantError(ValueError):
    """An overlay that cannot define a variant; the message names the key and the fix."""


def variants(config: dict) -> dict[str, dict]:
    """The config's variant overlays by name (empty when the section is absent)."""
    return dict((config.get("generalisation") or {}).get("variants") or {})


def variant_scale(config: dict, name: str) -> str:
    """The scale (results/ directory) of variant `name`: `{scale}-{name}`."""
    return f"{config['scale']}-{name}"


def scales(config: dict) -> list[str]:
    """Every scale this config builds: its own, then one per variant."""
    return [config["scale"]] + [variant_scale(config, name) for name in variants(config)]


def _check_keys(overlay: dict, allowed: dict, where: str) -> None:
    for key, value in overlay.items():
        if key not in allowed:
            raise VariantError(f"{where}.{key}: a variant may set only {sorted(allowed)} here "
                               "(a variant changes the world, not the methods); remove the key")
        if allowed[key] is not None:
            if not isinstance(value, dict):
                raise VariantError(f"{where}.{key}: expected a mapping of {sorted(allowed[key])}")
            _check_keys(value, allowed[key], f"{where}.{key}")


def _merge(base: dict, overlay: dict) -> dict:
    """`base` with `overlay` deep-merged in (mappings merge, any other value replaces)."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        out[key] = _merge(out.get(key, {}), value) if isinstance(value, dict) else copy.deepcopy(value)
    return out


def overlaid(config: dict, name: str) -> dict:
    """The config of variant `name`: the overlay deep-merged onto `config`, with `scale` set to the
    variant's scale. A variant has no variants: the `generalisation` section and the figures that
    read it (those naming `variants`) are left out."""
    overlays = variants(config)
    if name not in overlays:
        raise VariantError(f"generalisation.variants: no variant {name!r} (known: {', '.join(overlays) or 'none'})")
    _check_keys(overlays[name], OVERLAY_KEYS, f"generalisation.variants.{name}")
    base = {k: v for k, v in config.items() if k != "generalisation"}
    if "figures" in base:
        base["figures"] = {k: v for k, v in base["figures"].items() if not (isinstance(v, dict) and "variants" in v)}
    out = _merge(base, overlays[name])
    out["scale"] = variant_scale(config, name)
    return out


def scale_config(config: dict, scale: str) -> dict:
    """The config a job of `scale` reads: `config` itself at its own scale, a variant's overlay at
    `{scale}-{variant}`."""
    if scale == config["scale"]:
        return config
    prefix = f"{config['scale']}-"
    if not scale.startswith(prefix):
        raise VariantError(f"scale {scale!r} is neither {config['scale']!r} nor one of its variants")
    return overlaid(config, scale[len(prefix):])


def shares_images(config: dict, name: str) -> bool:
    """Whether variant `name` keeps the base world's training images (its overlay changes only
    SAME_IMAGES_KEYS of `world`): then it reuses the base scale's SHARED_ARTIFACTS."""
    world = variants(config)[name].get("world", {})
    return all(key in SAME_IMAGES_KEYS or world[key] == config["world"].get(key) for key in world)


def check_variants(config: dict, check) -> None:
    """Each variant's name, overlay keys and overlaid config (`check`: the config's cross-field
    check, e.g. removed styles exist in the world, concepts are styles). Raises VariantError."""
    for name in variants(config):
        if not VARIANT_NAME.match(name):
            raise VariantError(f"generalisation.variants.{name}: a variant name is lower-case letters and digits "
                               "(it becomes part of the scale directory, results/{scale}-{name}/)")
        try:
            check(overlaid(config, name))
        except VariantError:
            raise  # names its key already
        except ValueError as exc:  # the config check's error, said of this variant
            raise VariantError(f"generalisation.variants.{name}: {exc}") from exc
