"""Start-up: ``meshscan --version`` and ``--help`` import no numerical library; a one-file
scan imports no library it does not use, its forked worker imports nothing after the fork
(the parent loaded it all once), it forks only the workers its uploads need and runs
OpenBLAS with one thread; and a model loaded from its forest cache is the refitted model,
while a tampered cache is never used. (Behaviour only: the times are bench/startup.py's.)

Refitting the classifier at every load took about a second (and imported scikit-learn);
the fitted forest is now read from plain arrays whose digest ``model.json`` records
(scanner/classify/forest_cache.py). These tests hold the cache to: the same predictions
bit for bit, and a refit whenever anything about the cache does not verify.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scanner.classify import forest_cache
from scanner.classify.model import ComponentModel, shipped_model_path
from tests.conftest import REPO

HEAVY = ("numpy", "scipy", "sklearn", "trimesh")
_PROBE = f"""
import runpy, sys
sys.argv = ["meshscan", *sys.argv[1:]]
try:
    runpy.run_module("scanner.cli", run_name="__main__")
except SystemExit:
    pass
print("HEAVY", sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r})), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["scan", "--help"]])
def test_version_and_help_import_no_numerical_library(args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "meshscan" in proc.stdout
    heavy = [line for line in proc.stderr.splitlines() if line.startswith("HEAVY ")]
    assert heavy == ["HEAVY []"], proc.stderr[-2000:]


# ----------------------------------------------------------------------------- a one-file scan
UNUSED_BY_A_SCAN = ("rich", "sklearn", "trimesh", "joblib", "dask")
"""Libraries a scan of one file with a stderr that is no terminal never needs: no progress
bar (rich), the model from its forest cache (no scikit-learn), meshscan's own loaders."""

_SCAN_PROBE = f"""
import os, runpy, sys
from pathlib import Path

import scanner.engines.worker as worker

loaded_at_fork = set()
os.register_at_fork(after_in_child=lambda: loaded_at_fork.update(sys.modules))
scan_contained = worker.scan_contained


def recording(path, context, fault=""):  # in the forked worker: what it imported itself
    verdicts = scan_contained(path, context, fault)
    Path(os.environ["PROBE_OUT"]).write_text(" ".join(sorted(set(sys.modules) - loaded_at_fork)))
    return verdicts


worker.scan_contained = recording
sys.argv = ["meshscan", *sys.argv[1:]]
try:
    runpy.run_module("scanner.cli", run_name="__main__")
except SystemExit:
    pass
print("UNUSED", sorted({{m.split(".")[0] for m in sys.modules}} & set({UNUSED_BY_A_SCAN!r})), file=sys.stderr)
"""


def write_box(path: Path) -> Path:
    """A unit box as ASCII STL (12 triangles): the smallest ordinary upload."""
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=float)
    faces = [(0, 1, 3), (0, 3, 2), (4, 6, 7), (4, 7, 5), (0, 4, 5), (0, 5, 1),
             (2, 3, 7), (2, 7, 6), (0, 2, 6), (0, 6, 4), (1, 5, 7), (1, 7, 3)]  # fmt: skip
    lines = ["solid box"]
    for face in faces:
        lines += ["facet normal 0 0 0", "outer loop", *(f"vertex {x:g} {y:g} {z:g}" for x, y, z in corners[list(face)])]
        lines += ["endloop", "endfacet"]
    path.write_text("\n".join([*lines, "endsolid box", ""]), encoding="ascii")
    return path


