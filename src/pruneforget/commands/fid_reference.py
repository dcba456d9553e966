"""`fid-reference`: clean-fid statistics of the COCO val2017 images, computed once (paper scale).

Reads the images of data/val.csv (one row per val2017 image at sd21: all 5,000), center-crops
and resizes them to `score.fid_reference_size` (512), and stores the Inception mean and
covariance in `score.fid_mode` (legacy_pytorch); see `pruneforget.metrics.fid_reference`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pruneforget.cli import parse_params
from pruneforget.io import atomic_dir


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, type=Path, help="data directory whose val.csv lists the COCO val2017 images")
    p.add_argument("--params", required=True, type=parse_params,
                   help="the `score` config section as JSON (fid_features, fid_mode, clip_model, fid_reference_size, batch_size, num_workers)")
    p.add_argument("--out", required=True, type=Path, help="statistics directory to write (stats.npz, info.json)")


def run(args: argparse.Namespace) -> None:
    import pandas as pd

    from pruneforget.metrics.fid_reference import fid_features, write_reference_stats

    cfg = args.params
    size = int(cfg.get("fid_reference_size", 512))
    kind = cfg.get("fid_features", "inception")
    extractor = ({"features": "inception", "mode": cfg.get("fid_mode", "legacy_pytorch")} if kind == "inception"
                 else {"features": kind, "clip_model": cfg["clip_model"]})
    table_path = args.data / "val.csv"
    if not table_path.is_file():
        sys.exit(f"fid-reference: {table_path} does not exist; prepare the data first (rule prepare_data)")
    # Absolute paths at sd21 (into the COCO root); joining keeps relative ones (tiny) working too.
    files = [str(args.data / p) for p in pd.read_csv(table_path)["image"].drop_duplicates()]
    missing = [f for f in files if not Path(f).is_file()]
    if missing:
        sys.exit(f"fid-reference: {len(missing)} image(s) listed in {table_path} are missing, first: {missing[0]}")
    try:
        features = fid_features(files, extractor, resize_to=size, batch_size=int(cfg.get("batch_size", 32)),
                                num_workers=int(cfg.get("num_workers", 8)))
    except ImportError as exc:
        sys.exit(f"fid-reference: {exc}")
    with atomic_dir(args.out) as tmp:
        write_reference_stats(tmp, features, {**extractor, "source": str(table_path), "size": size,
                                              "resize": "center crop to square, PIL bicubic to size x size"})
    print(f"fid-reference: wrote {args.out} ({len(files)} images, {extractor}, {size} px)")
