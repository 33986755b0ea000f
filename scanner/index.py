"""Near-duplicate index over descriptor vectors: exact brute-force search, every row within
the query radius (or the k nearest rows), each held to its own threshold.

Shaped like python-threatexchange's signal indexes: ``add`` rows carrying metadata, ``build``
once, ``query`` returning hits that carry their distance and what they point to. Nothing is
persisted here: the library stores vectors (``.npy``, no pickle) and the index is rebuilt at
load time, which takes milliseconds even for 100,000 signatures.

Why not scikit-learn's ``NearestNeighbors``: for a single query against 100,000 rows its
brute-force path measured 12 ms (float64) and 100 ms (float32, chunked upcasting) here, and
its trees lose to brute force in 60+ dimensions; one float64 matrix-vector product plus
``argpartition`` measured 5 ms under the same load (``bench/match.py`` prints both). The
distances of the candidates are exact, in float64 (|q|^2 + |x|^2 - 2 q.x cancels badly in
float32); the vectors themselves stay float32, so a library with plane-cut piece rows (~97 rows
per signature) costs 4 bytes per value, not 12.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from scanner.ann import AnnShortlist

_QUERY_CHUNK = 32
"""Query rows scored against the whole library at once: an upload may send 1,000+ rows (one per
body), and a (rows x library rows) float32 matrix at ~97 rows per signature would not fit."""


@dataclass(frozen=True)
class Hit:
    query_row: int
    """Which query vector (0 = whole file, then bodies, as in Descriptor.rows())."""
    signature: int
    """Position of the signature in the library."""
    body: int
    """Body of the signature this row describes (-1 = whole file)."""
    distance: float
    threshold: float
    """The row's own threshold (set at enrolment; +inf when none was given)."""
    row: int = -1
    """Which library row matched (its position in the index)."""


