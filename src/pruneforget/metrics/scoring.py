"""Which score needs what: the metrics of `python -m pruneforget score`, their inputs and checks.

Every score is one JSON file (see `score_document`):

    {"metric": name, "version": int, "inputs": {name: path}, "value": number or {name: number},
     "n": images (or pairs) scored, "per_item": [{...}, ...]}

Metrics per scale (the config's `score.metrics` says which run where):

    tiny  judge              evaluator accuracies (style, shape, colour) of a sample set
          ua                 unlearning accuracy on a removal or synonym set       (samples, evaluator)
          retain             IRA and CRA on the retain set                         (samples, evaluator)
          cp_evaluator       CP with the evaluator's target-style probability      (samples, reference, evaluator)
          frechet_evaluator  Frechet distance to the real held-out images          (samples, evaluator, data)
          denoising_error    held-out denoising error of a model (no samples)      (model, data)
    sd21  clip               CLIP score x 100 against each sample's prompt         (samples)
          cp_clip            CP with CLIP similarity                               (samples, reference)
          csd                mean CSD style cosine to the reference's images       (samples, reference)
          fid                FID against COCO val2017 statistics (fid_features)    (samples, reference = stats dir)
          nudenet            NudeNet exposed-label counts                          (samples)

`check_weights` runs before any image is read: a metric whose weights are missing fails naming
the file or setting to fix. The metric functions live in `scores_tiny.py` and `scores_paper.py`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pruneforget.io import is_local_path
from pruneforget.metrics.inputs import PAIRED
from pruneforget.metrics.sample_set import SampleSet

SCALES = ("tiny", "sd21")
INPUTS = ("samples", "reference", "evaluator", "model", "data")


class ScoreInputError(ValueError):
    """An input a metric cannot use (missing flag, file or weights); the message names it."""


@dataclass
class ScoreInputs:
    """What a metric is given; paths as passed on the command line, sample sets already checked."""

    samples: SampleSet | None = None
    reference: Path | None = None
    evaluator: Path | None = None
    model: Path | None = None
    data: Path | None = None
    reference_set: SampleSet | None = None  # `reference` read as a sample set, for paired metrics
    paths: dict[str, str] = field(default_factory=dict)


# A metric function returns (value, per_item rows, n).
Result = tuple[Any, list[dict], int]


@dataclass(frozen=True)
class Metric:
    name: str
    scale: str
    version: int
    needs: tuple[str, ...]
    run: Callable[[ScoreInputs, dict], Result]
    help: str = ""

    @property
    def reference_is_samples(self) -> bool:
        """Whether `reference` is the reference model's sample set (metrics/inputs.py)."""
        return self.name in PAIRED


def _hub_or_local(name: str, setting: str) -> None:
    """A local path must exist; a hub id is tried when the model loads (offline: it fails there)."""
    if is_local_path(name) and not Path(name).expanduser().exists():
        raise ScoreInputError(f"{setting}: local path {name!r} does not exist; point it at a downloaded copy")


def check_weights(metric: Metric, params: dict) -> None:
    """Fail before any work when a metric's weights or settings are missing at this scale."""
    if metric.name in ("clip", "cp_clip"):
        name = params.get("clip_model")
        if not name:
            raise ScoreInputError(f"{metric.name} needs score.clip_model (openai/clip-vit-base-patch32 or a local copy)")
        _hub_or_local(str(name), "score.clip_model")
    elif metric.name == "csd":
        from pruneforget.metrics.csd import missing_checkpoint_message

        ckpt = params.get("csd_checkpoint")
        if not ckpt:
            raise ScoreInputError("csd needs score.csd_checkpoint: " + missing_checkpoint_message("(unset)"))
        if not Path(ckpt).expanduser().is_file():
            raise ScoreInputError(missing_checkpoint_message(ckpt))
        _hub_or_local(str(params.get("csd_backbone", "")) or "", "score.csd_backbone")
    elif metric.name == "fid" and params.get("fid_features", "inception") == "inception":
        try:
            import cleanfid  # noqa: F401
        except ImportError as err:
            raise ScoreInputError('fid needs clean-fid (and torchvision): pip install -e ".[paper]" (cluster only)') from err


def load_clip_checked(name: str, device):
    """(CLIPModel, tokenizer), turning a hub failure into a ScoreInputError naming the setting.
    Honours HF_HUB_OFFLINE at call time (no retries against an unreachable hub)."""
    from transformers import AutoTokenizer, CLIPModel

    local_only = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}
    try:
        model = CLIPModel.from_pretrained(name, local_files_only=local_only).to(device).eval()
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local_only)
    except OSError as err:
        raise ScoreInputError(
            f"score.clip_model {name!r}: CLIP weights could not be loaded (not a local directory, and the hub is "
            f"unreachable or the files are not cached: {str(err).splitlines()[0][:200]}); set score.clip_model "
            "to a local copy of openai/clip-vit-base-patch32"
        ) from err
    return model, tokenizer


def score_document(metric: Metric, inputs: ScoreInputs, result: Result) -> dict:
    value, per_item, n = result
    return {"metric": metric.name, "version": metric.version, "inputs": dict(inputs.paths), "value": value,
            "n": int(n), "per_item": per_item}
