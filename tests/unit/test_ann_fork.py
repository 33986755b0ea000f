"""A forked scan worker can query an ANN shortlist that its parent trained or queried.

libgomp's thread pool does not survive ``fork``: before ``scanner.ann`` set forked children to
one OpenMP thread, a child's first FAISS query of several rows after the parent had run a
parallel region waited forever (a library whose stored index was stale, rebuilt in the parent
of ``scan --jobs 2``, ``serve`` or the bench's ``--enrol-jobs``)."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

ann = pytest.importorskip("scanner.ann")
if not ann.available():  # pragma: no cover - the ann extra is installed by the test command
    pytest.skip("faiss-cpu (meshscan[ann]) not installed", allow_module_level=True)

_VECTORS = np.random.default_rng(0).random((30_000, 16), dtype=np.float32)


def _query(shortlist, queue) -> None:
    found = shortlist.within(_VECTORS[:3], 0.5)
    queue.put([len(f) for f in found] + [int(shortlist.search(_VECTORS[:64], 5).shape[0])])


def test_a_forked_child_queries_after_the_parent_trained_and_queried() -> None:
    shortlist = ann.AnnShortlist.build(_VECTORS)  # training runs OpenMP regions in this process
    expected = [len(f) for f in shortlist.within(_VECTORS[:3], 0.5)] + [64]
    mp = multiprocessing.get_context("fork")
    queue = mp.Queue()
    child = mp.Process(target=_query, args=(shortlist, queue))
    child.start()
    child.join(60)
    hung = child.is_alive()
    if hung:
        child.kill()
        child.join()
    assert not hung, "the forked child's FAISS query never returned"
    assert child.exitcode == 0 and queue.get(timeout=5) == expected