class NearDuplicateIndex:
    def __init__(self) -> None:
        self._vectors: list[np.ndarray] = []
        self._signatures: list[np.ndarray] = []
        self._bodies: list[np.ndarray] = []
        self._thresholds: list[np.ndarray] = []
        self._ready = False
        self.vectors = np.zeros((0, 0), dtype=np.float32)
        self.signatures = np.zeros(0, dtype=np.int64)
        self.bodies = np.zeros(0, dtype=np.int64)
        self.thresholds = np.zeros(0, dtype=np.float32)
        self.ann: AnnShortlist | None = None
        """Approximate shortlist over the first ``ann.rows`` rows (the rest, rows added since
        it was built, are the exact "delta" scanned beside it); None = exact search only."""
        self.active: np.ndarray | None = None
        """Per row: may it match (False for a disabled signature's rows); None = all."""
        self._grouped: bool | None = None
        """Are the rows grouped by signature in ascending order (:meth:`rows_of`)? None: not checked."""

    def add(
        self,
        vectors: np.ndarray,
        signatures: list[int] | np.ndarray,
        bodies: list[int] | np.ndarray,
        thresholds: np.ndarray | None = None,
    ) -> None:
        # a float32 memmap stays a memmap (no copy): a library of millions is never loaded whole
        self._vectors.append(np.asarray(vectors, dtype=np.float32).reshape(len(signatures), -1))
        if thresholds is None:
            thresholds = np.full(len(signatures), np.inf, dtype=np.float32)
        self._thresholds.append(np.asarray(thresholds, dtype=np.float32).reshape(-1))
        self._signatures.append(np.asarray(signatures, dtype=np.int64))
        self._bodies.append(np.asarray(bodies, dtype=np.int64))
        self._ready = False
        self._grouped = None

    def build(self, ann: AnnShortlist | None = None) -> NearDuplicateIndex:
        """Concatenate the added rows; with ``ann`` (built over a prefix of them, in order) the
        query shortlists from it and scans only the rows after its prefix exactly."""
        if ann is not None:
            self.ann = ann
        if self._vectors:
            # one added block is kept as given (a memmap stays one): no copy of a large library
            join = lambda parts: parts[0] if len(parts) == 1 else np.concatenate(parts)  # noqa: E731
            self.vectors = join(self._vectors)
            self.signatures, self.bodies = join(self._signatures), join(self._bodies)
            self.thresholds = join(self._thresholds)
            self._vectors, self._signatures, self._bodies = [self.vectors], [self.signatures], [self.bodies]
            self._thresholds = [self.thresholds]
        if self.ann is not None and (self.ann.rows > len(self.vectors) or self.ann.width != self.vectors.shape[1]):
            raise ValueError("the ANN shortlist covers rows this index does not hold")
        if len(self.vectors):
            # float32 norms feed only the shortlist (its margin covers their rounding); the
            # candidates' distances are recomputed exactly in float64. No float64 copy of the
            # matrix: at ~97 rows per signature it would triple the memory and the build time.
            # (with an ANN shortlist only the delta rows after its prefix are scanned)
            self._delta = self.ann.rows if self.ann is not None else 0
            tail = self.vectors[self._delta :]
            self._norms32 = np.einsum("rd,rd->r", tail, tail)
            self._max_norm2 = float(self._norms32.max()) if len(tail) else 0.0
            self._ready = True
        return self

    def __len__(self) -> int:
        return len(self.vectors)

    def query(self, vectors: np.ndarray, k: int = 5, radius: float | None = None) -> list[Hit]:
        """Rows within their own threshold of each query vector, nearest first: at most ``k``
        signatures per query vector (its best row each).

        With ``radius`` every row within it is a candidate, not only the ``k`` nearest rows:
        a signature enrolls dozens of rows (bodies, plane-cut pieces) and tight-threshold rows
        of one signature must not crowd a matching row of another out of a top-k list.
        Without ``radius``, the ``k`` nearest rows are the candidates (for measurement)."""
        if not self._ready and self._vectors:
            self.build()
        if not self._ready:
            return []
        width = self.vectors.shape[1]
        q = np.asarray(vectors, dtype=np.float64)
        if q.ndim == 1 and q.size == width:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != width:
            raise ValueError(f"query rows must have {width} values each, not shape {q.shape}")
        hits = []
        for start in range(0, len(q), _QUERY_CHUNK):  # (rows x library) float32 distances per chunk
            hits += self._query_chunk(q[start : start + _QUERY_CHUNK], start, k, radius)
        return hits

    def _scan_candidates(self, q: np.ndarray, k: int, radius: float | None) -> list[np.ndarray]:
        """Exact float32 scan of the rows not covered by the ANN shortlist (all rows without one)."""
        tail = self.vectors[self._delta :]
        if not len(tail):
            return [np.zeros(0, dtype=np.int64)] * len(q)
        # shortlist in float32 (half the memory traffic: the scan is memory-bound), then exact float64
        approx = self._norms32[None, :] - 2.0 * (q.astype(np.float32) @ tail.T)
        out = []
        for row in range(len(q)):
            if radius is None:
                m = min(len(tail), max(8 * k, 64))
                candidates = np.argpartition(approx[row], m - 1)[:m] if m < approx.shape[1] else np.arange(m)
            else:  # the margin covers float32 rounding of |x|^2 - 2 q.x, which grows with the norms
                q2 = float((q[row] ** 2).sum())
                margin = 1e-4 + 16 * float(np.finfo(np.float32).eps) * (self._max_norm2 + q2)
                candidates = np.flatnonzero(approx[row] + q2 <= radius * radius + margin)
            out.append(candidates + self._delta)
        return out

    def _ann_candidates(self, q: np.ndarray, k: int, radius: float | None) -> list[np.ndarray]:
        """Candidate rows from the ANN shortlist: with a radius every row whose coded distance
        is within the radius plus the coding error bound (so no row inside the radius is lost
        to coding); without one the ``max(8k, 64)`` nearest by coded distance."""
        assert self.ann is not None
        if radius is not None:
            return self.ann.within(q, radius)
        ids = self.ann.search(q, max(8 * k, 64))
        return [row_ids[row_ids >= 0] for row_ids in ids]

    def _candidates(self, q: np.ndarray, k: int, radius: float | None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query vector: the rows that may match (shortlisted, then the delta scanned, active
        ones only; sorted, so a memmap is read in file order) and their exact distances."""
        found = self._scan_candidates(q, k, radius)
        if self.ann is not None and self.ann.rows:
            near = self._ann_candidates(q, k, radius)
            found = [np.concatenate([a, b]) for a, b in zip(near, found, strict=True)]
        out = []
        for row in range(len(q)):
            candidates = np.unique(found[row])
            if self.active is not None and len(candidates):
                candidates = candidates[self.active[candidates]]
            diff = self.vectors[candidates].astype(np.float64) - q[row]
            out.append((candidates, np.sqrt(np.einsum("md,md->m", diff, diff))))
        return out

    def _query_chunk(self, q: np.ndarray, first: int, k: int, radius: float | None) -> list[Hit]:
        hits = []
        for row, (candidates, dist) in enumerate(self._candidates(q, k, radius)):
            if not len(candidates):
                continue
            limit = self.thresholds[candidates].astype(np.float64)
            if radius is not None:
                limit = np.minimum(limit, radius)
            within = dist <= limit
            candidates, dist, limit = candidates[within], dist[within], limit[within]
            seen: set[int] = set()
            for i in np.argsort(dist, kind="stable"):
                signature = int(self.signatures[candidates[i]])
                if signature in seen:
                    continue
                seen.add(signature)
                hits.append(
                    Hit(
                        first + row,
                        signature,
                        int(self.bodies[candidates[i]]),
                        float(dist[i]),
                        float(limit[i]),
                        int(candidates[i]),
                    )
                )
                if len(seen) == k:
                    break
        return hits

    def rows_of(self, signature: int) -> np.ndarray:
        """The rows of one signature, in order: a binary search when the rows are grouped by
        signature in ascending order (as enrolment and merging write them; checked once, on
        first use), else one comparison over the signature column."""
        if self._grouped is None:
            sigs = self.signatures
            self._grouped = bool(len(sigs) < 2 or np.all(sigs[1:] >= sigs[:-1]))
        if self._grouped:
            lo, hi = np.searchsorted(self.signatures, [signature, signature + 1])
            return np.arange(lo, hi)
        return np.flatnonzero(self.signatures == signature)

    def neighbours(self, vectors: np.ndarray, radius: float) -> list[tuple[np.ndarray, np.ndarray]]:
        """Every row that may match within ``radius`` of each query vector, whatever the row's
        own threshold: ``(rows, distances)`` per query vector, exact (the matcher asks it who
        else is as near as a hit, :meth:`scanner.matching.Matcher.near`)."""
        if not self._ready and self._vectors:
            self.build()
        q = np.asarray(vectors, dtype=np.float64).reshape(len(vectors), -1)
        if not self._ready:
            return [(np.zeros(0, dtype=np.int64), np.zeros(0))] * len(q)
        return [(rows[dist <= radius], dist[dist <= radius]) for rows, dist in self._candidates(q, 1, radius)]

    def min_distance_per_signature(self, vectors: np.ndarray, relative: bool = False) -> np.ndarray:
        """For measurement: the smallest distance from any query row to each signature
        (``relative``: in units of each row's own threshold, so <= 1 means a match)."""
        if not self._ready:
            self.build()
        q = np.asarray(vectors, dtype=np.float32).reshape(-1, self.vectors.shape[1])
        d = np.sqrt(np.maximum(((q[:, None, :] - self.vectors[None, :, :]) ** 2).sum(axis=2), 0)).min(axis=0)
        if relative:
            d = d / self.thresholds
        n_sig = int(self.signatures.max()) + 1
        out = np.full(n_sig, np.inf)
        np.minimum.at(out, self.signatures, d)
        return out
