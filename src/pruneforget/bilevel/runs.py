"""What a bilevel run's name says, read in one place by the rule, the command's flags and tests.

    {kind}-{setting}-s{seed}       kind bilevel (Algorithm 1), bilevelsep (vartheta a second copy),
                                   bilevelcode (the authors' code); setting artists or global
    bilevel-lam{lam}-K{K}-s{seed}  a point of the lambda x K sweep (artist setting, `bilevel.sweep`)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KINDS = {"bilevel": "paper", "bilevelsep": "separate", "bilevelcode": "code"}  # name kind -> --variant
SETTINGS = ("artists", "global")
SWEEP_SETTING = "artists"
_NUMBER = r"\d+(?:\.\d+)?"
# Snakemake's wildcard constraint of rule bilevel (no groups: Snakemake wraps it in its own).
NAME_PATTERN = (rf"(?:{'|'.join(KINDS)})-(?:{'|'.join(SETTINGS)})-s\d+"
                rf"|bilevel-lam{_NUMBER}-K\d+-s\d+")
_MAIN = re.compile(rf"(?P<kind>{'|'.join(KINDS)})-(?P<setting>{'|'.join(SETTINGS)})-s(?P<seed>\d+)")
_SWEEP = re.compile(rf"bilevel-lam(?P<lam>{_NUMBER})-K(?P<k>\d+)-s(?P<seed>\d+)")


@dataclass(frozen=True)
class BilevelRun:
    variant: str
    setting: str
    seed: int
    lam: float | None = None
    k: int | None = None

    def flags(self) -> str:
        """The `bilevel` command's flags for this run (besides inputs, sections and --out)."""
        sweep = f" --lam {self.lam:g} --k {self.k}" if self.lam is not None else ""
        return f"--setting {self.setting} --variant {self.variant} --seed {self.seed}{sweep}"


def parse_run(name: str) -> BilevelRun:
    """The run a directory name stands for; a name of neither form is an error naming both."""
    if m := _MAIN.fullmatch(name):
        return BilevelRun(KINDS[m["kind"]], m["setting"], int(m["seed"]))
    if m := _SWEEP.fullmatch(name):
        return BilevelRun("paper", SWEEP_SETTING, int(m["seed"]), float(m["lam"]), int(m["k"]))
    raise ValueError(f"{name!r} is not a bilevel run name: {{kind}}-{{setting}}-s{{seed}} "
                     f"(kind {'/'.join(KINDS)}, setting {'/'.join(SETTINGS)}) or bilevel-lam{{lam}}-K{{K}}-s{{seed}}")
