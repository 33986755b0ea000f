"""Approximate shortlist for libraries of millions of descriptor rows (``meshscan[ann]``).

The matcher's exact answer is kept: this module only proposes *candidate rows*; the caller
(:class:`scanner.index.NearDuplicateIndex`) recomputes every candidate's distance exactly in
float64 from the library's own (memory-mapped) vectors and holds it to the row's own threshold.
So an approximate index can miss a row (measured: recall of the true nearest within threshold
>= 0.99, ``bench/match.py``), but it can never make a row match that exact search would not.

Chosen by measurement (README "Library scaling"; 300,000 rows, this machine): FAISS
``IndexIVFScalarQuantizer`` (inverted file, raw rows in 8-bit codes: 76 bytes a row beside 8
bytes of id) built in 63 s, FAISS IVF-PQ 128 s, FAISS HNSW-flat 125 s, hnswlib 105 s (USearch:
no figure, see the README), all at ~1 ms a query and recall 1.0. HNSW inserts row by row (hours
at 10M rows here) and holds the float32 vectors plus a graph; IVF-SQ8 trains k-means on a
sample, assigns each row once, holds about a quarter of that, and ``add`` appends rows without
retraining, which is how a newly enrolled signature becomes matchable at once. Its codes also
have a provable error bound (:attr:`AnnShortlist.margin`), which PQ codes lack, so a radius
query loses no row to coding.

Why it is safe to load: the index file is FAISS's own binary format (a fourcc-tagged sequence of
numbers and arrays, parsed by C++ ``read_index``; nothing in it names code to run, unlike pickle).
It is still only read after its sha256 equals the one the library manifest records
(:mod:`scanner.library`), so only a file this library wrote is ever parsed; a file that does
not match is ignored and the index rebuilt from the library's vectors.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

ANN_MIN_ROWS = 20_000
"""Below this many library rows exact brute force is used. Measured crossover (one core,
``bench/match.py --signatures N --skip-describe``, 97 rows per signature, CPU a query):
19,400 rows exact 0.17 ms vs ANN 0.14 ms; 48,500 rows 0.85 vs 0.20 ms; 97,000 rows 1.99 vs
0.24 ms; below ~20,000 rows the index build at save buys nothing.
``MESHSCAN_ANN_MIN_ROWS`` overrides it (tests force the ANN path on the small demo library)."""
KIND = "faiss-ivf-sq8"
NPROBE = 8
"""Cells probed per query: near-duplicate queries (within 0.08) sit deep inside their cell;
measured at 1M rows, recall of the true nearest within threshold 0.996 at 1-2, 1.000 at 4-16."""
_TRAIN_PER_LIST = 40
_ADD_CHUNK = 1 << 18


def _faiss():  # noqa: ANN202 - the faiss module
    """faiss, with a fork hook registered once: a forked child runs FAISS on one OpenMP thread.
    libgomp's thread pool does not survive ``fork``: after the parent has run a parallel region
    (training an index, a query of several rows), a forked scan worker's first query of two or
    more rows waits forever for threads that do not exist in it (measured: a range search of 3
    rows hung where 1 row answered; ``bench/evasion.py --enrol-jobs 2`` hung the same way). On
    one thread no pool is needed, and a worker is one of several processes anyway."""
    import faiss

    if not _FORK_HOOK:
        os.register_at_fork(after_in_child=_one_thread)
        _FORK_HOOK.append(True)
    return faiss


_FORK_HOOK: list[bool] = []


def _one_thread() -> None:
    import faiss

    faiss.omp_set_num_threads(1)


def available() -> bool:
    """Whether the ANN extra (``faiss-cpu``) is installed; without it search stays exact."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def min_rows() -> int:
    """Library rows from which the ANN shortlist is used: ``MESHSCAN_ANN_MIN_ROWS`` if set to
    a whole number, else :data:`ANN_MIN_ROWS`."""
    value = os.environ.get("MESHSCAN_ANN_MIN_ROWS", "")
    return int(value) if value.isdigit() else ANN_MIN_ROWS


def _lists(rows: int) -> int:
    """Inverted lists: ~2 sqrt(rows), at most 2048 (so the assignment pass at 10M rows stays
    minutes on one core) and at least 16."""
    return int(np.clip(2 * np.sqrt(max(rows, 1)), 16, 2048))


