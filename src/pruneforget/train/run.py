"""The parts of a fine-tuning run that the `finetune` and `bilevel` commands share: inputs checked
before any model loads, the student and the frozen teacher, D_f as batches, the periodic
evaluation, and the run directory (resumable, written atomically)."""

from __future__ import annotations

import contextlib
from pathlib import Path

from diffusers import UNet2DConditionModel

from pruneforget.io import resumable_dir, resumable_work_path, write_json
from pruneforget.models.diffusion import pipeline_resolution
from pruneforget.models.expert import write_pipeline
from pruneforget.models.load import load_pipeline
from pruneforget.sample import spread_subset
from pruneforget.train.data import StreamedPairs, precomputed_pairs
from pruneforget.train.evaluate import EvalSettings, FinetuneEvaluation
from pruneforget.train.finetune import check_same_base, reinitialise
from pruneforget.world.tables import load_images_at, read_split


def check_inputs(expert: Path, teacher: Path, data: Path, evaluator: Path | None, cfg: dict) -> None:
    """Everything that can be wrong before any model is loaded, named with its fix (`cfg`: the
    `finetune` section)."""
    for flag, path in (("--expert", expert), ("--teacher", teacher), ("--data", data)):
        if not path.is_dir():
            raise FileNotFoundError(f"{flag} {path}: no such directory")
    if evaluator is not None and not (evaluator / "config.json").exists():
        raise FileNotFoundError(f"--evaluator {evaluator}: no evaluator there (config.json missing); run train-evaluator")
    if evaluator is None and not cfg.get("fid_reference") and (data / "world.json").exists() \
            and _world_kind(data) == "tiny":
        raise ValueError("the tiny world evaluates fine-tuning with its ground-truth evaluator: pass --evaluator DIR")
    check_same_base(expert, teacher)


def _world_kind(data_dir: Path) -> str:
    from pruneforget.world.tables import read_world

    return read_world(data_dir).get("kind", "tiny")


def build_evaluation(pipe, data: Path, evaluator_dir: Path | None, fid_reference_dir: Path | None, cfg: dict,
                     size: int) -> FinetuneEvaluation:
    """Held-out val images and captions for the periodic evaluation (see train/evaluate.py): with
    the tiny world's evaluator, or FID against `fid_reference_dir` (sd21; `cfg["fid_reference"]`,
    when set, wins), else against the val images' folder."""
    settings = EvalSettings.from_config(cfg["eval"])
    val = read_split(data, "val")
    rows = spread_subset(val, settings.denoising_images) if settings.denoising_images else val
    prompts = spread_subset(val, settings.prompts)["caption"].tolist()
    evaluator = real = None
    if evaluator_dir is not None:
        from pruneforget.metrics.evaluator import load_evaluator

        evaluator = load_evaluator(evaluator_dir)
        real = load_images_at(data, val, size)
    fid_reference = cfg.get("fid_reference") or (None if evaluator is not None else
                                                  str(fid_reference_dir or _image_folder(data, val)))
    return FinetuneEvaluation(pipe, settings, denoise_images=load_images_at(data, rows, size),
                              denoise_captions=rows["caption"].tolist(), prompts=prompts, evaluator=evaluator,
                              real_images=real, fid_reference=fid_reference)


def _image_folder(data_dir: Path, table) -> str:
    """The one folder holding a table's images (COCO's val2017/): clean-fid's reference."""
    folders = {str((data_dir / p).parent) for p in table["image"]}
    if len(folders) != 1:
        raise ValueError(f"val images lie in {len(folders)} folders; set finetune.fid_reference to one folder or a clean-fid stats name")
    return folders.pop()


def load_student(expert: Path, device, random_init_seed: int | None = None):
    """The student pipeline on `device`: VAE and text encoder frozen in eval mode, the UNet trained;
    with a seed, the UNet re-initialised first (Fig. 5's random initialisation of the same architecture)."""
    pipe = load_pipeline(expert)
    pipe.vae.requires_grad_(False).eval()
    pipe.text_encoder.requires_grad_(False).eval()
    if random_init_seed is not None:
        reinitialise(pipe.unet, random_init_seed)
    return pipe.to(device)


def load_teacher(teacher: Path, device) -> UNet2DConditionModel:
    """The unpruned base UNet, the frozen teacher of Eq. 8 (the objectives call it under no_grad)."""
    return UNet2DConditionModel.from_pretrained(teacher, subfolder="unet").to(device)


def finetune_pairs(pipe, data_dir: Path, table, cfg: dict, scheduler, seed: int):
    """D_f as seeded training batches, encoded once (`precompute`) or streamed from disk, and the
    pixel size they are drawn at."""
    size = cfg.get("resolution") or pipeline_resolution(pipe)
    if cfg["precompute"]:
        images = load_images_at(data_dir, table, size)
        return precomputed_pairs(pipe, images, table["caption"].tolist(), scheduler, seed, cfg["caption_dropout"]), size
    return StreamedPairs(pipe, data_dir, table, size, scheduler, seed, cfg["caption_dropout"]), size


def write_run(pipe, work: Path, run_config: dict) -> None:
    """A finished run's directory: the pipeline and its resolved config (resumable_dir drops the
    checkpoints after the final rename: RUN_DROP)."""
    write_pipeline(pipe, work)
    write_json(work / "run_config.json", run_config)


# Work files a training run keeps until its artifact is in place (see resumable_dir).
RUN_DROP = ("checkpoints",)


def run_work_dir(out: Path, fingerprint: dict, accelerator):
    """The run's work directory for every process: the main one checks the fingerprint (the
    command's settings: starting over when they changed) and renames it to `out` at the end; the
    others wait for that check before they look for checkpoints."""
    if accelerator.is_main_process:
        return resumable_dir(out, fingerprint, drop=RUN_DROP)
    return contextlib.nullcontext(resumable_work_path(out))
