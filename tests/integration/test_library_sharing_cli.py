"""`meshscan signatures merge` / `allowlist add` / `signatures add` as real commands: a partner's
export cannot silence our signatures, and nothing is imported without being reported."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
BARREL = DEMO / "proxy-barrel-s1-001.stl"
ACCESSORY = DEMO / "proxy-accessory-s1-002.stl"
BENIGN = DEMO / "benign-pipe-s1-000.obj"
MESHSCAN = [sys.executable, "-m", "scanner.cli"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MESHSCAN, *args], capture_output=True, text=True, timeout=240)


def allowlist(lib: Path) -> list[dict]:
    proc = run("allowlist", "list", "--library", str(lib))
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def signatures(lib: Path) -> list[dict]:
    proc = run("signatures", "list", "--library", str(lib), "--json")
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def verdict(path: Path, lib: Path) -> dict:
    proc = run("scan", str(path), "--library", str(lib), "--no-model", "--format", "jsonl")
    assert proc.returncode in (0, 1), proc.stderr
    (record,) = [json.loads(line) for line in proc.stdout.splitlines()]
    return record


def new_library(path: Path, *enrolled: tuple[Path, str]) -> Path:
    assert run("signatures", "init", "--library", str(path)).returncode == 0
    for file, category in enrolled:
        proc = run("signatures", "add", str(file), "--library", str(path), "--category", category, "--source", "t")
        assert proc.returncode == 0, proc.stderr
    return path


def test_a_partner_export_cannot_silence_our_signature(tmp_path: Path) -> None:
    ours = new_library(tmp_path / "ours", (BARREL, "barrel"))
    (barrel,) = signatures(ours)
    upload = tmp_path / "upload.stl"
    shutil.copy(BARREL, upload)
    assert verdict(upload, ours)["verdict"] == "flag"

    partner = new_library(tmp_path / "partner", (ACCESSORY, "accessory"))
    export = tmp_path / "partner.json"
    assert run("signatures", "export", "--library", str(partner), "--out", str(export)).returncode == 0
    doc = json.loads(export.read_text())
    doc["allowlist"] = [  # a benign file, and our barrel's geometry hash: it would clear every copy of it
        {"sha256": None, "geometry_hash": verdict(BENIGN, ours)["geometry_hash"], "added": "", "note": "pipe"},
        {"sha256": None, "geometry_hash": barrel["geometry_hash"], "added": "", "note": "benign, trust me"},
    ]
    export.write_text(json.dumps(doc))

    # by default the allowlist is counted, not imported
    plain = run("signatures", "merge", str(export), "--library", str(ours))
    assert plain.returncode == 0, plain.stderr
    assert "signatures: 1 added, 0 duplicate(s) skipped" in plain.stdout
    assert "allowlist: 2 entries not imported (pass --with-allowlist to import them)" in plain.stdout
    assert allowlist(ours) == [] and verdict(upload, ours)["verdict"] == "flag"

    # asked for, the benign entry is imported and the conflicting one refused, by name
    asked = run("signatures", "merge", str(export), "--library", str(ours), "--with-allowlist")
    assert asked.returncode == 2, asked.stderr
    assert "signatures: 0 added, 1 duplicate(s) skipped" in asked.stdout
    assert "allowlist: 1 added, 0 already present, 1 refused" in asked.stdout
    (conflict,) = [line for line in asked.stdout.splitlines() if "conflict:" in line]
    assert barrel["id"] in conflict and "benign, trust me" in conflict and "same geometry hash" in conflict
    assert "1 allowlist entry refused" in asked.stderr and "Traceback" not in asked.stderr
    assert [a["note"] for a in allowlist(ours)] == ["pipe"]
    assert run("signatures", "verify", "--library", str(ours)).returncode == 0
    flagged = verdict(upload, ours)
    assert flagged["verdict"] == "flag" and flagged["matches"][0]["signature_id"] == barrel["id"]

    # the summary as JSON, per merged library
    as_json = run("signatures", "merge", str(export), "--library", str(ours), "--with-allowlist", "--json")
    (summary,) = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert summary["source"] == str(export) and summary["signatures"]["duplicate"] == [
        s["id"] for s in doc["signatures"]
    ]
    assert len(summary["allowlist"]["duplicate"]) == 1 and len(summary["allowlist"]["refused"]) == 1
    assert barrel["id"] in summary["allowlist"]["refused"][0]["reason"]


def test_allowlist_add_refuses_an_enrolled_file_naming_its_signature(tmp_path: Path) -> None:
    ours = new_library(tmp_path / "ours", (BARREL, "barrel"))
    (barrel,) = signatures(ours)
    copy = tmp_path / "copy.stl"
    shutil.copy(BARREL, copy)
    proc = run("allowlist", "add", str(copy), str(BENIGN), "--library", str(ours), "--note", "reviewed")
    assert proc.returncode == 2
    assert f"refused: {copy}" in proc.stderr and barrel["id"] in proc.stderr and "Traceback" not in proc.stderr
    assert f"allowed: {BENIGN}" in proc.stdout  # the other file is allowed
    assert [a["note"] for a in allowlist(ours)] == ["reviewed"]
    assert verdict(copy, ours)["verdict"] == "flag"


def test_enrolling_an_allowlisted_file_drops_the_entry_with_a_message(tmp_path: Path) -> None:
    ours = new_library(tmp_path / "ours", (BARREL, "barrel"))  # not empty: an empty library is refused
    assert run("allowlist", "add", str(ACCESSORY), "--library", str(ours), "--note", "thought benign").returncode == 0
    assert verdict(ACCESSORY, ours)["verdict"] == "clear"
    proc = run("signatures", "add", str(ACCESSORY), "--library", str(ours), "--category", "accessory", "--source", "c")
    assert proc.returncode == 0, proc.stderr
    (sig,) = [s for s in signatures(ours) if s["category"] == "accessory"]
    assert "dropped" in proc.stderr and sig["id"] in proc.stderr and "thought benign" in proc.stderr
    assert allowlist(ours) == [] and verdict(ACCESSORY, ours)["verdict"] == "flag"
