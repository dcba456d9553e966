"""MS-COCO 2017 preparation (sd21 world) on a tiny fixture in COCO's caption-annotation format.

The fixture is built in tmp_path: a few 8x8 JPEGs, `captions_{train,val}2017.json` with
`images` and `annotations` lists, and the three archives laid out as on
images.cocodataset.org, served through file:// URLs (or a loopback HTTP server) with their
checksums substituted for the published ones.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import json
import threading
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from pruneforget.world.coco import build_coco
from pruneforget.world.coco_download import COCO2017_ARCHIVES, Archive, ChecksumError, urllib_fetch

# image id -> number of captions; val has 4 images with 5 captions each (as COCO mostly does)
TRAIN = {9: 5, 25: 5, 30: 6, 34: 5, 36: 5}
VAL = {139: 5, 285: 5, 632: 5, 724: 5}


def _write_split(root: Path, split: str, counts: dict[int, int]) -> None:
    """Images under root/split/ and root/annotations/captions_{split}.json, COCO style."""
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    ann_id = 1000 if split == "val2017" else 1
    for image_id, n in counts.items():
        name = f"{image_id:012d}.jpg"
        Image.new("RGB", (8, 8), (image_id % 256, 40, 90)).save(root / split / name)
        images.append({"id": image_id, "file_name": name, "height": 8, "width": 8})
        for k in range(n):
            # stray whitespace as in real COCO captions
            annotations.append({"id": ann_id, "image_id": image_id,
                                "caption": f"A photo {k} of\nthing {image_id}.  "})
            ann_id += 1
    annotations.reverse()  # the builder must not depend on file order
    doc = {"info": {}, "licenses": [], "images": images, "annotations": annotations}
    (root / "annotations" / f"captions_{split}.json").write_text(json.dumps(doc))


def make_copy(root: Path) -> Path:
    """An extracted COCO 2017 copy (what a user points world.root at)."""
    _write_split(root, "train2017", TRAIN)
    _write_split(root, "val2017", VAL)
    return root


def _md5_sha1(path: Path) -> tuple[str, str]:
    data = path.read_bytes()
    return hashlib.md5(data).hexdigest(), hashlib.sha1(data).hexdigest()


def make_mirror(tmp_path: Path) -> tuple[Path, tuple[Archive, ...]]:
    """Zip a fixture copy into a mirror laid out like images.cocodataset.org; return it and
    the archives with the fixture's checksums in place of the published ones."""
    src = make_copy(tmp_path / "src")
    mirror = tmp_path / "mirror"
    members = {
        "annotations": [f"annotations/captions_{s}.json" for s in ("train2017", "val2017")],
        "train2017": sorted(p.relative_to(src).as_posix() for p in (src / "train2017").iterdir()),
        "val2017": sorted(p.relative_to(src).as_posix() for p in (src / "val2017").iterdir()),
    }
    archives = []
    for archive in COCO2017_ARCHIVES:
        path = mirror / archive.url_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w") as zf:
            for member in members[archive.name]:
                zf.write(src / member, member)
        md5, sha1 = _md5_sha1(path)
        archives.append(dataclasses.replace(archive, md5=md5, sha1=sha1))
    return mirror, tuple(archives)


def world_cfg(root: Path, **overrides) -> dict:
    cfg = {"kind": "coco", "root": str(root), "download": True, "verify_checksums": True,
           "val_captions": len(VAL), "seed": 0}
    return {**cfg, **overrides}


def no_network(url: str, dest: Path, desc: str) -> None:
    raise AssertionError(f"unexpected download of {url}")


def build(cfg: dict, out: Path, **kwargs) -> Path:
    out.mkdir(parents=True)
    build_coco(cfg, out, **kwargs)
    return out


def test_train_table_has_one_row_per_caption(tmp_path):
    out = build(world_cfg(make_copy(tmp_path / "coco"), download=False), tmp_path / "out",
                fetch=no_network)
    train = pd.read_csv(out / "train.csv")
    assert len(train) == sum(TRAIN.values())
    assert train.groupby("image_id").size().to_dict() == TRAIN
    assert not train["caption"].str.contains(r"\n|\s$|\s\s").any()  # whitespace normalised


def test_finetune_table_is_the_train_table(tmp_path):
    out = build(world_cfg(make_copy(tmp_path / "coco"), download=False), tmp_path / "out")
    assert (out / "finetune.csv").read_bytes() == (out / "train.csv").read_bytes()


