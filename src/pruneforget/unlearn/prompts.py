"""A setting's concept set from config: the concepts, UCE's guide and preserve set, and ConceptPrune's
prompt pairs built from a subject list.

Subjects come from the shipped word lists at the paper scale (`things`: config/prompts/things.txt,
`humans`: humans.txt) and from the world itself in the tiny world (`world`: every "{colour} {shape}"
of results/{scale}/data/world.json), so the tiny pairs follow whatever world the config describes.
"""

from __future__ import annotations

import os
from pathlib import Path

from pruneforget.unlearn.concepts import ConceptSet, UnlearnInputError
from pruneforget.world.prompt_sets import PROMPTS_DIR, load_word_list
from pruneforget.world.tables import read_world

SUBJECT_SOURCES = ("things", "humans", "world")


def prompt_subjects(source: str, data_dir: str | os.PathLike | None) -> list[str]:
    """The subjects ConceptPrune's prompt templates are filled with."""
    if source in ("things", "humans"):
        return load_word_list(PROMPTS_DIR / f"{source}.txt")
    if source == "world":
        world = read_world(data_dir) if data_dir is not None else {}
        if world.get("kind") != "tiny":
            raise UnlearnInputError(
                f"prompt_pairs.subjects 'world' needs the tiny world's {Path(str(data_dir)) / 'world.json'} "
                f"(found kind {world.get('kind')!r}); at the paper scale use 'things' or 'humans'"
            )
        labels = world["labels"]
        return [f"{colour} {shape}" for shape in labels["shape"] for colour in labels["colour"]]
    raise UnlearnInputError(f"prompt_pairs.subjects {source!r} is not one of {SUBJECT_SOURCES}")


def prompt_pairs(base: str, target: str, subjects: list[str], concepts: list[str]) -> dict[str, tuple[tuple[str, str], ...]]:
    """ConceptPrune's (base, target) pairs, one per subject, grouped by concept.

    Templates use `{subject}` and optionally `{concept}`. A target naming `{concept}` gives one
    group per concept ("a {subject} in the style of {concept}": one per artist); a target without
    it gives one group named by the template ("a photo of a naked {subject}": nudity)."""
    if "{concept}" in target:
        return {c: tuple((base.format(subject=s, concept=c), target.format(subject=s, concept=c)) for s in subjects)
                for c in concepts}
    return {target: tuple((base.format(subject=s), target.format(subject=s)) for s in subjects)}


def concept_set(setting: dict, data_dir: str | os.PathLike | None = None) -> ConceptSet:
    """The ConceptSet of one `unlearn.<setting>` config section (concepts, guide, preserve, prompt_pairs)."""
    pairs_cfg = setting["prompt_pairs"]
    subjects = prompt_subjects(pairs_cfg["subjects"], data_dir)
    return ConceptSet(
        erase=tuple(setting["concepts"]),
        guide=setting["guide"],
        preserve=tuple(setting["preserve"]),
        pairs=prompt_pairs(pairs_cfg["base"], pairs_cfg["target"], subjects, list(setting["concepts"])),
    )
