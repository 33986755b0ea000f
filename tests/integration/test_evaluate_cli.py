"""`meshscan evaluate`, `meshscan train --base` and named operating points through the real
command, on small labelled sets generated into tmp_path (fixtures/generate.py proxies and
benign look-alikes)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fixtures.generate import generate
from scanner.classify.features import feature_row
from scanner.classify.model import BENIGN, load_model
from scanner.loading import load
from scanner.report.stats import wilson_interval
from tests.conftest import REPO

MESHSCAN = [sys.executable, "-m", "scanner.cli"]
DEMO = REPO / "fixtures" / "demo"
SHIPPED = REPO / "signatures" / "model"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MESHSCAN, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two designs per proxy category and benign kind (seed 7301: neither training, calibration
    nor demo data), and one empty file labelled benign, which cannot be read."""
    root = tmp_path_factory.mktemp("labelled")
    generate(root, 2, 7301)
    (root / "empty.stl").write_bytes(b"")
    with open(root / "labels.csv", "a", encoding="utf-8") as fh:
        fh.write("empty.stl,benign,empty\n")
    return root / "labels.csv"


@pytest.fixture(scope="module")
def rebased(labelled: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("rebased") / "model"
    proc = run("train", str(labelled), "--out", str(out), "--base", "shipped", "--folds", "3",
               "--own-weight", "2", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out, proc


def rows(labels_csv: Path) -> list[tuple[Path, str]]:
    lines = labels_csv.read_text(encoding="utf-8").splitlines()[1:]
    return [(labels_csv.parent / line.split(",")[0], line.split(",")[1]) for line in lines if line.strip()]


def test_evaluate_json_agrees_with_the_model_scored_file_by_file(labelled: Path) -> None:
    proc = run("evaluate", str(labelled), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    ev = json.loads(proc.stdout)
    listed = rows(labelled)
    assert (ev["format"], ev["format_version"]) == ("meshscan-evaluation", 1)
    assert ev["files_listed"] == len(listed) and ev["files_skipped"] == 1 and ev["files"] == len(listed) - 1
    assert [(Path(s["path"]).name, s["reason"]) for s in ev["skipped"]] == [("empty.stl", "empty")]
    assert "left out" in proc.stderr and "empty.stl" in proc.stderr
    # the same model, file by file, outside the command
    model = load_model()
    assert ev["model"]["version"] == model.version
    readable = [(p, c) for p, c in listed if p.name != "empty.stl"]
    proba = model.predict_proba(np.stack([feature_row(load(p)) for p, _ in readable]))
    scores = 1 - proba[:, model.classes_.index(BENIGN)]
    is_benign = np.array([c == BENIGN for _, c in readable])
    t = ev["at_threshold"]["threshold"]
    assert t == model.review_threshold
    recall, false_review = ev["at_threshold"]["component_recall"], ev["at_threshold"]["false_review_rate"]
    assert (recall["k"], recall["n"]) == (int((scores[~is_benign] >= t).sum()), int((~is_benign).sum()))
    assert (false_review["k"], false_review["n"]) == (int((scores[is_benign] >= t).sum()), int(is_benign.sum()))
    for rate in (recall, false_review):
        assert rate["ci95"] == pytest.approx(list(wilson_interval(rate["k"], rate["n"])))
        assert rate["ci95"][0] <= rate["estimate"] <= rate["ci95"][1]
    matrix = np.array(ev["confusion_matrix"])
    assert matrix.sum() == ev["files"]
    predicted = [model.classes_[i] for i in proba.argmax(axis=1)]
    for i, c in enumerate(ev["classes"]):
        assert matrix[i].sum() == ev["per_class"][c]["support"] == sum(label == c for _, label in readable)
        assert matrix[:, i].sum() == ev["per_class"][c]["predicted"] == predicted.count(c)
        assert ev["per_class"][c]["recall"]["k"] == matrix[i, i]
    assert 0 <= ev["brier"]["review_score"] <= 1 and 0 <= ev["brier"]["multiclass"] <= 2
    table = ev["threshold_table"]
    assert [r["threshold"] for r in table][:3] == [0.01, 0.02, 0.03] and len(table) == 99
    at = next(r for r in table if r["threshold"] == t)
    assert (at["components_reviewed"], at["benign_reviewed"]) == (recall["k"], false_review["k"])
    assert all(a["components_reviewed"] >= b["components_reviewed"] for a, b in zip(table, table[1:], strict=False))
    names = [p["name"] for p in ev["operating_points"]]
    assert names == ["fr-0.1pct", "fr-1pct", "fr-5pct", "recall-90", "recall-95", "recall-99"]
    fr = ev["operating_points"][0]
    assert not fr["supported"] and "not enough benign files to support this target" in fr["note"]


def test_evaluate_text_and_plot(labelled: Path, tmp_path: Path) -> None:
    png = tmp_path / "curve.png"
    proc = run("evaluate", str(labelled), "--plot", str(png), "--review-threshold", "0.5")
    assert proc.returncode == 0, proc.stderr
    for words in ("precision", "confusion matrix", "at the review threshold 0.50", "95% CI", "operating points",
                  "not enough benign files to support this target", "<- current"):  # fmt: skip
        assert words in proc.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_plot_without_matplotlib_says_what_to_install(labelled: Path, tmp_path: Path) -> None:
    code = ("import sys; sys.modules['matplotlib'] = None\nfrom scanner.cli import cli\n"
            f"cli(['evaluate', {str(labelled)!r}, '--plot', {str(tmp_path / 'c.png')!r}])")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 3
    assert "[missing-dependency]" in proc.stderr and "meshscan[report]" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "c.png").exists()


def test_train_on_the_shipped_rows_compares_records_and_scans(rebased: tuple[Path, subprocess.CompletedProcess],
                                                              labelled: Path) -> None:  # fmt: skip
    out, proc = rebased
    report = json.loads(proc.stdout)
    shipped = json.loads((SHIPPED / "model.json").read_text())
    meta = json.loads((out / "model.json").read_text())
    assert report["kind"] == "train-on-base" and report["base"]["model_version"] == shipped["model_version"]
    own = len(rows(labelled)) - 1
    assert report["own_rows"] == own and meta["own_rows"] == own and meta["own_weight"] == 2
    assert len(meta["labels"]) == len(shipped["labels"]) + own and meta["group_ids"] == "salted-hmac-sha256"
    weights = np.load(out / "weights.npy", allow_pickle=False)
    assert weights.tolist() == [1.0] * len(shipped["labels"]) + [2.0] * own
    for side in ("base", "new"):
        ev = report["evaluation"][side]
        assert ev["files"] == own and np.array(ev["confusion_matrix"]).sum() == own
        assert report["comparison"][side]["component_recall"] == ev["at_threshold"]["component_recall"]
    assert report["comparison"]["base"]["threshold"] == shipped["review_threshold"]
    assert meta["review_threshold"] == report["threshold"]
    assert set(meta["operating_points"]) <= {"fr-0.1pct", "fr-1pct", "fr-5pct", "recall-90", "recall-95", "recall-99"}
    assert "fr-1pct" in meta["operating_points"]
    assert (out / "report.txt").read_text().startswith(f"base model {shipped['model_version']}")
    scan = run("scan", str(DEMO), "--model", str(out), "--format", "jsonl")
    assert scan.returncode == 1, scan.stderr
    recs = [json.loads(line) for line in scan.stdout.splitlines()]
    assert recs and {r["model_version"] for r in recs} == {meta["model_version"]}
    assert {r["verdict"] for r in recs} >= {"flag", "review", "clear"}


def test_train_on_a_base_with_other_features_is_refused(labelled: Path, tmp_path: Path) -> None:
    base = tmp_path / "old"
    shutil.copytree(SHIPPED, base)
    meta = json.loads((base / "model.json").read_text())
    meta["feature_version"] = "sf0+ms0"
    (base / "model.json").write_text(json.dumps(meta))
    proc = run("train", str(labelled), "--out", str(tmp_path / "m"), "--base", str(base))
    assert proc.returncode == 3
    assert "[base-version-mismatch]" in proc.stderr and "'sf0+ms0'" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m").exists()


def test_named_operating_point_on_scan(rebased: tuple[Path, subprocess.CompletedProcess], tmp_path: Path) -> None:
    out, _ = rebased
    points = json.loads((out / "model.json").read_text())["operating_points"]
    proc = run("scan", str(DEMO), "--model", str(out), "--review-threshold", "fr-1pct", "--format", "jsonl")
    assert proc.returncode == 1, proc.stderr
    assert {json.loads(line)["review_threshold"] for line in proc.stdout.splitlines()} == {points["fr-1pct"]}
    config = tmp_path / "m.toml"
    config.write_text('[classify]\nreview_threshold = "recall-90"\n')
    proc = run("scan", str(DEMO / "benign-cup-s1-000.stl"), "--model", str(out), "--config", str(config),
               "--format", "jsonl")  # fmt: skip
    assert proc.returncode in (0, 1), proc.stderr
    assert json.loads(proc.stdout)["review_threshold"] == points["recall-90"]
    # an unknown name is a usage error (exit 3, as every usage error here), naming the recorded ones
    proc = run("scan", str(DEMO), "--model", str(out), "--review-threshold", "fr-2pct")
    assert proc.returncode == 3 and proc.stdout == ""
    assert "[unknown-operating-point]" in proc.stderr and "fr-1pct" in proc.stderr and "Traceback" not in proc.stderr
    # a model trained before operating points existed still loads; a name then says why it is unavailable
    old = tmp_path / "old-model"
    shutil.copytree(out, old)
    meta = json.loads((old / "model.json").read_text())
    del meta["operating_points"]
    (old / "model.json").write_text(json.dumps(meta))
    assert run("scan", str(DEMO / "benign-cup-s1-000.stl"), "--model", str(old)).returncode == 0
    proc = run("scan", str(DEMO), "--model", str(old), "--review-threshold", "fr-1pct")
    assert proc.returncode == 3 and "trained before operating points were recorded" in proc.stderr


def test_plain_train_records_operating_points(labelled: Path, tmp_path: Path) -> None:
    out = tmp_path / "own"
    proc = run("train", str(labelled), "--out", str(out), "--folds", "3")
    assert proc.returncode == 0, proc.stderr
    assert "operating points" in proc.stdout and "recall-95" in proc.stdout
    meta = json.loads((out / "model.json").read_text())
    report = json.loads((out / "report.json").read_text())
    reached = {p["name"]: p["threshold"] for p in report["operating_points"] if p["reached"]}
    assert meta["operating_points"] == reached and "fr-1pct" in reached
