"""Fetching, verifying and extracting the MS-COCO 2017 archives (stdlib only, plus tqdm).

Every step is resumable and none leaves a finished-looking file behind when it fails:
an archive is downloaded to `<name>.part` (continued with an HTTP Range request when the
server allows it), verified, and only then renamed to `<name>`; a verified archive gets a
`<name>.md5` sidecar (md5sum format) so a later run need not hash 19 GB again; each member
is extracted to a hidden temporary name and renamed into place, so an interrupted extraction
never leaves a truncated image under its real name, and a rerun extracts only what is missing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from tqdm.auto import tqdm

BASE_URL = "http://images.cocodataset.org"


@dataclass(frozen=True)
class Archive:
    """One downloadable COCO archive: where it lives below the base URL and its published hashes."""

    name: str  # short name used in world.json and messages
    url_path: str  # below the base URL, e.g. "zips/train2017.zip"
    md5: str
    sha1: str | None = None  # a second, independently published hash; checked when given

    @property
    def filename(self) -> str:
        return self.url_path.rsplit("/", 1)[-1]


# Published checksums, pinned so a truncated or tampered download is never used.
# MD5: listed in intel/neural-compressor
#   examples/pytorch/fx/object_detection/maskrcnn/download_dataset.sh ("md5sum *.zip" output)
#   and, identically, in the R torchvision package's coco_detection_dataset (ann_md5 / img_md5).
# SHA-1: GluonCV's dataset preparation script (dmlc/gluon-cv scripts/datasets/mscoco.py,
#   _DOWNLOAD_URLS) and its "Prepare COCO datasets" tutorial table.
COCO2017_ARCHIVES: tuple[Archive, ...] = (
    Archive(
        "annotations",
        "annotations/annotations_trainval2017.zip",
        md5="f4bbac642086de4f52a3fdda2de5fa2c",
        sha1="8551ee4bb5860311e79dace7e79cb91e432e78b3",
    ),
    Archive(
        "train2017",
        "zips/train2017.zip",
        md5="cced6f7f71b7629ddf16f17bbcfab6b2",
        sha1="10ad623668ab00c62c096f0ed636d6aff41faca5",
    ),
    Archive(
        "val2017",
        "zips/val2017.zip",
        md5="442b8da7639aecaf257c1dceb8ba8c80",
        sha1="4950dc9d00dbe1c933ee0170f5797584351d2a41",
    ),
)

# fetch(url, dest, desc): write the resource at `url` to `dest` (which may already hold a prefix).
Fetch = Callable[[str, Path, str], None]

_CHUNK = 1 << 20


class ChecksumError(RuntimeError):
    """An archive's hash differs from the published one."""


def urllib_fetch(url: str, dest: Path, desc: str) -> None:
    """Download `url` to `dest` with a progress bar, continuing a partial `dest` when possible.

    Works for http(s):// and file:// URLs. A server that ignores the Range header (or a
    file:// URL) answers with the whole body, so the download starts over instead of
    appending a second copy.
    """
    start = dest.stat().st_size if dest.exists() else 0
    headers = {"Range": f"bytes={start}-"} if start else {}
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=60)
    except urllib.error.HTTPError as err:
        if err.code == 416 and start:
            return  # the part file already holds everything; verification decides if it is right
        raise
    with resp:
        if start and getattr(resp, "status", None) != 206:
            start = 0
        # the header, not resp.length: file:// responses carry the header but not the attribute
        length = resp.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        with open(dest, "ab" if start else "wb") as fh, tqdm(
            total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=desc
        ) as bar:
            while chunk := resp.read(_CHUNK):
                fh.write(chunk)
                bar.update(len(chunk))


