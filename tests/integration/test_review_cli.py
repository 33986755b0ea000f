"""The real `meshscan review` command, end to end: scan into a results DB, list, decide,
verify the audit log, rescan - every step a separate process on real files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import trimesh

from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
MESHSCAN = [sys.executable, "-m", "scanner.cli"]
KNOWN = "proxy-barrel-s1-001.stl"
BENIGN = "benign-toy-s1-000.stl"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([*MESHSCAN, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=240)


def lines(proc: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def test_flag_dismissed_with_allowlist_end_to_end(tmp_path: Path, results_target: str) -> None:
    db = results_target  # a SQLite file, then a PostgreSQL database
    (tmp_path / "uploads").mkdir()
    for name in (KNOWN, BENIGN):
        shutil.copy(DEMO / name, tmp_path / "uploads" / name)
    assert run("signatures", "init", "--library", "lib", cwd=tmp_path).returncode == 0
    # the known file is a rotated re-export of the upload: it flags as a near-duplicate, which a
    # reviewer may dismiss (an exact signature match can never be allowlisted)
    known = trimesh.load(DEMO / KNOWN, force="mesh")
    known.apply_transform(trimesh.transformations.rotation_matrix(0.7, [1, 2, 3]))
    known.export(tmp_path / "known.obj")
    added = run("signatures", "add", "known.obj", "--library", "lib", "--category", "barrel",
                "--source", "test", cwd=tmp_path)  # fmt: skip
    assert added.returncode == 0, added.stderr
    scan = run("scan", "uploads", "--no-model", "--library", "lib", "--db", db, "--jobs", "1", cwd=tmp_path)
    assert scan.returncode == 1, scan.stderr

    listed = run("review", db, "--verdict", "flag", cwd=tmp_path)
    assert listed.returncode == 1, listed.stderr  # something waits for a person
    (item,) = lines(listed)
    here = tmp_path.resolve()  # `scan --db` records absolute paths: review works from any directory
    assert item["path"] == str(here / "uploads" / KNOWN) and item["verdict"] == "flag" and item["category"] == "barrel"
    review_queue = run("review", db, cwd=tmp_path)  # signature matching only: no `review` verdicts
    assert review_queue.returncode == 0 and review_queue.stdout == ""

    decided = run("review", db, "--decide", item["id"][:6], "dismiss", "--by", "Ann Moderator",
                  "--reason", "a garden hose fitting", "--allowlist", "lib", "--audit-log", "audit.jsonl",
                  cwd=tmp_path)  # fmt: skip
    assert decided.returncode == 0, decided.stderr
    (row,) = lines(decided)
    assert row["decision"] == "dismiss" and row["item_id"] == item["item_id"]
    assert row["actions"][0]["action"] == "allowlist" and row["actions"][0]["status"] == "added"
    assert json.loads((tmp_path / "audit.jsonl").read_text()) == row

    verified = run("review", db, "--verify", "--audit-log", "audit.jsonl", cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith(f"OK: 1 decision(s), hash chain intact, head {row['hash']}")
    allow = lines(run("allowlist", "list", "--library", "lib", cwd=tmp_path))
    assert [(a["by"], a["sha256"]) for a in allow] == [("Ann Moderator", item["sha256"])]

    rescan = run("scan", "uploads", "--no-model", "--library", "lib", "--db", db, "--jobs", "1", cwd=tmp_path)
    assert rescan.returncode == 0, rescan.stderr
    (known,) = [r for r in lines(rescan) if str(here / r["path"]) == item["path"]]
    assert known["verdict"] == "clear" and "allowlist" in known["explanation"]  # the dismissed file is now clear
    assert run("review", db, "--verdict", "flag", cwd=tmp_path).returncode == 0

    again = run("review", db, "--decide", item["id"], "confirm", "--by", "x", "--reason", "y", cwd=tmp_path)
    assert again.returncode == 2 and "[not-reviewable]" in again.stderr and "Traceback" not in again.stderr


def test_classifier_review_confirmed_and_enrolled_end_to_end(tmp_path: Path) -> None:
    """With the shipped classifier: its `review` verdicts form the queue, highest component
    score first; confirming one with --enrol makes the next scan flag it by signature."""
    (tmp_path / "uploads").mkdir()
    for name in ("proxy-barrel-s1-002.obj", "proxy-accessory-s1-001.stl", BENIGN):
        shutil.copy(DEMO / name, tmp_path / "uploads" / name)
    assert run("signatures", "init", "--library", "lib", cwd=tmp_path).returncode == 0
    scan = run("scan", "uploads", "--library", "lib", "--db", "r.sqlite", "--jobs", "1", cwd=tmp_path)
    assert scan.returncode in (0, 1), scan.stderr
    sent = [r for r in lines(scan) if r["verdict"] == "review"]
    assert sent, "the shipped classifier sent none of the synthetic proxies to review"

    listed = run("review", "r.sqlite", cwd=tmp_path)
    assert listed.returncode == 1, listed.stderr
    queue = lines(listed)
    assert sorted(i["path"] for i in queue) == sorted(str(tmp_path.resolve() / r["path"]) for r in sent)  # absolute
    top = [i["top_score"] for i in queue]
    assert top == sorted(top, reverse=True) and all(i["top_category"] != "benign" for i in queue)

    first = queue[0]
    decided = run("review", "r.sqlite", "--decide", first["id"], "confirm", "--by", "Bo", "--reason", "case 9",
                  "--enrol", "lib", cwd=tmp_path)  # fmt: skip
    assert decided.returncode == 0, decided.stderr
    (row,) = lines(decided)
    assert row["actions"][0]["category"] == first["category"] and row["model_version"] == first["model_version"]
    rescan = run("scan", first["path"], "--no-model", "--library", "lib", cwd=tmp_path)  # the signature decides
    (again,) = lines(rescan)
    assert rescan.returncode == 1 and again["verdict"] == "flag" and again["category"] == first["category"]
    assert again["matches"][0]["signature_id"] == row["actions"][0]["signature_id"]
    assert first["id"] not in [i["id"] for i in lines(run("review", "r.sqlite", cwd=tmp_path))]
