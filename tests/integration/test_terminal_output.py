"""Terminal output is inert (issue 12, item 10): a file name carrying terminal escapes, an OSC 8
hyperlink, CR/LF/TAB, a C1 control or a bidi override is shown escaped in every table and
message, JSON keeps the exact name, and CSV cells never start a spreadsheet formula."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from scanner.sinks.output import terminal_safe
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
MESHSCAN = [sys.executable, "-m", "scanner.cli"]
PROXY = DEMO / "proxy-barrel-s1-000.stl"  # enrolled in the shipped library: flagged
EVIL = (
    "evil\x1b[2J\x1b]8;;mailto:x@example.invalid\x07click\x1b]8;;\x07\rok\t\x9b\u202egpj\n"
    "[link=mailto:y@example.invalid][bold]markup.stl"  # rich markup in a name stays characters
)
RAW = ("\x1b", "\r", "\x07", "\x9b", "\u202e", "\t")  # none of these may reach a terminal


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "400"}  # wide tables: names are not folded across lines
    return subprocess.run([*MESHSCAN, *args], capture_output=True, text=True, timeout=180, cwd=cwd, env=env)


def assert_inert(text: str) -> None:
    assert not [c for c in RAW if c in text], repr(text)
    assert "mailto:x@example.invalid" not in text or "\\x1b]8;;mailto:x@example.invalid" in text


@pytest.fixture
def uploads(tmp_path: Path) -> Path:
    folder = tmp_path / "up"
    folder.mkdir()
    shutil.copy(PROXY, folder / EVIL)
    return folder


def test_scan_table_summary_and_quarantine_messages(uploads: Path, tmp_path: Path) -> None:
    proc = run("scan", str(uploads), "--format", "table", "--no-model", "--jobs", "1", "--copy", str(tmp_path / "q"))
    assert proc.returncode == 1, proc.stderr
    assert_inert(proc.stdout)
    assert_inert(proc.stderr.replace("\n", " "))
    shown = terminal_safe(EVIL)
    assert shown in proc.stdout and "flag" in proc.stdout
    assert f"quarantined {terminal_safe(str(uploads / EVIL))} -> " in proc.stderr
    assert (tmp_path / "q" / EVIL).read_bytes() == PROXY.read_bytes()  # the file keeps its real name


def test_json_keeps_the_exact_name(uploads: Path) -> None:
    proc = run("scan", str(uploads), "--format", "jsonl", "--no-model", "--jobs", "1")
    (record,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert record["path"] == str(uploads / EVIL) and record["verdict"] == "flag"
    doc = json.loads(run("scan", str(uploads), "--format", "json", "--no-model", "--jobs", "1").stdout)
    assert doc[0]["path"] == str(uploads / EVIL)


def test_csv_cells_never_start_a_formula(tmp_path: Path) -> None:
    names = ["=HYPERLINK(1).stl", "+1.stl", "-1.stl", "@SUM(A1).stl", "plain.stl"]
    for name in names:
        shutil.copy(PROXY, tmp_path / name)
    proc = run("scan", "--format", "csv", "--no-model", "--jobs", "1", "--", *names, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert sorted(r["path"] for r in rows) == sorted(
        ["'=HYPERLINK(1).stl", "'+1.stl", "'-1.stl", "'@SUM(A1).stl", "plain.stl"]
    )
    assert all(r["verdict"] == "flag" for r in rows)


def test_review_queue_table(uploads: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    assert run("scan", str(uploads), "--db", str(db), "--no-model", "--format", "jsonl").returncode == 1
    listed = run("review", str(db), "--verdict", "flag", "--format", "table")
    assert listed.returncode == 1, listed.stderr
    assert_inert(listed.stdout)
    assert terminal_safe(EVIL) in listed.stdout
    as_json = run("review", str(db), "--verdict", "flag", "--format", "jsonl")
    assert json.loads(as_json.stdout)["path"] == str(uploads / EVIL)


def test_signatures_add_and_list(uploads: Path, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    assert run("signatures", "init", "--library", str(lib)).returncode == 0
    added = run("signatures", "add", str(uploads / EVIL), "--library", str(lib), "--category", "barrel",
                "--source", "case\x1b]8;;mailto:x@example.invalid\x07x", "--note", "\x1b[2Jwiped\rnote")  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert_inert(added.stdout)
    listed = run("signatures", "list", "--library", str(lib))
    assert listed.returncode == 0
    assert_inert(listed.stdout)
    assert "\\x1b[2Jwiped\\rnote" in listed.stdout
    (sig,) = [json.loads(line) for line in run("signatures", "list", "--library", str(lib), "--json").stdout.split("\n")
              if line]  # fmt: skip
    assert sig["note"] == "\x1b[2Jwiped\rnote"  # JSON: exact


def test_inspect_table_and_error_messages(uploads: Path, tmp_path: Path) -> None:
    inspected = run("inspect", str(uploads / EVIL))
    assert inspected.returncode == 0
    assert_inert(inspected.stdout)
    assert terminal_safe(EVIL) in inspected.stdout
    missing = run("report", str(tmp_path / "no\x1b[31msuch"), "--out", str(tmp_path / "o"))
    assert missing.returncode == 3 and "[not-found]" in missing.stderr
    assert_inert(missing.stderr)
    assert "no\\x1b[31msuch" in missing.stderr
