"""The verdict contract (issue 13, item 4; DESIGN.md "Contract"): one JSON Schema in the
repository, and every output that writes records is checked against it - `scan --format jsonl`
and `--format json`, the results database, quarantine sidecars and the Python API - on
uploads that reach every verdict (flag, review, clear, unscannable) and archive members."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest

import scanner
from scanner.verdict import SCHEMA_VERSION, Match, Verdict
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"


@pytest.fixture(scope="module")
def schema() -> dict:
    doc = json.loads(files("scanner.data").joinpath("verdict.schema.json").read_text("utf-8"))
    jsonschema.Draft202012Validator.check_schema(doc)
    return doc


@pytest.fixture(scope="module")
def uploads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("schema-uploads")
    for name in ("proxy-barrel-s1-000.stl", "proxy-frame_or_receiver-s1-001.stl", "benign-cup-s1-000.stl"):
        shutil.copy(DEMO / name, root / name)  # flag, review (shipped model), clear
    (root / "broken.stl").write_bytes(b"solid x\nfacet normal 0 0 1\nouter loop\nvertex 0 0\n")  # unscannable
    with zipfile.ZipFile(root / "bundle.zip", "w") as zf:
        zf.write(DEMO / "proxy-slide_or_cylinder-s1-000.obj", "parts/slide.obj")
        zf.writestr("README.txt", "assembly notes\n")  # a member that is not a model
        zf.writestr("scene.glb", b"glTF\x02\x00\x00\x00" + bytes(64))  # a model format not read
    return root


def validate_all(schema: dict, records: list[dict]) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    for record in records:
        errors = sorted(validator.iter_errors(record), key=lambda e: list(e.path))
        assert not errors, (record.get("path"), record.get("member"), [e.message for e in errors])


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scanner.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd or REPO)  # fmt: skip


def test_schema_names_every_field_of_the_record(schema: dict) -> None:
    assert set(schema["properties"]) == {f.name for f in dataclasses.fields(Verdict)}
    assert set(schema["properties"]["matches"]["items"]["properties"]) == {f.name for f in dataclasses.fields(Match)}
    assert schema["properties"]["schema_version"]["const"] == SCHEMA_VERSION


def test_scan_outputs_follow_the_schema(schema: dict, uploads: Path, tmp_path: Path) -> None:
    jsonl = run("scan", str(uploads), "--format", "jsonl", "--jobs", "1", "--db", str(tmp_path / "r.sqlite"),
                "--copy", str(tmp_path / "q"))  # fmt: skip
    assert jsonl.returncode == 1, jsonl.stderr
    records = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert {r["verdict"] for r in records} == {"flag", "review", "clear", "unscannable"}
    assert any(r["member"] == "README.txt" and r["reason"] == "not-a-model" for r in records)
    validate_all(schema, records)
    as_json = run("scan", str(uploads), "--format", "json", "--jobs", "1")
    validate_all(schema, json.loads(as_json.stdout))
    with sqlite3.connect(tmp_path / "r.sqlite") as conn:
        stored = [json.loads(r) for (r,) in conn.execute("SELECT record FROM results")]
    assert len(stored) == len(records)
    validate_all(schema, stored)
    sidecars = list((tmp_path / "q").rglob("*.meshscan.json"))
    assert sidecars
    validate_all(schema, [v for s in sidecars for v in json.loads(s.read_text())["verdicts"]])


def test_python_api_records_follow_the_schema(schema: dict, uploads: Path) -> None:
    s = scanner.Scanner()
    records = [v.to_dict() for p in sorted(uploads.iterdir()) for v in s.scan(p)]
    validate_all(schema, records)
    old = {k: v for k, v in records[0].items() if k != "schema_version"}  # a record stored before v1
    assert Verdict.from_dict(old).to_dict()["schema_version"] == SCHEMA_VERSION
    added = ("review_score", "review_threshold", "review_body", "distance_threshold")  # fields added within v1
    assert any(r["review_score"] is not None for r in records)
    for record in records:
        before = Verdict.from_dict({k: v for k, v in record.items() if k not in added}).to_dict()
        assert before == {**record, **dict.fromkeys(added)}
        validate_all(schema, [before])