def file_hashes(path: Path) -> dict[str, str]:
    """MD5 and SHA-1 of a file in one pass (the train archive is 18 GB: read it once)."""
    md5, sha1 = hashlib.md5(), hashlib.sha1()
    with open(path, "rb") as fh, tqdm(
        total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
        desc=f"verify {path.name}", leave=False,
    ) as bar:
        while chunk := fh.read(8 * _CHUNK):
            md5.update(chunk)
            sha1.update(chunk)
            bar.update(len(chunk))
    return {"md5": md5.hexdigest(), "sha1": sha1.hexdigest()}


def _check(archive: Archive, path: Path) -> None:
    """Raise ChecksumError naming the file and the expected and actual hashes on a mismatch."""
    got = file_hashes(path)
    expected = {"md5": archive.md5, "sha1": archive.sha1}
    for algo, want in expected.items():
        if want is not None and got[algo] != want.lower():
            raise ChecksumError(
                f"{archive.filename}: {algo} mismatch: expected {want}, got {got[algo]} ({path}). "
                "The file is corrupt or truncated; it was not kept under its final name. "
                "Run again to download it afresh."
            )


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".md5")


def ensure_archive(
    archive: Archive,
    root: Path,
    *,
    base_url: str = BASE_URL,
    download: bool = True,
    verify: bool = True,
    fetch: Fetch = urllib_fetch,
) -> tuple[Path, bool]:
    """Return (path to the finished archive in `root`, whether its checksum was verified).

    Reuses an archive already in `root` (verifying it unless its `.md5` sidecar records the
    published hash); otherwise downloads it when `download` is true. A file that fails
    verification is never left under the final name: a download is deleted, an archive that
    was already there is renamed to `<name>.bad` so the user's copy is not destroyed.
    """
    final = root / archive.filename
    sidecar = _sidecar(final)
    if final.exists():
        if sidecar.exists() and sidecar.read_text().split()[:1] == [archive.md5]:
            return final, True
        if not verify:
            return final, False
        try:
            _check(archive, final)
        except ChecksumError:
            os.replace(final, final.with_name(final.name + ".bad"))
            raise
        sidecar.write_text(f"{archive.md5}  {archive.filename}\n")
        return final, True

    if not download:
        raise FileNotFoundError(
            f"{final} is needed (its contents are missing from world.root={root}) and "
            "world.download is false. Set world.download: true, or put the archive or its "
            "extracted contents under world.root."
        )
    root.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    url = f"{base_url.rstrip('/')}/{archive.url_path}"
    fetch(url, part, f"download {archive.filename}")
    if verify:
        try:
            _check(archive, part)
        except ChecksumError:
            part.unlink(missing_ok=True)
            raise
    os.replace(part, final)
    if verify:
        sidecar.write_text(f"{archive.md5}  {archive.filename}\n")
    return final, verify


def extract_members(zip_path: Path, root: Path, members: Iterable[str]) -> int:
    """Extract the named members of `zip_path` below `root`, each atomically; return the count.

    Only the requested members are read, so a resumed run extracts just what is still missing.
    A requested member that the archive lacks is an error: the annotations name an image the
    archive does not hold, and the table would point at nothing.
    """
    wanted = set(members)
    if not wanted:
        return 0
    root_resolved = root.resolve()
    with zipfile.ZipFile(zip_path) as zf:
        infos = [info for info in zf.infolist() if info.filename in wanted]
        absent = wanted - {info.filename for info in infos}
        if absent:
            raise FileNotFoundError(
                f"{zip_path.name} lacks {len(absent)} member(s) the annotations need, "
                f"e.g. {sorted(absent)[:3]}"
            )
        for info in tqdm(infos, desc=f"extract {zip_path.name}", unit="file", leave=False):
            target = (root / info.filename).resolve()
            # zip members are untrusted paths: refuse anything escaping root ("../", absolute)
            if root_resolved not in target.parents:
                raise ValueError(f"{zip_path.name}: member {info.filename!r} escapes {root}")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.part")
            with zf.open(info) as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
            os.replace(tmp, target)
    return len(infos)
