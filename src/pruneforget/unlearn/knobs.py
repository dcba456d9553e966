"""Strength knobs: one config value a run's name may override, read in one place by the run names
(unlearn/runs.py, bilevel/runs.py), the `unlearn` and `bilevel` commands and the frontier figure.

    {run}-{knob}{value}-s{seed}    e.g. esdx-artists-steps200-s0, uce-artists-erase2-s1,
                                   bilevel-artists-esdx-K10-s2, bilevelcode-artists-K5-s0

A knob names a config key (`unlearn.esd.steps`, `bilevel.k`, ...), its type (an integer knob
takes integers only, so `steps200` reaches the loop as 200, not 200.0) and the run families it
applies to: a two-stage method's config section (`esd`, `uce`, `conceptprune`, as
`pruneforget.unlearn.METHODS` maps methods to modules) or `bilevel` (every bilevel kind). The
command receives `--knob NAME=VALUE` and overrides the key in the section it was given, so the
value is recorded with the run's other settings (unlearn.json's params, run_config.json's params).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

from pruneforget.unlearn import METHODS


@dataclass(frozen=True)
class Knob:
    key: str                # dotted config key, from the top of the config
    kind: type              # int or float
    families: tuple         # run families it applies to: a METHODS module (section) or "bilevel"


# short name -> knob. The one table: add a knob here and every run name, command and figure takes it.
KNOBS = {
    "steps": Knob("unlearn.esd.steps", int, ("esd",)),
    "lr": Knob("unlearn.esd.lr", float, ("esd",)),
    "erase": Knob("unlearn.uce.erase_scale", float, ("uce",)),
    "ulam": Knob("unlearn.uce.lam", float, ("uce",)),
    "skill": Knob("unlearn.conceptprune.skill_ratio", float, ("conceptprune",)),
    "lam": Knob("bilevel.lam", float, ("bilevel",)),
    "K": Knob("bilevel.k", int, ("bilevel",)),
    "ulr": Knob("bilevel.upper_lr", float, ("bilevel",)),
}
BILEVEL = "bilevel"
# A knob's value in a run name: an integer or decimal, optionally with an exponent (lr1e-05).
VALUE_PATTERN = r"\d+(?:\.\d+)?(?:e[-+]?\d+)?"


def alternatives(names) -> str:
    """A regex alternation of `names`, longest first (an alternation takes the first that matches)."""
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


KNOB_PATTERN = rf"(?:{alternatives(KNOBS)}){VALUE_PATTERN}"


def family_of(method: str) -> str:
    """The knob family of a two-stage method (its module's config section) or of a bilevel kind."""
    return METHODS[method] if method in METHODS else BILEVEL


def knobs_of(family: str) -> list[str]:
    """The knob names that apply to a run family."""
    return [name for name, knob in KNOBS.items() if family in knob.families]


def check_knob(name: str, family: str) -> Knob:
    """The knob `name` if it applies to `family`; else an error naming the valid ones."""
    valid = knobs_of(family)
    if name not in KNOBS or name not in valid:
        what = "is not a knob" if name not in KNOBS else f"does not apply to {family} runs"
        raise ValueError(f"knob {name!r} {what}; {family} runs take {', '.join(valid) or 'none'} "
                         f"(all knobs: {', '.join(f'{n} = {k.key}' for n, k in KNOBS.items())})")
    return KNOBS[name]


def parse_value(name: str, text: str) -> int | float:
    """A knob's value from its text, of the knob's type: an integer knob refuses `2.5` or `1e3`."""
    knob = KNOBS[name]
    if knob.kind is int:
        if not re.fullmatch(r"\d+", text):
            raise ValueError(f"knob {name!r} ({knob.key}) takes integers, got {text!r}")
        return int(text)
    return float(text)


def format_value(name: str, value: int | float) -> str:
    """A knob's value as a run name writes it: integers as they are, floats in %g (2.0 -> 2)."""
    return str(int(value)) if KNOBS[name].kind is int else f"{float(value):g}"


def tag(name: str | None, value: int | float | None) -> str:
    """`-{knob}{value}` of a run name, or "" for a run at the config's own value."""
    return f"-{name}{format_value(name, value)}" if name else ""


def flag(name: str | None, value: int | float | None) -> str:
    """The command's `--knob NAME=VALUE` flag of a run, or ""."""
    return f"--knob {name}={format_value(name, value)}" if name else ""


def parse_flag(text: str) -> tuple[str, int | float]:
    """`NAME=VALUE` of a `--knob` flag as (name, typed value); an unknown name names the valid ones."""
    name, sep, value = text.partition("=")
    if not sep or name not in KNOBS:
        raise ValueError(f"--knob {text!r}: expected NAME=VALUE with NAME one of {', '.join(KNOBS)}")
    return name, parse_value(name, value)


def apply_knob(section: dict, section_name: str, name: str, value: int | float) -> dict:
    """A copy of config section `section_name` (e.g. `unlearn`, `bilevel`) with the knob's key set
    to `value`; the knob's key must lie in that section."""
    head, _, rest = KNOBS[name].key.partition(".")
    if head != section_name:
        raise ValueError(f"knob {name!r} sets {KNOBS[name].key}, not a key of the {section_name} section")
    out = copy.deepcopy(section)
    node = out
    *parents, leaf = rest.split(".")
    for part in parents:
        if part not in node:
            raise ValueError(f"knob {name!r}: the {section_name} section has no {part!r} entry for {KNOBS[name].key}")
        node = node[part]
    node[leaf] = KNOBS[name].kind(value)
    return out


def config_value(config: dict, name: str, authors_code: bool = False):
    """The value knob `name` takes in a run without a knob: the config's key, or for the authors'
    code (bilevelcode) its `bilevel.code` override where it sets one. None where the key is absent."""
    head, *path = KNOBS[name].key.split(".")
    sections = [config.get(head, {})]
    if authors_code and head == BILEVEL:
        sections.insert(0, config.get(BILEVEL, {}).get("code") or {})
    for node in sections:
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            return node
    return None


def point_stem(config: dict, run: str, name: str, value: int | float) -> str:
    """The model stem of a frontier point: `{run}-{knob}{value}`, or `run` itself where `value` is
    the one the run already takes (the curve's centre is the main run, trained once, as Table 1's)."""
    centre = config_value(config, name, authors_code=run.startswith("bilevelcode-"))
    if centre is not None and KNOBS[name].kind(centre) == KNOBS[name].kind(value):
        return run
    return f"{run}{tag(name, value)}"
