"""A worker's one-BLAS-thread limit reaches every BLAS/OpenMP library loaded in it, including
those loaded after the parent prepared the workers (the test-order failure of
``test_a_forked_worker_drops_the_parents_blas_threads`` after ``test_startup.py``: a
threadpoolctl controller cached at warm-up knew only the libraries loaded then)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

_PROBE = """
import numpy  # numpy's BLAS only
from scanner.engines.worker import blas_threads, one_blas_thread, prepare_worker_setup

prepare_worker_setup()  # the parent before its fork: only numpy's BLAS is loaded
import scipy.linalg  # noqa: F401 - scipy's own OpenBLAS, loaded after the preparation
import sklearn.ensemble  # noqa: F401 - scikit-learn's OpenMP, likewise
from threadpoolctl import threadpool_info, threadpool_limits

threadpool_limits(limits=2)  # every pool as a machine with 2+ cores starts it
print("libraries", len(threadpool_info()))
one_blas_thread()
print("threads", blas_threads())
"""


def test_one_blas_thread_limits_libraries_loaded_after_the_preparation() -> None:
    pytest.importorskip("threadpoolctl", reason="threadpoolctl says how many BLAS threads run")
    pytest.importorskip("sklearn", reason="scikit-learn brings an OpenMP library")
    proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = dict(line.split() for line in proc.stdout.splitlines())
    assert int(lines["libraries"]) >= 2  # something was loaded after the preparation
    assert lines["threads"] == "1"
