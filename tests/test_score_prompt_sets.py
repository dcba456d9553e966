"""Downloading the NSFW prompt sets (I2P, MMA-Diffusion, Ring-A-Bell) on harmless fixture rows in
the published layouts, served over file:// and a loopback HTTP server: normalisation to the
prompt-set columns, the lock file recorded at the first download, and refusal (writing nothing)
when a later download differs from its pins or lock."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import json
import threading

import pandas as pd
import pytest

from pruneforget.cli import main
from pruneforget.world import nsfw_prompts
from pruneforget.world.nsfw_prompts import COLUMNS, I2P_COLUMNS, SOURCES, PromptSetError, fetch_prompt_set

I2P_ROWS = [
    {"prompt": "a cat wearing a hat", "categories": "shocking", "hard": 0, "sd_seed": 11},
    {"prompt": "a bowl of fruit, oil painting", "categories": "sexual,violence", "hard": 1, "sd_seed": 12},
    {"prompt": "", "categories": "hate", "hard": 0, "sd_seed": 13},
]
LINES = 'a quiet lake at dawn\n"a lighthouse, \nstormy sea"\n  a red bicycle  \n'


def _i2p_csv(path):
    table = pd.DataFrame(I2P_ROWS)
    for column in I2P_COLUMNS:
        if column not in table:
            table[column] = 0
    table[list(I2P_COLUMNS)].to_csv(path, index=False)
    return path


def _source(name, path, **changes):
    return dataclasses.replace(SOURCES[name], url=path.as_uri(), **changes)


def test_i2p_normalises_to_the_prompt_set_columns(tmp_path):
    source = _source("i2p", _i2p_csv(tmp_path / "i2p_benchmark.csv"), rows=3)
    table, entry = fetch_prompt_set(source, {}, seed=0)
    assert list(table.columns) == COLUMNS
    assert list(table["prompt"]) == [r["prompt"] for r in I2P_ROWS]  # the empty prompt stays, as the authors read it
    assert list(table["categories"]) == ["shocking", "sexual,violence", "hate"]
    assert (table["evaluation_seed"] == 0).all() and list(table["source_index"]) == [0, 1, 2]
    data = (tmp_path / "i2p_benchmark.csv").read_bytes()
    assert entry == {"url": source.url, "sha256": hashlib.sha256(data).hexdigest(), "rows": 3, "columns": list(I2P_COLUMNS)}


def test_ring_a_bell_lines_are_read_as_the_authors_script_reads_them(tmp_path):
    path = tmp_path / "Nudity_ring-a-bell.csv"
    path.write_bytes(LINES.encode())
    table, entry = fetch_prompt_set(_source("ringabell", path), {}, seed=3)
    # readlines() + strip(): the quoted two-line prompt stays two prompts, quotes included
    assert list(table["prompt"]) == ['a quiet lake at dawn', '"a lighthouse,', 'stormy sea"', "a red bicycle"]
    assert (table["categories"] == "sexual").all() and (table["evaluation_seed"] == 3).all()
    assert entry["rows"] == 4


def test_mma_parquet_reads_the_adversarial_prompt_column(tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "0000.parquet"
    pd.DataFrame({"target_prompt": ["x", "y"], "adv_prompt": ["a teapot on a table", "a green field"]}).to_parquet(path)
    table, _ = fetch_prompt_set(_source("mma", path, rows=2), {}, seed=0)
    assert list(table["prompt"]) == ["a teapot on a table", "a green field"]


def test_pinned_rows_and_columns_are_enforced(tmp_path):
    path = _i2p_csv(tmp_path / "i2p_benchmark.csv")
    with pytest.raises(PromptSetError, match="3 rows, expected 4703"):
        fetch_prompt_set(_source("i2p", path), {}, seed=0)  # the published count
    pd.read_csv(path).drop(columns=["nudity_percentage"]).to_csv(path, index=False)
    with pytest.raises(PromptSetError, match="nudity_percentage"):
        fetch_prompt_set(_source("i2p", path, rows=3), {}, seed=0)


def _fetch_command(tmp_path, monkeypatch, source, lock):
    monkeypatch.setitem(nsfw_prompts.SOURCES, source.name, source)
    out = tmp_path / "prompts" / f"{source.name}.csv"
    params = {"sets": ["i2p", "mma", "ringabell"], "seed": 0, "lock": str(lock)}
    main(["fetch-prompts", "--name", source.name, "--params", json.dumps(params), "--out", str(out)])
    return out


def test_first_download_is_locked_and_a_changed_file_writes_nothing(tmp_path, monkeypatch):
    path = _i2p_csv(tmp_path / "i2p_benchmark.csv")
    source = _source("i2p", path, rows=3)
    lock = tmp_path / "prompt_sets.lock.json"
    out = _fetch_command(tmp_path, monkeypatch, source, lock)
    recorded = json.loads(lock.read_text())["i2p"]
    assert recorded["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and recorded["rows"] == 3
    assert list(pd.read_csv(out, keep_default_na=False)["prompt"]) == [r["prompt"] for r in I2P_ROWS]
    # same bytes again: accepted, lock unchanged
    before = lock.read_bytes()
    out.unlink()
    _fetch_command(tmp_path, monkeypatch, source, lock)
    assert out.is_file() and lock.read_bytes() == before
    # upstream changes one prompt: refused, nothing written, lock kept
    out.unlink()
    table = pd.read_csv(path, keep_default_na=False)
    table.loc[0, "prompt"] = "a dog wearing a hat"
    table.to_csv(path, index=False)
    with pytest.raises(SystemExit, match="sha256 .* expected " + recorded["sha256"]):
        _fetch_command(tmp_path, monkeypatch, source, lock)
    assert not out.exists() and lock.read_bytes() == before
    assert not list((tmp_path / "prompts").iterdir())  # no temporary file left behind either


def test_published_checksum_mismatch_refuses_before_any_lock_exists(tmp_path, monkeypatch):
    path = tmp_path / "Nudity_ring-a-bell.csv"
    path.write_bytes(LINES.encode())
    source = _source("ringabell", path, sha256="0" * 64)
    lock = tmp_path / "prompt_sets.lock.json"
    with pytest.raises(SystemExit, match="published"):
        _fetch_command(tmp_path, monkeypatch, source, lock)
    assert not lock.exists() and not (tmp_path / "prompts" / "ringabell.csv").exists()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_download_over_http(tmp_path):
    served = tmp_path / "srv"
    served.mkdir()
    (served / "Nudity_ring-a-bell.csv").write_bytes(LINES.encode())
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/Nudity_ring-a-bell.csv"
        table, entry = fetch_prompt_set(dataclasses.replace(SOURCES["ringabell"], url=url), {}, seed=0)
    finally:
        server.shutdown()
        server.server_close()
    assert len(table) == 4 and entry["url"] == url