def test_data_directory_carries_the_artist_prompt_sets(tmp_path):
    """Tables 1 and Figs. 1-2 sample `artist_*` from data/prompts/ at sd21 as in the tiny world
    (the smoke run found them missing: every artist sample job failed)."""
    from pruneforget.world.prompt_sets import ARTIST_FILES, PROMPTS_DIR, load_artist_prompts

    out = build(world_cfg(make_copy(tmp_path / "coco"), download=False), tmp_path / "out")
    for file in ARTIST_FILES.values():
        written = pd.read_csv(out / "prompts" / file)
        pd.testing.assert_frame_equal(written, load_artist_prompts(PROMPTS_DIR / file))


def test_val_table_has_one_caption_per_image(tmp_path):
    out = build(world_cfg(make_copy(tmp_path / "coco"), download=False), tmp_path / "out")
    val = pd.read_csv(out / "val.csv")
    assert len(val) == len(VAL)
    assert sorted(val["image_id"]) == sorted(VAL)


def test_val_captions_are_deterministic_for_the_seed(tmp_path):
    root = make_copy(tmp_path / "coco")
    tables = {}
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        out = build(world_cfg(root, download=False, seed=seed), tmp_path / name)
        tables[name] = pd.read_csv(out / "val.csv")
    pd.testing.assert_frame_equal(tables["a"], tables["b"])
    assert not tables["a"].equals(tables["c"])  # the seed, not the file order, picks captions


def test_val_subset_takes_fewer_images_deterministically(tmp_path):
    root = make_copy(tmp_path / "coco")
    outs = [build(world_cfg(root, download=False, val_captions=2), tmp_path / n) for n in "ab"]
    val = pd.read_csv(outs[0] / "val.csv")
    assert len(val) == 2 and val["image_id"].is_unique
    pd.testing.assert_frame_equal(val, pd.read_csv(outs[1] / "val.csv"))


def test_more_val_captions_than_images_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="val_captions=5 .* only 4 images"):
        build(world_cfg(make_copy(tmp_path / "coco"), download=False, val_captions=5),
              tmp_path / "out")


def test_tables_share_tiny_world_columns_and_image_paths_resolve(tmp_path):
    out = build(world_cfg(make_copy(tmp_path / "coco"), download=False), tmp_path / "out")
    for name in ("train.csv", "finetune.csv", "val.csv"):
        table = pd.read_csv(out / name)
        assert list(table.columns) == ["image", "caption", "image_id"]
        # Absolute paths into the COCO root: readers join them to `out` like the tiny world's
        # relative paths, and nothing under `out` links to the (19 GB) image root.
        assert table["image"].map(lambda p: Path(p).is_absolute()).all()
        for rel in table["image"]:
            assert (out / rel).is_file(), rel
    assert not any(p.is_symlink() for p in out.iterdir())
    info = json.loads((out / "world.json").read_text())
    assert info["kind"] == "coco"
    assert info["counts"]["train_captions"] == sum(TRAIN.values())
    assert info["counts"]["val_captions"] == len(VAL)


def test_missing_root_without_download_names_world_root(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=r"world\.root=.*world\.download: true"):
        build(world_cfg(missing, download=False), tmp_path / "out", fetch=no_network)
    assert not missing.exists()


def test_incomplete_copy_without_download_names_the_missing_archive(tmp_path):
    root = make_copy(tmp_path / "coco")
    next((root / "val2017").iterdir()).unlink()
    with pytest.raises(FileNotFoundError, match=r"val2017\.zip.*world\.download is false"):
        build(world_cfg(root, download=False), tmp_path / "out", fetch=no_network)


def test_file_url_download_with_matching_checksums_builds_world_end_to_end(tmp_path):
    mirror, archives = make_mirror(tmp_path)
    root = tmp_path / "coco"
    out = build(world_cfg(root), tmp_path / "out",
                base_url=mirror.as_uri(), archives=archives)
    train, val = pd.read_csv(out / "train.csv"), pd.read_csv(out / "val.csv")
    assert len(train) == sum(TRAIN.values()) and len(val) == len(VAL)
    assert all((out / rel).is_file() for rel in pd.concat([train, val])["image"])
    info = json.loads((out / "world.json").read_text())
    assert all(a["verified"] for a in info["archives"].values())
    for archive in archives:
        assert (root / archive.filename).is_file()
        assert (root / f"{archive.filename}.md5").read_text().split()[0] == archive.md5
    assert not list(root.glob("*.part")) and not list(root.rglob(".*.part"))


