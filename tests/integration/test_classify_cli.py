"""The classifier through the real `meshscan` command: review verdicts with explanations,
`meshscan train`, model options, refusal of unusable models, the allowlist."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import DEMO_PROXIES_CLEARED, REPO

DEMO = REPO / "fixtures" / "demo"
MODEL = REPO / "signatures" / "model"
MESHSCAN = [sys.executable, "-m", "scanner.cli"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MESHSCAN, *args], capture_output=True, text=True, timeout=240)


def records(proc: subprocess.CompletedProcess) -> dict[str, dict]:
    return {Path(r["path"]).name: r for r in (json.loads(x) for x in proc.stdout.splitlines() if x.strip())}


def labels() -> dict[str, str]:
    with open(DEMO / "labels.csv", newline="") as fh:
        return {row["path"]: row["category"] for row in csv.DictReader(fh)}


def enrolled() -> set[str]:
    return {s["note"] for s in json.loads((REPO / "signatures" / "signatures.json").read_text())}


def test_scan_sends_unseen_proxies_to_review_and_clears_benign_files() -> None:
    proc = run("scan", str(DEMO), "--format", "jsonl")
    assert proc.returncode == 1, proc.stderr
    recs = records(proc)
    assert set(recs) == set(labels())
    model = json.loads((MODEL / "model.json").read_text())
    explanations = []
    for name, category in labels().items():
        r = recs[name]
        assert r["model_version"] == model["model_version"]
        assert set(r["scores"]) == set(model["classes"]) and abs(sum(r["scores"].values()) - 1) < 1e-3
        if name in enrolled():
            assert r["verdict"] == "flag" and r["category"] == category
        elif category == "benign" or name in DEMO_PROXIES_CLEARED:
            assert r["verdict"] == "clear", r
            assert "below the review threshold" in r["explanation"]
            assert 1 - r["scores"]["benign"] < model["review_threshold"]
        else:
            assert r["verdict"] == "review", r
            assert r["matches"] == [] and 1 - r["scores"]["benign"] >= model["review_threshold"] - 1e-4
            assert r["category"] == max((p, c) for c, p in r["scores"].items() if c != "benign")[1]
            assert f"most likely {r['category'].replace('_', ' ')}" in r["explanation"]
            assert "mostly because: " in r["explanation"]
            explanations.append(r["explanation"])
    unseen = 12 - len(DEMO_PROXIES_CLEARED)
    assert len(explanations) == unseen and len(set(explanations)) == unseen  # worded per file
    assert f"{unseen} review" in proc.stderr and f"model {model['model_version']}" in proc.stderr


def test_no_model_means_matching_only() -> None:
    proc = run("scan", str(DEMO), "--format", "jsonl", "--no-model", "--only-flagged")
    assert proc.returncode == 1, proc.stderr
    recs = records(proc)
    assert set(recs) == enrolled()
    assert all(r["verdict"] == "flag" and r["scores"] == {} and r["model_version"] is None for r in recs.values())


def test_train_reports_and_its_model_scans(tmp_path: Path) -> None:
    out = tmp_path / "model"
    proc = run("train", str(DEMO / "labels.csv"), "--out", str(out), "--folds", "3", "--name", "t")
    assert proc.returncode == 0, proc.stderr
    for word in ("precision", "recall", "Brier", "confusion matrix", "review threshold"):
        assert word in proc.stdout
    report = json.loads((out / "report.json").read_text())
    assert set(report["per_class"]) == set(labels().values())
    assert len(report["confusion_matrix"]) == len(report["classes"]) and 0 <= report["brier"] <= 2
    assert report["rows"] == len(labels()) and report["groups"] == len(labels())
    assert "confusion matrix" in (out / "report.txt").read_text()
    # model.json, report.json, features/probes/probe_proba and the forest cache (3) .npy, report.txt
    assert sorted(p.suffix for p in out.iterdir()) == [".json", ".json", *[".npy"] * 6, ".txt"]

    threshold = json.loads((out / "model.json").read_text())["review_threshold"]
    assert threshold == report["threshold"]
    scan = run("scan", str(DEMO), "--model", str(out), "--format", "jsonl")
    recs = [r for r in records(scan).values() if r["verdict"] != "flag"]
    assert scan.returncode == 1
    for r in recs:  # the threshold decides, with this model's scores
        assert r["model_version"] == report["model_version"]
        expected = "review" if 1 - r["scores"]["benign"] >= threshold - 5e-5 else "clear"
        assert r["verdict"] == expected, r
    assert {"review", "clear"} <= {r["verdict"] for r in recs}
    target = next(r for r in recs if r["verdict"] == "review")["path"]
    strict = run("scan", target, "--model", str(out), "--review-threshold", "1.0", "--format", "jsonl")
    assert strict.returncode == 0 and records(strict)[Path(target).name]["verdict"] == "clear"


def test_unusable_models_are_refused_with_exit_3(tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(MODEL, old)
    meta = json.loads((old / "model.json").read_text())
    meta["feature_version"] = "sf0+ms0:old"
    (old / "model.json").write_text(json.dumps(meta))
    proc = run("scan", str(DEMO / "benign-pipe-s1-000.obj"), "--model", str(old))
    assert proc.returncode == 3 and "retrain" in proc.stderr and "Traceback" not in proc.stderr
    missing = run("scan", str(DEMO / "benign-pipe-s1-000.obj"), "--model", str(tmp_path / "nowhere"))
    assert missing.returncode == 3 and "no model.json" in missing.stderr and "Traceback" not in missing.stderr
    bad = run("train", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "m"))
    assert bad.returncode == 3 and "cannot read" in bad.stderr and "Traceback" not in bad.stderr


def test_allowlisted_file_is_not_sent_to_review(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    shutil.copytree(REPO / "signatures", lib, ignore=shutil.ignore_patterns("model", "__init__.py", "README.md"))
    upload = DEMO / "proxy-barrel-s1-002.obj"
    assert records(run("scan", str(upload), "--library", str(lib), "--format", "jsonl"))[upload.name]["verdict"] == (
        "review"
    )
    assert run("allowlist", "add", str(upload), "--library", str(lib), "--note", "a plumbing part").returncode == 0
    proc = run("scan", str(upload), "--library", str(lib), "--format", "jsonl")
    assert proc.returncode == 0
    rec = records(proc)[upload.name]
    assert rec["verdict"] == "clear" and "allowlist" in rec["explanation"]


def test_dask_worker_loads_the_model_once() -> None:
    from scanner.config import Settings
    from scanner.context import context_for as _worker_context
    from scanner.engines.dask_engine import DaskEngine
    from scanner.pipeline import ScanContext

    settings_json = json.dumps({}, sort_keys=True)
    first = _worker_context(None, settings_json, "shipped")
    assert first.model is not None and first.model.source == "shipped"
    assert _worker_context(None, settings_json, "shipped") is first
    assert _worker_context(None, settings_json, None).model is None
    engine = DaskEngine(ScanContext(settings=Settings(), model=first.model), None, None, 1)
    assert engine.model == "shipped"
