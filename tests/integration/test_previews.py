"""Previews end to end (issue 20, item 1): ``meshscan scan --db`` and ``meshscan watch --once``
store a PNG for the upload that needs a person and none for the clear one; ``--no-previews``
stores none; the records printed are the verdict contract, unchanged."""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest

from scanner.verdict import Verdict
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
FLAGGED = "proxy-barrel-s1-000.stl"  # enrolled in the shipped demo library
BENIGN = "benign-cup-s1-000.stl"
MESHSCAN = [sys.executable, "-m", "scanner.cli"]


@pytest.fixture
def uploads(tmp_path: Path) -> Path:
    up = tmp_path / "up"
    up.mkdir()
    for name in (FLAGGED, BENIGN):
        shutil.copy(DEMO / name, up / name)
    return up


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def previews(db: Path) -> dict[str, bytes]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT sha256, png FROM previews"))


def scan(uploads: Path, *extra: str) -> list[dict]:
    done = subprocess.run([*MESHSCAN, "scan", str(uploads), "--format", "jsonl", "--jobs", "1", *extra],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 1, done.stderr  # something flagged
    records = [json.loads(line) for line in done.stdout.splitlines()]
    schema = json.loads(files("scanner.data").joinpath("verdict.schema.json").read_text("utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    for record in records:
        validator.validate(record)
        assert set(record) == set(Verdict.__dataclass_fields__)  # nothing beside the contract
    return records


def test_scan_db_stores_a_preview_of_the_flagged_upload_only(uploads: Path, tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    records = scan(uploads, "--db", str(db))
    assert {Path(r["path"]).name: r["verdict"] for r in records} == {FLAGGED: "flag", BENIGN: "clear"}
    stored = previews(db)
    assert set(stored) == {sha(uploads / FLAGGED)}
    png = stored[sha(uploads / FLAGGED)]
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and b"IHDR" in png[:16] and png.endswith(b"IEND\xaeB`\x82")
    with sqlite3.connect(db) as conn:  # the stored records hold no preview either
        for (text,) in conn.execute("SELECT record FROM results"):
            assert set(json.loads(text)) == set(Verdict.__dataclass_fields__)
    without = scan(uploads)  # no database: the same records (but for when they were scanned)
    strip = lambda rs: sorted(json.dumps({k: v for k, v in r.items() if k != "scanned_at"}) for r in rs)  # noqa: E731
    assert strip(without) == strip(records)


def test_no_previews_stores_none(uploads: Path, tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    scan(uploads, "--db", str(db), "--no-previews")
    assert previews(db) == {}


def test_watch_once_stores_previews_in_its_state_database(uploads: Path, tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    done = subprocess.run([*MESHSCAN, "watch", str(uploads), "--once", "--state", str(state), "--jobs", "1"],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert set(previews(state)) == {sha(uploads / FLAGGED)}
    off = tmp_path / "off.db"
    done = subprocess.run([*MESHSCAN, "watch", str(uploads), "--once", "--state", str(off), "--jobs", "1",
                           "--no-previews"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert previews(off) == {}


def test_serve_db_stores_a_preview_of_a_flagged_upload(tmp_path: Path) -> None:
    pytest.importorskip("fastapi", reason="meshscan serve needs the serve extra")
    from tests.integration.test_serve import multipart, start_server

    db = tmp_path / "served.db"
    for server in start_server(tmp_path, "--workers", "1", "--db", str(db)):
        for name in (FLAGGED, BENIGN):
            body, headers = multipart(name, (DEMO / name).read_bytes())
            status, answer = server.json("POST", "/v1/scan", body, **headers)
            assert status == 200 and all(set(r) == set(Verdict.__dataclass_fields__) for r in answer["records"])
        deadline = time.monotonic() + 30  # the recorder commits every second
        while time.monotonic() < deadline and not (db.exists() and _has_previews(db)):
            time.sleep(0.2)
    assert set(previews(db)) == {sha(DEMO / FLAGGED)}


def _has_previews(db: Path) -> bool:
    try:
        return bool(previews(db))
    except sqlite3.OperationalError:  # the table is not there yet
        return False
