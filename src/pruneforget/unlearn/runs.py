"""What a two-stage unlearning run's name says, read in one place by rule unlearn and tests.

    {method}-{setting}[-{pruner}]-s{seed}

- method: an entry of `pruneforget.unlearn.METHODS`;
- setting: `artists` or `global`, or a continual stage (`first`, `later`, `both`: unlearn/stages.py);
- pruner: the static pruner whose expert the distilled model was fine-tuned from
  (`ft-80-{pruner}-kd-pruned`); none: APTP's expert (`ft-80-kd-pruned`, the paper's model).

The run starts from the distilled model of its seed, or for stage `later` from the `first` run of
the same method, pruner and seed (two-stage unlearning applied twice).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pruneforget.prune import METHODS as PRUNERS
from pruneforget.unlearn import METHODS
from pruneforget.unlearn.stages import PREVIOUS, STAGES

BASE_SETTINGS = ("artists", "global")  # the concept sets of the config (unlearn.<setting>), what commands take
SETTINGS = (*BASE_SETTINGS, *STAGES)
BUDGET = 80  # every unlearned model starts from an expert at the paper's 80% MACs


def _alternatives(names) -> str:
    # Longest first: a regex alternation takes the first that matches (esd before esdx).
    return "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))


NAME_PATTERN = rf"(?:{_alternatives(METHODS)})-(?:{'|'.join(SETTINGS)})(?:-(?:{_alternatives(PRUNERS)}))?-s\d+"
_NAME = re.compile(rf"(?P<method>{_alternatives(METHODS)})-(?P<setting>{'|'.join(SETTINGS)})"
                   rf"(?:-(?P<pruner>{_alternatives(PRUNERS)}))?-s(?P<seed>\d+)")


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

    def source(self) -> str:
        """The model directory name this run starts from."""
        if self.setting in PREVIOUS:
            return f"{self.method}-{PREVIOUS[self.setting]}{tag(self.pruner)}-s{self.seed}"
        return f"{distilled_stem(self.pruner)}-s{self.seed}"


def parse_run(name: str) -> UnlearnRun:
    """The run a directory name stands for; any other name is an error naming the form."""
    m = _NAME.fullmatch(name)
    if not m:
        raise ValueError(f"{name!r} is not a two-stage unlearning run name: {{method}}-{{setting}}[-{{pruner}}]-s{{seed}} "
                         f"(method {'/'.join(METHODS)}, setting {'/'.join(SETTINGS)}, pruner {'/'.join(PRUNERS)})")
    return UnlearnRun(m["method"], m["setting"], int(m["seed"]), m["pruner"])
