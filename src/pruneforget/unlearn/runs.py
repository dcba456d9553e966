"""What a two-stage unlearning run's name says, read in one place by rule unlearn and tests.

    {method}-{setting}[-{pruner}][-{knob}{value}]-s{seed}

- method: an entry of `pruneforget.unlearn.METHODS`;
- setting: `artists` or `global`, or a continual stage (`first`, `later`, `both`: unlearn/stages.py);
- pruner: the static pruner whose expert the distilled model was fine-tuned from
  (`ft-80-{pruner}-kd-pruned`); none: APTP's expert (`ft-80-kd-pruned`, the paper's model);
- knob: a strength knob of the method's family overriding one config value (unlearn/knobs.py:
  `esdx-artists-steps200-s0` trains ESD-x for 200 steps); not on a `later` stage.

The run starts from the distilled model of its seed, or for stage `later` from the `first` run of
the same method, pruner and seed (two-stage unlearning applied twice).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pruneforget.prune import METHODS as PRUNERS
from pruneforget.unlearn import METHODS
from pruneforget.unlearn import knobs
from pruneforget.unlearn.knobs import KNOB_PATTERN, alternatives as _alternatives
from pruneforget.unlearn.stages import PREVIOUS, STAGES, base_setting

BASE_SETTINGS = ("artists", "global")  # the concept sets of the config (unlearn.<setting>), what commands take
SETTINGS = (*BASE_SETTINGS, *STAGES)
BUDGET = 80  # every unlearned model starts from an expert at the paper's 80% MACs


NAME_PATTERN = (rf"(?:{_alternatives(METHODS)})-(?:{'|'.join(SETTINGS)})(?:-(?:{_alternatives(PRUNERS)}))?"
                rf"(?:-{KNOB_PATTERN})?-s\d+")
_NAME = re.compile(rf"(?P<method>{_alternatives(METHODS)})-(?P<setting>{'|'.join(SETTINGS)})"
                   rf"(?:-(?P<pruner>{_alternatives(PRUNERS)}))?"
                   rf"(?:-(?P<knob>{_alternatives(knobs.KNOBS)})(?P<value>{knobs.VALUE_PATTERN}))?-s(?P<seed>\d+)")
# Any `-{word}{number}` before the seed: a knob-shaped tag, so a wrong knob name is named as such.
_KNOBBED = re.compile(rf"(?P<head>.+)-(?P<knob>[A-Za-z]+)(?P<value>{knobs.VALUE_PATTERN})-s\d+")


def expert_stem(pruner: str | None, budget: int = BUDGET) -> str:
    """The expert directory of a pruner at a budget: APTP's `expert-80`, else `expert-80-{pruner}`."""
    return f"expert-{budget}" + (f"-{pruner}" if pruner else "")


def distilled_stem(pruner: str | None, budget: int = BUDGET) -> str:
    """The distilled model (Eq. 8) fine-tuned from that expert: `ft-80[-{pruner}]-kd-pruned`."""
    return f"ft-{budget}" + (f"-{pruner}" if pruner else "") + "-kd-pruned"


def tag(pruner: str | None) -> str:
    return f"-{pruner}" if pruner else ""


@dataclass(frozen=True)
class UnlearnRun:
    method: str
    setting: str
    seed: int
    pruner: str | None = None
    knob: str | None = None
    value: int | float | None = None

    def name(self) -> str:
        """The run's directory name (parse_run's inverse for names in canonical form)."""
        return f"{self.method}-{self.setting}{tag(self.pruner)}{knobs.tag(self.knob, self.value)}-s{self.seed}"

    def flags(self) -> str:
        """The `unlearn` command's flags for this run (besides model, data, params and --out)."""
        knob = knobs.flag(self.knob, self.value)
        return (f"--method {self.method} --setting {base_setting(self.setting)} --seed {self.seed}"
                + (f" {knob}" if knob else ""))

    def source(self) -> str:
        """The model directory name this run starts from."""
        if self.setting in PREVIOUS:
            return f"{self.method}-{PREVIOUS[self.setting]}{tag(self.pruner)}-s{self.seed}"
        return f"{distilled_stem(self.pruner)}-s{self.seed}"


def parse_run(name: str) -> UnlearnRun:
    """The run a directory name stands for; any other name is an error naming the form."""
    m = _NAME.fullmatch(name)
    if not m:
        if (k := _KNOBBED.fullmatch(name)) and _NAME.fullmatch(f"{k['head']}-s0"):
            knobs.check_knob(k["knob"], knobs.family_of(k["head"].split("-")[0]))
        raise ValueError(f"{name!r} is not a two-stage unlearning run name: {{method}}-{{setting}}[-{{pruner}}]"
                         f"[-{{knob}}{{value}}]-s{{seed}} (method {'/'.join(METHODS)}, setting {'/'.join(SETTINGS)}, "
                         f"pruner {'/'.join(PRUNERS)}, knob {'/'.join(knobs.KNOBS)})")
    return _run(m["method"], m["setting"], int(m["seed"]), m["pruner"], m["knob"], m["value"])


def _run(method: str, setting: str, seed: int, pruner: str | None, knob: str | None, value: str | None) -> UnlearnRun:
    if knob is None:
        return UnlearnRun(method, setting, seed, pruner)
    knobs.check_knob(knob, knobs.family_of(method))
    if setting in PREVIOUS:
        raise ValueError(f"a continual {setting!r} stage takes no knob ({method}-{setting}-{knob}{value}): it continues "
                         f"the {PREVIOUS[setting]!r} run at the config's values")
    return UnlearnRun(method, setting, seed, pruner, knob, knobs.parse_value(knob, value))