class AnnShortlist:
    """Candidate row ids for query vectors, over the first :attr:`rows` rows of a library.

    Rows are coded raw (not as residuals) with per-dimension 8-bit ranges, so the coded
    distance of a row differs from its true distance by at most :attr:`margin` (the norm of the
    per-dimension worst-case coding error, rows outside the trained range included): a radius
    query asks the index for every row coded within ``radius + margin`` and no row within the
    radius is lost to coding, only - rarely - to a cell that was not probed."""

    def __init__(self, index: object, error: np.ndarray, mapped_from: Path | None = None) -> None:
        self.index = index
        self.error = np.asarray(error, dtype=np.float64)
        """Per dimension, the largest |value - coded value| over every row added."""
        self.mapped_from = mapped_from
        """The file whose codes the index reads in place (memory-mapped, read-only), or None
        when they are in memory; read whole before the index is changed or written."""
        self._mapped_identity = None if mapped_from is None else _identity(mapped_from)

    @property
    def rows(self) -> int:
        return int(self.index.ntotal)

    @property
    def width(self) -> int:
        return int(self.index.d)

    @property
    def margin(self) -> float:
        # + float32 rounding of a 76-term sum of squares in FAISS's distance
        return float(np.sqrt((self.error**2).sum())) * (1 + 1e-4) + 1e-5

    def meta(self) -> dict[str, list[float]]:
        """What must be stored beside the index file (the library manifest's ``ann`` entry)."""
        return {"error": [float(e) for e in self.error]}

    @classmethod
    def build(cls, vectors: np.ndarray, seed: int = 0) -> AnnShortlist:
        """Train on a sample (rows drawn with ``seed``: the same library gives the same index)
        and add every row, chunk by chunk, so a memory-mapped matrix is never copied whole."""
        faiss = _faiss()

        n, width = vectors.shape
        nlist = _lists(n)
        quantizer = faiss.IndexFlatL2(width)
        sq8, by_residual = faiss.ScalarQuantizer.QT_8bit, False  # raw rows: the coding error is bounded
        index = faiss.IndexIVFScalarQuantizer(quantizer, width, nlist, sq8, faiss.METRIC_L2, by_residual)
        sample = np.sort(np.random.default_rng(seed).choice(n, min(n, _TRAIN_PER_LIST * nlist), replace=False))
        index.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
        out = cls(index, np.zeros(width))
        out.add(vectors)
        out.index.nprobe = min(NPROBE, nlist)
        return out

    def add(self, vectors: np.ndarray) -> None:
        """Append rows (their ids continue from :attr:`rows`): matchable at once, no retraining."""
        faiss = _faiss()
        self.in_memory()

        trained = faiss.vector_to_array(self.index.sq.trained).astype(np.float64)
        low, span = trained[: self.width], trained[self.width :]
        for start in range(0, len(vectors), _ADD_CHUNK):
            chunk = np.ascontiguousarray(vectors[start : start + _ADD_CHUNK], dtype=np.float32)
            over = np.maximum(low - chunk.min(axis=0), chunk.max(axis=0) - (low + span)).clip(0)
            self.error = np.maximum(self.error, span / 510 + over + 1e-7)  # half a code step, + clipping
            self.index.add(chunk)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """(queries, k) candidate row ids, -1 where fewer exist."""
        _, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), int(min(k, self.rows)))
        return ids

    def within(self, queries: np.ndarray, radius: float) -> list[np.ndarray]:
        """Per query, the rows whose coded distance is within ``radius + margin``: every row
        truly within ``radius`` in the probed cells (one FAISS range search, no re-scan)."""
        reach = radius + self.margin
        lims, _, ids = self.index.range_search(np.ascontiguousarray(queries, dtype=np.float32), reach * reach)
        return [ids[lims[i] : lims[i + 1]] for i in range(len(queries))]

    def save(self, path: Path) -> None:
        """Write atomically (temp file, then rename) in FAISS's binary format."""
        faiss = _faiss()
        self.in_memory()

        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        try:
            faiss.write_index(self.index, str(tmp))
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()

    @classmethod
    def read(cls, path: Path, width: int, meta: dict) -> AnnShortlist:
        """Read a file whose sha256 the caller has already checked against the manifest, with
        the :meth:`meta` stored beside it; ValueError unless it is the kind of index this
        module writes, of ``width`` values."""
        faiss = _faiss()

        index = _read_index(path, mapped=True)
        error = np.asarray(meta.get("error", ()), dtype=np.float64)
        if error.shape != (width,) or not np.isfinite(error).all():
            raise ValueError(f"{path.name} has no coding error bound beside it")
        if not isinstance(index, faiss.IndexIVFScalarQuantizer) or index.d != width or index.by_residual:
            raise ValueError(f"{path.name} is not a {KIND} index of {width}-value rows")
        return cls(index, error, mapped_from=path)

    def in_memory(self) -> None:
        """Read the whole index into memory if its codes are mapped from a file: a mapped index
        is read-only, and FAISS would write one as a reference to that file, not as codes."""
        if self.mapped_from is not None:
            if _identity(self.mapped_from) != self._mapped_identity:  # another writer replaced it
                raise ValueError(f"{self.mapped_from.name} changed on disk since it was opened")
            self.index, self.mapped_from = _read_index(self.mapped_from, mapped=False), None


def _identity(path: Path) -> tuple[int, int, int, int]:
    """Which file is at ``path`` (device, inode, size, modification time): a save replaces the
    file by renaming a new one over it, so the mapped one is no longer the one found there."""
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _read_index(path: Path, *, mapped: bool):  # noqa: ANN202 - a FAISS index
    """``faiss.read_index``, the inverted lists memory-mapped read-only when ``mapped``. Why:
    opening a library must not cost time that grows with it - at 10M rows reading the 802 MiB
    index whole was 0.5-0.6 s of the matcher's 1.03 s open (measured, ``bench/match.py
    --signatures 10000000 --rows-per-signature 1 --skip-describe``); mapped, pages are read
    when a query probes their cell (the same answers: tested)."""
    faiss = _faiss()
    flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mapped else 0
    index = faiss.read_index(str(path), flags)
    if hasattr(index, "nlist"):
        index.nprobe = min(NPROBE, index.nlist)
    return index