def test_a_one_file_scan_imports_only_what_it_uses_and_its_worker_imports_nothing(tmp_path: Path) -> None:
    box = write_box(tmp_path / "box.stl")
    out = tmp_path / "worker-imports.txt"
    env = dict(os.environ, PROBE_OUT=str(out), PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-c", _SCAN_PROBE, "scan", "--format", "jsonl", str(box)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["verdict"] == "clear"
    assert "UNUSED []" in proc.stderr.splitlines(), proc.stderr[-2000:]
    # the worker scanned with what the parent loaded before the fork (warm_up)
    assert out.read_text() == "", f"the forked worker imported: {out.read_text()}"


_BLAS_PROBE = """
import os, runpy, sys
sys.argv = ["meshscan", *sys.argv[1:]]
try:
    runpy.run_module("scanner.cli", run_name="__main__")
except SystemExit:
    pass
from threadpoolctl import threadpool_info
threads = sorted({p["num_threads"] for p in threadpool_info() if p["internal_api"] == "openblas"})
print("BLAS", os.environ.get("OPENBLAS_NUM_THREADS"), threads, file=sys.stderr)
"""


@pytest.mark.parametrize("preset", [None, "2"])
def test_a_scans_parent_runs_openblas_with_one_thread_unless_told(tmp_path: Path, preset: str | None) -> None:
    pytest.importorskip("threadpoolctl", reason="threadpoolctl says how many BLAS threads run")
    box = write_box(tmp_path / "box.stl")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    env["PYTHONPATH"] = str(REPO)
    if preset is not None:
        env["OPENBLAS_NUM_THREADS"] = preset
    proc = subprocess.run([sys.executable, "-c", _BLAS_PROBE, "scan", "--format", "jsonl", str(box)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("BLAS ")]
    if preset is None:
        assert line == "BLAS 1 [1]" or line == "BLAS 1 []", line  # [] where numpy has no OpenBLAS
    else:
        assert line.split()[1] == preset, line  # the user's setting is kept


def test_the_pool_forks_workers_as_uploads_need_them(tmp_path: Path) -> None:
    from scanner.batch import Upload
    from scanner.context import ScanContext
    from scanner.engines.local import LocalPool
    from scanner.library import SignatureLibrary

    context = ScanContext(library=SignatureLibrary.load(REPO / "signatures"))
    boxes = [write_box(tmp_path / f"box{i}.stl") for i in range(3)]
    uploads = [Upload(str(b), str(tmp_path)) for b in boxes]
    for given, forked in ((uploads[:1], [1]), (uploads, [2, 2, 2])):
        pool = LocalPool(context, 2, 60, None)
        seen = [len(pool.workers) for _ in pool.scan(given)]
        assert seen == forked
        assert pool.workers == []  # stopped when the scan ends


_REWARM_PROBE = """
import gc, weakref
from scanner.context import ScanContext
from scanner.engines.worker import warm_up

class Node:
    pass

node = Node()
node.me = node  # a cycle: only the cyclic collector frees it
gone = weakref.ref(node)
warm_up(ScanContext())
print("frozen", gc.get_freeze_count() > 0, "collecting", gc.isenabled())
del node
gc.collect()
print("collected after a warm-up", gone() is None)
warm_up(ScanContext())
print("collected after the next warm-up", gone() is None)
"""


def test_a_warm_up_freezes_what_is_loaded_and_the_next_one_lets_it_go() -> None:
    """warm_up freezes everything alive out of the cyclic collector (workers fork from it);
    a later warm-up (the watch daemon's library reload) must not keep the previous context's
    cycles alive for ever: it unfreezes and collects first."""
    proc = subprocess.run([sys.executable, "-c", _REWARM_PROBE], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [
        "frozen True collecting True",
        "collected after a warm-up False",
        "collected after the next warm-up True",
    ]


# ----------------------------------------------------------------------------- the forest cache
@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The shipped model as it ships (with its cache) and the same model without the cache."""
    base = tmp_path_factory.mktemp("models")
    cached, bare = base / "cached", base / "bare"
    shutil.copytree(shipped_model_path(), cached)
    shutil.copytree(shipped_model_path(), bare)
    for name in forest_cache.FILES:
        (bare / name).unlink()
    meta = json.loads((bare / "model.json").read_text())
    del meta[forest_cache.ENTRY]
    (bare / "model.json").write_text(json.dumps(meta))
    return cached, bare


@pytest.fixture(scope="module")
def refit(folders: tuple[Path, Path]) -> ComponentModel:
    model = ComponentModel.load(folders[1])
    assert model.fitted_by == "fit"
    return model


def _rows(folder: Path) -> np.ndarray:
    """The probe rows, every training row, and rows off the training set."""
    x = np.load(folder / "features.npy")
    rng = np.random.default_rng(3)
    off = x[rng.integers(0, len(x), 64)] * rng.uniform(0.5, 1.5, (64, x.shape[1]))
    return np.concatenate([np.load(folder / "probes.npy"), x, off])


def test_the_shipped_model_loads_from_its_cache_without_scikit_learn() -> None:
    code = (
        "import sys; from scanner.classify.model import load_model; m = load_model(); "
        "print(m.fitted_by, 'sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.stdout.split() == ["cache", "False"], out.stderr[-2000:]


def test_cached_model_predicts_what_the_refit_predicts(folders, refit: ComponentModel) -> None:
    """The cached forest is the refit's: the same trees, node for node, the same scaler, and the
    sigmoid calibration to rounding - the calibration's fit is an optimiser whose last bits
    follow the machine's floating-point libraries (measured: 5.3e-15 apart on an AVX2 AMD EPYC
    against the cache written elsewhere, probabilities 2.2e-16 apart; equal on the machine that
    wrote it), so every probability agrees to 1e-12."""
    cached = ComponentModel.load(folders[0])
    assert cached.fitted_by == "cache"
    assert cached.version == refit.version and cached.classes_ == refit.classes_
    got, want = cached._fast.arrays(), refit._fast.arrays()
    for name in ("left", "right", "feature", "threshold", "value", "mean", "scale", "depth", "n_classes"):
        assert np.array_equal(got[name], want[name]), name
    for name in ("a", "b"):
        np.testing.assert_allclose(got[name], want[name], rtol=1e-12, atol=0)
    rows = _rows(folders[0])
    np.testing.assert_allclose(cached.predict_proba(rows), refit.predict_proba(rows), rtol=0, atol=1e-12)
    assert np.array_equal(cached.benign_median_, refit.benign_median_)
    # scikit-learn is still there when asked for (training on top of a loaded model)
    assert np.allclose(cached.estimator_.predict_proba(rows[:8]), refit.estimator_.predict_proba(rows[:8]), atol=1e-9)


def _copy(folders: tuple[Path, Path], tmp_path: Path) -> Path:
    root = tmp_path / "m"
    shutil.copytree(folders[0], root)
    return root


def _rehash(root: Path) -> None:
    """Recompute the recorded digest (an attacker who can edit model.json too)."""
    meta = json.loads((root / "model.json").read_text())
    blobs = {name: (root / name).read_bytes() for name in forest_cache.FILES}
    meta[forest_cache.ENTRY]["sha256"] = forest_cache._digest(blobs, meta)
    (root / "model.json").write_text(json.dumps(meta))


def _edit_nodes(root: Path, edit) -> None:
    nodes = np.load(root / forest_cache.NODES_FILE)
    edit(nodes)
    np.save(root / forest_cache.NODES_FILE, nodes)


def _assert_refit(root: Path, refit: ComponentModel) -> None:
    model = ComponentModel.load(root)
    assert model.fitted_by == "fit"
    rows = _rows(root)
    assert np.array_equal(model.predict_proba(rows), refit.predict_proba(rows))


def test_an_edited_cache_file_is_refused_and_the_model_refit(folders, refit: ComponentModel, tmp_path: Path) -> None:
    root = _copy(folders, tmp_path)

    def nudge(nodes: np.ndarray) -> None:
        nodes[0, 0, 3] += 1e-3  # one threshold: the digest no longer matches

    _edit_nodes(root, nudge)
    _assert_refit(root, refit)


def test_a_rehashed_cache_that_scores_probes_differently_is_refit(folders, refit, tmp_path: Path) -> None:
    root = _copy(folders, tmp_path)

    def swap(nodes: np.ndarray) -> None:
        nodes[:, :, 4:] = nodes[:, :, 4:][:, :, ::-1].copy()  # leaf values of the classes swapped

    _edit_nodes(root, swap)
    _rehash(root)
    _assert_refit(root, refit)


def test_a_rehashed_cache_with_out_of_range_nodes_is_refit(folders, refit, tmp_path: Path) -> None:
    root = _copy(folders, tmp_path)

    def escape(nodes: np.ndarray) -> None:
        nodes[0, 0, 0] = nodes.shape[1] + 5  # a child outside the tree: never indexed

    _edit_nodes(root, escape)
    _rehash(root)
    _assert_refit(root, refit)


def test_a_cache_is_bound_to_its_training_rows(folders, refit, tmp_path: Path) -> None:
    """The digest covers the training digest: a cache moved to (or left in) a folder whose
    model.json names other rows is refused, even when its files are intact."""
    root = _copy(folders, tmp_path)
    meta = json.loads((root / "model.json").read_text())
    meta["training_sha256"] = "0" * 64  # another model's rows
    (root / "model.json").write_text(json.dumps(meta))
    assert forest_cache.read(root, meta, len(meta["columns"])) is None


def test_a_missing_cache_file_means_a_refit(folders, refit, tmp_path: Path) -> None:
    root = _copy(folders, tmp_path)
    (root / forest_cache.SIGMOID_FILE).unlink()
    _assert_refit(root, refit)


def test_saving_writes_a_cache_that_loads(folders, refit: ComponentModel, tmp_path: Path) -> None:
    from scanner.classify.model import ThresholdInfo

    refit.save(tmp_path / "saved", ThresholdInfo(refit.review_threshold, "test"))
    again = ComponentModel.load(tmp_path / "saved")
    assert again.fitted_by == "cache"
    rows = _rows(folders[0])
    assert np.array_equal(again.predict_proba(rows), refit.predict_proba(rows))
