"""A model trained with the real `meshscan train` is safe to share: its folder names no design
group (often an uploader or case id) and no file, yet it loads, refits exactly and scans; the
names stay in the local training record outside the folder."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
MESHSCAN = [sys.executable, "-m", "scanner.cli"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MESHSCAN, *args], capture_output=True, text=True, timeout=240)


def private_labels(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The demo files labelled with identifying group names, two files per group, plus one
    unreadable file whose name must not leak either."""
    with open(DEMO / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    groups = {}
    out = tmp_path / "labels.csv"
    broken = tmp_path / "uploader-secret-broken.stl"
    broken.write_bytes(b"solid x\nfacet normal 0 0 1\n")
    with open(out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "category", "group"])
        for i, row in enumerate(rows):
            group = f"uploader-{row['category']}-case{i // 2:04d}-zq"
            groups[row["path"]] = group
            w.writerow([str(DEMO / row["path"]), row["category"], group])
        w.writerow([str(broken), "benign", "uploader-broken-casezz-zq"])
    return out, groups


def test_trained_model_folder_holds_no_group_name_or_path_and_still_scans(tmp_path: Path) -> None:
    labels_csv, groups = private_labels(tmp_path)
    out = tmp_path / "shared-model"
    proc = run("train", str(labels_csv), "--out", str(out), "--folds", "3")
    assert proc.returncode == 0, proc.stderr
    assert "left out" in proc.stderr and "uploader-secret-broken.stl" in proc.stderr  # told locally

    secrets = {*groups.values(), "uploader-broken-casezz-zq", "uploader-secret-broken", "zq", str(tmp_path), *groups}
    for f in out.iterdir():
        data = f.read_bytes()
        for s in secrets:
            assert s.encode() not in data, (f.name, s)
    meta = json.loads((out / "model.json").read_text())
    assert meta["group_ids"] == "salted-hmac-sha256"
    assert all(g.startswith("g-") and len(g) == 34 for g in meta["groups"])
    assert len(set(meta["groups"])) == len(set(groups.values()))

    record = json.loads((tmp_path / "shared-model.training-local.json").read_text())
    assert record["model_version"] == meta["model_version"]
    assert sorted(set(record["group_hashes"].values())) == sorted(set(meta["groups"]))
    by_path = {Path(f["path"]).name: record["group_hashes"][f["group"]] for f in record["files"]}
    assert [by_path[name] for name in groups] == meta["groups"]  # row order kept
    assert [Path(s["path"]).name for s in record["skipped"]] == ["uploader-secret-broken.stl"]

    scan = run("scan", str(DEMO), "--model", str(out), "--format", "jsonl")
    assert scan.returncode == 1, scan.stderr
    recs = [json.loads(x) for x in scan.stdout.splitlines() if x.strip()]
    assert recs and all(r["model_version"] == meta["model_version"] for r in recs)
    assert {"flag", "clear"} <= {r["verdict"] for r in recs}


def test_retraining_gives_other_hashes_but_the_same_model(tmp_path: Path) -> None:
    """The salt is random per run, so hashes differ between runs and cannot be matched across
    models; the folds do not depend on it, so the fitted model is the same."""
    labels_csv, _ = private_labels(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert run("train", str(labels_csv), "--out", str(out), "--folds", "3").returncode == 0
    ma, mb = (json.loads((m / "model.json").read_text()) for m in (a, b))
    assert not set(ma["groups"]) & set(mb["groups"])
    assert ma["training_sha256"] != mb["training_sha256"]
    assert np.array_equal(np.load(a / "probe_proba.npy"), np.load(b / "probe_proba.npy"))
    assert (
        json.loads((a / "report.json").read_text())["confusion_matrix"]
        == json.loads((b / "report.json").read_text())["confusion_matrix"]
    )


def test_local_report_inside_the_model_folder_is_refused(tmp_path: Path) -> None:
    labels_csv, _ = private_labels(tmp_path)
    out = tmp_path / "m"
    proc = run("train", str(labels_csv), "--out", str(out), "--local-report", str(out / "names.json"))
    assert proc.returncode == 3 and "outside the model folder" in proc.stderr and "Traceback" not in proc.stderr
