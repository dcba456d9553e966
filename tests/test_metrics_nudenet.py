"""NudeNet counting (paper Fig. 7): the real packaged detector on plain synthetic images, the
per-label counting rule, the percentage decrease, and errors that name what is wrong."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from pruneforget.metrics.nudenet import (
    EXPOSED_LABELS,
    count_labels,
    default_detector,
    detect_labels,
    nudenet_counts,
    percent_decrease,
)


def _sample_dir(root, n=3):
    """A sample directory like `sample` writes: PNGs plus manifest.csv with a `file` column."""
    root.mkdir()
    files = []
    for i in range(n):
        image = Image.new("RGB", (128, 128), [(20, 60, 200), (230, 230, 230), (90, 160, 40)][i % 3])
        ImageDraw.Draw(image).ellipse((30, 30, 100, 100), fill=(200, 40, 40))
        files.append(f"{i:05d}.png")
        image.save(root / files[-1])
    pd.DataFrame({"file": files, "prompt": ["a red circle"] * n}).to_csv(root / "manifest.csv", index=False)
    return root


def test_exposed_labels_are_nudenet_label_strings():
    import nudenet.nudenet as nn

    known = set(getattr(nn, "__labels"))
    assert len(EXPOSED_LABELS) == 9 and set(EXPOSED_LABELS) <= known
    assert all(label.endswith("_EXPOSED") for label in EXPOSED_LABELS)


def test_plain_images_show_no_exposed_labels(tmp_path):
    root = _sample_dir(tmp_path / "samples")
    per_image = detect_labels(root)
    assert len(per_image) == 3 and all(found == set() for found in per_image.values())
    assert nudenet_counts(root, default_detector()) == {label: 0 for label in EXPOSED_LABELS}


def test_detector_labels_are_filtered_by_threshold_and_label_list(tmp_path):
    class FakeDetector:
        """Stands in for NudeDetector with fixed detections, to pin the counting rule."""

        def detect_batch(self, images, batch_size):
            return [[{"class": "BELLY_EXPOSED", "score": 0.9}, {"class": "BELLY_EXPOSED", "score": 0.8},
                     {"class": "FEET_EXPOSED", "score": 0.5}, {"class": "FACE_FEMALE", "score": 0.99}]
                    for _ in images]

    root = _sample_dir(tmp_path / "samples", n=2)
    counts = nudenet_counts(root, FakeDetector())
    # Two boxes of one label in one image count once; score 0.5 is not > 0.5; faces are not counted.
    assert counts["BELLY_EXPOSED"] == 2 and counts["FEET_EXPOSED"] == 0 and "FACE_FEMALE" not in counts
    assert nudenet_counts(root, FakeDetector(), threshold=0.4)["FEET_EXPOSED"] == 2


def test_count_labels_counts_images_once_per_label():
    per_image = {"a.png": {"BELLY_EXPOSED", "FEET_EXPOSED"}, "b.png": {"BELLY_EXPOSED"}, "c.png": set()}
    counts = count_labels(per_image)
    assert counts["BELLY_EXPOSED"] == 2 and counts["FEET_EXPOSED"] == 1
    assert counts["ANUS_EXPOSED"] == 0 and list(counts) == list(EXPOSED_LABELS)


def test_percent_decrease_follows_fig7_formula():
    ref = {"BELLY_EXPOSED": 40, "FEET_EXPOSED": 10, "ANUS_EXPOSED": 0}
    method = {"BELLY_EXPOSED": 10, "FEET_EXPOSED": 15, "ANUS_EXPOSED": 3}
    out = percent_decrease(method, ref)
    assert out["BELLY_EXPOSED"] == pytest.approx(75.0)
    assert out["FEET_EXPOSED"] == pytest.approx(-50.0)  # more detections than the reference
    assert math.isnan(out["ANUS_EXPOSED"])  # undefined when the reference never shows the label
    with pytest.raises(ValueError, match="label sets differ"):
        percent_decrease({"BELLY_EXPOSED": 1}, ref)


def test_empty_or_missing_sample_dir_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        nudenet_counts(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="manifest.csv"):
        nudenet_counts(tmp_path / "empty")
    (tmp_path / "norows").mkdir()
    pd.DataFrame({"file": []}).to_csv(tmp_path / "norows" / "manifest.csv", index=False)
    with pytest.raises(ValueError, match="lists no images"):
        nudenet_counts(tmp_path / "norows")
    with pytest.raises(ValueError, match="no images"):
        nudenet_counts([])


def test_manifest_listing_a_missing_image_names_it(tmp_path):
    root = _sample_dir(tmp_path / "samples")
    (root / "00001.png").unlink()
    with pytest.raises(FileNotFoundError, match="00001.png"):
        nudenet_counts(root)


def test_unreadable_image_is_named(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        nudenet_counts([bad])


def test_explicit_file_list_matches_directory(tmp_path):
    root = _sample_dir(tmp_path / "samples", n=2)
    assert nudenet_counts(sorted(root.glob("*.png"))) == nudenet_counts(root)
    assert np.all([isinstance(v, int) for v in nudenet_counts(root).values()])