def test_rerun_reuses_verified_archives_and_extracts_only_missing_images(tmp_path):
    mirror, archives = make_mirror(tmp_path)
    root = tmp_path / "coco"
    build(world_cfg(root), tmp_path / "first", base_url=mirror.as_uri(), archives=archives)
    lost = root / "train2017" / f"{30:012d}.jpg"
    lost.unlink()  # as if extraction had been interrupted
    kept = root / "train2017" / f"{9:012d}.jpg"
    kept_mtime = kept.stat().st_mtime_ns
    out = build(world_cfg(root), tmp_path / "second", archives=archives, fetch=no_network)
    assert lost.is_file() and kept.stat().st_mtime_ns == kept_mtime
    assert json.loads((out / "world.json").read_text())["archives"]["val2017"]["verified"]


def test_corrupted_download_is_rejected_and_never_left_finished(tmp_path):
    mirror, archives = make_mirror(tmp_path)
    bad = mirror / "zips" / "val2017.zip"
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    actual_md5 = hashlib.md5(data).hexdigest()
    root = tmp_path / "coco"
    expected = rf"val2017\.zip: md5 .*expected {archives[2].md5}.*got {actual_md5}"
    with pytest.raises(ChecksumError, match=expected):
        build(world_cfg(root), tmp_path / "out", base_url=mirror.as_uri(), archives=archives)
    assert not (root / "val2017.zip").exists()
    assert not (root / "val2017.zip.md5").exists()
    assert not (root / "val2017.zip.part").exists()
    assert not (root / "val2017").exists()


def test_existing_archive_with_bad_checksum_is_moved_aside(tmp_path):
    mirror, archives = make_mirror(tmp_path)
    root = tmp_path / "coco"
    root.mkdir()
    (root / "annotations_trainval2017.zip").write_bytes(b"not the archive")
    with pytest.raises(ChecksumError, match="annotations_trainval2017.zip"):
        build(world_cfg(root), tmp_path / "out", archives=archives, fetch=no_network)
    assert not (root / "annotations_trainval2017.zip").exists()
    assert (root / "annotations_trainval2017.zip.bad").read_bytes() == b"not the archive"


def test_fetch_restarts_when_the_server_ignores_range(tmp_path):
    src = tmp_path / "blob.bin"
    src.write_bytes(b"0123456789" * 100)
    dest = tmp_path / "blob.bin.part"
    dest.write_bytes(b"garbage")  # a file:// URL answers the whole body, never 206
    urllib_fetch(src.as_uri(), dest, "test")
    assert dest.read_bytes() == src.read_bytes()


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single-range support (what images.cocodataset.org offers)."""

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        data = path.read_bytes()
        start = 0
        if rng := self.headers.get("Range"):
            start = int(rng.removeprefix("bytes=").split("-")[0])
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])


def test_fetch_continues_a_partial_download_over_http(tmp_path):
    src = tmp_path / "srv" / "blob.bin"
    src.parent.mkdir()
    payload = bytes(range(256)) * 40
    src.write_bytes(payload)
    handler = functools.partial(_RangeHandler, directory=str(src.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        dest = tmp_path / "blob.bin.part"
        dest.write_bytes(payload[:1000])
        urllib_fetch(f"http://127.0.0.1:{server.server_address[1]}/blob.bin", dest, "test")
    finally:
        server.shutdown()
        server.server_close()
    assert dest.read_bytes() == payload


def test_unverified_download_is_recorded_as_unverified(tmp_path):
    mirror, archives = make_mirror(tmp_path)
    wrong = tuple(dataclasses.replace(a, md5="0" * 32, sha1=None) for a in archives)
    root = tmp_path / "coco"
    out = build(world_cfg(root, verify_checksums=False), tmp_path / "out",
                base_url=mirror.as_uri(), archives=wrong)
    info = json.loads((out / "world.json").read_text())
    assert info["verify_checksums"] is False
    assert not any(a["verified"] for a in info["archives"].values())
    assert not list(root.glob("*.md5"))  # no sidecar may claim a verification that never happened
