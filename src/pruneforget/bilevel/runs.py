"""What a bilevel run's name says, read in one place by the rule, the command's flags and tests.

    {kind}-{setting}[-{pruner}][-{upper}][-{knob}{value}]-s{seed}
                                   kind bilevel (Algorithm 1), bilevelsep (vartheta a second copy),
                                   bilevelcode (the authors' code); setting artists or global, or a
                                   continual stage (first, later, both: unlearn/stages.py); pruner a
                                   static pruner whose expert-80 the run starts from (none: APTP's);
                                   upper an upper-level method replacing bilevel.upper.method; knob
                                   a strength knob of bilevel runs (unlearn/knobs.py: lam, K, ulr),
                                   set after the variant's overrides (not on a `later` stage)
    bilevel-lam{lam}-K{K}-s{seed}  a point of the lambda x K sweep (artist setting, `bilevel.sweep`)

A `later` run starts from the `first` run of the same kind, pruner, upper level and seed and adds
the stage's concepts to the ones that run removed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pruneforget.prune import METHODS as PRUNERS
from pruneforget.unlearn import UPPER_METHODS
from pruneforget.unlearn import knobs
from pruneforget.unlearn.knobs import KNOB_PATTERN, alternatives as _alternatives
from pruneforget.unlearn.runs import SETTINGS, expert_stem
from pruneforget.unlearn.stages import PREVIOUS, base_setting

KINDS = {"bilevel": "paper", "bilevelsep": "separate", "bilevelcode": "code"}  # name kind -> --variant
SWEEP_SETTING = "artists"
_NUMBER = r"\d+(?:\.\d+)?"


# The knob's own groups come from unlearn/knobs.py's table; the bilevel family's names only.
_BILEVEL_KNOBS = _alternatives(knobs.knobs_of(knobs.BILEVEL))
_MAIN_BODY = (rf"(?P<kind>{'|'.join(KINDS)})-(?P<setting>{'|'.join(SETTINGS)})"
              rf"(?:-(?P<pruner>{_alternatives(PRUNERS)}))?(?:-(?P<upper>{_alternatives(UPPER_METHODS)}))?"
              rf"(?:-(?P<knob>{_BILEVEL_KNOBS})(?P<value>{knobs.VALUE_PATTERN}))?-s(?P<seed>\d+)")
_MAIN = re.compile(_MAIN_BODY)
# Any `-{word}{number}` before the seed, so a knob that bilevel runs do not take is named as such.
_KNOBBED = re.compile(rf"(?P<head>.+)-(?P<knob>[A-Za-z]+)(?P<value>{knobs.VALUE_PATTERN})-s\d+")
_SWEEP = re.compile(rf"bilevel-lam(?P<lam>{_NUMBER})-K(?P<k>\d+)-s(?P<seed>\d+)")
# Snakemake's wildcard constraint of rule bilevel (no named groups: Snakemake wraps it in its own).
NAME_PATTERN = re.sub(r"\(\?P<\w+>", "(?:", _MAIN_BODY) + rf"|bilevel-lam{_NUMBER}-K\d+-s\d+"
# The rule's constraint also takes a knob of another family, so that parse_run names the valid ones.
NAME_PATTERN = NAME_PATTERN.replace(f"(?:{_BILEVEL_KNOBS})", f"(?:{_alternatives(knobs.KNOBS)})")


@dataclass(frozen=True)
class BilevelRun:
    variant: str
    setting: str
    seed: int
    lam: float | None = None
    k: int | None = None
    pruner: str | None = None
    upper: str | None = None
    kind: str = "bilevel"
    knob: str | None = None
    value: int | float | None = None

    def name(self) -> str:
        """The run's directory name (parse_run's inverse for names in canonical form)."""
        if self.lam is not None:
            return f"bilevel-lam{self.lam:g}-K{self.k}-s{self.seed}"
        tags = "".join(f"-{t}" for t in (self.pruner, self.upper) if t)
        return f"{self.kind}-{self.setting}{tags}{knobs.tag(self.knob, self.value)}-s{self.seed}"

    def flags(self) -> str:
        """The `bilevel` command's flags for this run (besides inputs, sections, added concepts and --out)."""
        sweep = f" --lam {self.lam:g} --k {self.k}" if self.lam is not None else ""
        upper = f" --upper {self.upper}" if self.upper else ""
        knob = f" {knobs.flag(self.knob, self.value)}" if self.knob else ""
        return f"--setting {base_setting(self.setting)} --variant {self.variant} --seed {self.seed}{sweep}{upper}{knob}"

    def source(self) -> str:
        """The model directory name the run starts from: the pruner's expert-80, or for a `later`
        stage the `first` run it continues."""
        if self.setting in PREVIOUS:
            tags = "".join(f"-{t}" for t in (self.pruner, self.upper) if t)
            return f"{self.kind}-{PREVIOUS[self.setting]}{tags}-s{self.seed}"
        return expert_stem(self.pruner)


def parse_run(name: str) -> BilevelRun:
    """The run a directory name stands for; a name of neither form is an error naming both."""
    if m := _MAIN.fullmatch(name):
        knob, value = m["knob"], m["value"]
        if knob and m["setting"] in PREVIOUS:
            raise ValueError(f"a continual {m['setting']!r} stage takes no knob ({name}): it continues the "
                             f"{PREVIOUS[m['setting']]!r} run at the config's values")
        return BilevelRun(KINDS[m["kind"]], m["setting"], int(m["seed"]), pruner=m["pruner"], upper=m["upper"],
                          kind=m["kind"], knob=knob, value=knobs.parse_value(knob, value) if knob else None)
    if m := _SWEEP.fullmatch(name):
        return BilevelRun("paper", SWEEP_SETTING, int(m["seed"]), float(m["lam"]), int(m["k"]))
    if (k := _KNOBBED.fullmatch(name)) and _MAIN.fullmatch(f"{k['head']}-s0"):
        knobs.check_knob(k["knob"], knobs.BILEVEL)
    raise ValueError(f"{name!r} is not a bilevel run name: {{kind}}-{{setting}}[-{{pruner}}][-{{upper}}][-{{knob}}{{value}}]"
                     f"-s{{seed}} (kind {'/'.join(KINDS)}, setting {'/'.join(SETTINGS)}, pruner {'/'.join(PRUNERS)}, "
                     f"upper {'/'.join(UPPER_METHODS)}, knob {'/'.join(knobs.knobs_of(knobs.BILEVEL))}) "
                     f"or bilevel-lam{{lam}}-K{{K}}-s{{seed}}")
