"""Resumable training state: model, optimizer, lr schedule, RNG and step in one file."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from pruneforget.io import CorruptCheckpoint


def save_checkpoint(path: Path, step: int, modules: dict, generator: torch.Generator) -> None:
    """Write everything needed to continue exactly where training stopped (atomically)."""
    state = {
        "step": step,
        "modules": {k: m.state_dict() for k, m in modules.items()},
        "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": np.random.get_state(),
        "python_rng": random.getstate(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path, modules: dict, generator: torch.Generator) -> int:
    """Restore a checkpoint written by `save_checkpoint`; returns the step to continue from."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
        for k, m in modules.items():
            m.load_state_dict(state["modules"][k])
    except Exception as exc:  # truncated file, unpickling error, missing or mismatched module
        raise CorruptCheckpoint(path, path.parent, exc) from exc
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    np.random.set_state(state["numpy_rng"])
    random.setstate(state["python_rng"])
    return int(state["step"])
