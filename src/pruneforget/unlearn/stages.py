"""Concepts added later (continual unlearning, the paper's future work): the stages of one
experiment on the artist setting, read by the run names (unlearn/runs.py, bilevel/runs.py), the
rules and figures.fig_continual.

    first   remove the setting's first concept
    later   then remove its second, starting from the `first` model (its concepts kept)
    both    remove the first two at once (the reference a continual run should reach)

Each stage reads the artist setting's section (guide, preserve set, prompt pairs) with its
concept list replaced, so nothing here names a style: a world with other removed styles gets the
same experiment on its own first two.
"""

from __future__ import annotations

BASE_SETTING = "artists"  # the setting whose concepts the stages split
STAGES = {"first": slice(0, 1), "later": slice(1, 2), "both": slice(0, 2)}
PREVIOUS = {"later": "first"}  # a stage that starts from another stage's model


def base_setting(setting: str) -> str:
    """The config section (`unlearn.<setting>`) a setting or stage reads."""
    return BASE_SETTING if setting in STAGES else setting


def stage_concepts(concepts: list[str], stage: str) -> list[str]:
    """The concepts a stage removes (for `later`: the ones it adds to the `first` model's)."""
    if len(concepts) < 2:
        raise ValueError(f"continual stages need two concepts in unlearn.{BASE_SETTING}.concepts, got {concepts}")
    return list(concepts[STAGES[stage]])


def stage_section(unlearn: dict, setting: str) -> dict:
    """`unlearn.<setting>` for a setting, or for a stage the artist setting with the stage's concepts."""
    section = dict(unlearn[base_setting(setting)])
    if setting in STAGES:
        section["concepts"] = stage_concepts(section["concepts"], setting)
    return section
