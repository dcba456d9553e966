"""Concept removal applied to a finished model: the paper's two-stage baselines (ESD, UCE, ConceptPrune).

One interface for every method (module `pruneforget.unlearn.<method>`):

    unlearn(pipe, concepts, params, *, seed=0, work_dir=None) -> Unlearned

- `pipe`: a `StableDiffusionPipeline` (tiny or SD 2.1, pruned or not). It is edited IN PLACE
  (its UNet's weights change; nothing is copied, so an SD 2.1 pipeline is never held twice) and
  returned as `Unlearned.pipe`. Callers that need the original keep their own copy first.
- `concepts`: a `ConceptSet` (see `pruneforget.unlearn.concepts`): the concepts to erase (one or
  several at once: the paper removes Van Gogh, Monet and Picasso together) plus the
  method-specific sets: the guide and preserve set of UCE, the (base, target) prompt pairs of
  ConceptPrune. `validate_concepts` checks it against the pipeline before any work.
- `params`: the method's own config section (`unlearn.<method>` in config/*.yaml), as a dict.
- `seed`: seeds whatever the method samples (ConceptPrune's initial noise; ESD's training).
- `work_dir`: a directory the method may write logs or checkpoints to; the `unlearn` command
  passes its (atomic) output directory, so anything written there ends up next to the model.
- returns `Unlearned(pipe, stats)`, where `stats` is a JSON-able dict of what changed (numbers of
  edited or zeroed weights, ...) that the command records in `unlearn.json`.

A method module may also define `check_params(params) -> None`, raising
`UnlearnInputError` on a bad config section; the command calls it before loading the model.

`METHODS` maps the method names of the `unlearn` command (and of the `{method}` wildcard of
rules/unlearn.smk, which imports it) to their modules, each named as its config section
(`unlearn.<module>`); a new method is one module plus one entry here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:  # the rules import METHODS: no diffusers at every Snakemake start
    from diffusers import StableDiffusionPipeline

# method name -> module under pruneforget.unlearn (ESD adds its entries here)
METHODS: dict[str, str] = {
    "uce": "uce",
    "conceptprune": "conceptprune",
    "esdx": "esd",
    "esdu": "esd",
    "esd": "esd",
    "esdall": "esd",
    "esdadv": "esd",
}

# The upper levels of the bilevel run (unlearn/upper.py's registry UPPER, whose keys a test holds
# to this list): named here for the run names the rules parse, without importing torch.
UPPER_METHODS = ("esdx", "esdu", "esdall", "esd-saliency", "esd-adversarial", "uce")


class Unlearned(NamedTuple):
    """A method's result: the pipeline (the same object that went in, edited) and what changed."""

    pipe: StableDiffusionPipeline
    stats: dict[str, Any]


def method_module(name: str):
    """The module implementing method `name` (it defines `unlearn`)."""
    if name not in METHODS:
        raise ValueError(f"unknown unlearning method {name!r}; choose one of {', '.join(METHODS)}")
    return importlib.import_module(f"pruneforget.unlearn.{METHODS[name]}")
