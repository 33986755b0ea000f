"""The local-patch index: which signatures an upload reproduces enough of, patch by patch.

Built from the library's patch rows (:mod:`scanner.features.patches`), which the library
keeps sorted by code: a query is one binary search per distinct code of the upload over the
(memory-mapped) code column - a dictionary lookup in effect, at any library size - and
votes per (signature, scale shift). A signature is found when at least ``MIN_MATCHED`` of its
distinctive patches of one kind (ring or fold codes, counted apart), covering at least
``MIN_SHARE`` of its area, sit at one scale (within a
quarter octave either way: a copy is scaled as a whole, and a patch near a step boundary
rounds to the next step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scanner.features.patches import MIN_MATCHED, MIN_SHARE, PatchCodes

MAX_HITS_PER_CODE = 64
"""A code carried by more signatures than this is generic across the library (a standard
hole, a common chamfer): it is not looked at, which bounds a query's work."""
MAX_DESIGNS_PER_CODE = 3
"""A code carried by more signatures than this is common local geometry *in this library* and
casts no vote: the shipped codebook removes what benign references share at enrolment, but with
10,000 signatures some codes recur across designs (99th percentile 6 signatures per code; 1 for
most), and real parts reproducing 9-12 of them flagged: a drilling jig (9 codes covering 31% of
a slide proxy; of the 20 codes it shares with that proxy, 19 are carried by 6-22 signatures)
and a cycloidal gear (12 codes; 9 carried by 5-26). The evasion copies the ``local`` kind
caught in the 10,024-signature library reproduced 76-96 of their signature's codes, about 80
carried by no other signature (README, "How matching works", item 7)."""

_OFFSET = 1 << 15
KIND_NAMES = ("ring", "fold")


@dataclass(frozen=True)
class LocalHit:
    signature: int
    """Position of the signature in the library."""
    matched: int
    """Distinct distinctive patches of the signature found at the winning scale."""
    total: int
    """Distinctive patches the signature has."""
    share: float
    """Their share of the signature's area (the stored shares summed; at most 1)."""
    scale: float
    """The upload's scale relative to the signature (2 ** (shift / SIZE_STEPS))."""
    kind: str = "ring"
    """Which codes: ``ring`` (triangles with their neighbours' far corners) or ``fold``
    (triangles with the angles across their edges)."""


FILTER_MAX_CODES = 1 << 18
"""Libraries with at most this many patch rows get the bit table of :meth:`PatchIndex._maybe_here`
(16 MB of bools at most); larger ones look every code up."""
FILTER_BITS_PER_CODE = 32
"""Table slots per library code (rounded up to a power of two): ~3% of codes not in the
library still land on a set slot and are looked up."""


def _filter_slots(codes: np.ndarray, size: int) -> np.ndarray:
    """Table slot of each code (``size`` a power of two): bits above the lowest, which holds
    the code's kind (a code is a 64-bit hash)."""
    return (np.asarray(codes, dtype=np.uint64).view(np.int64) >> np.int64(1)) & np.int64(size - 1)


def _code_size_order(codes: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """``np.lexsort((sizes, codes))``: by code, then size, then position - as two stable sorts,
    sizes first (int16: numpy's radix sort) and then codes (:func:`stable_argsort_u64`), which
    composed are exactly lexsort's order. Why: lexsort of a small file's ~10k codes took 0.46 ms
    on this machine, about 5% of the whole scan of the file; the two sorts about 0.1 ms."""
    from scanner.arrays import stable_argsort_u64

    by_size = np.argsort(sizes, kind="stable")
    return by_size[stable_argsort_u64(np.take(codes, by_size))]


class PatchIndex:
    """Patch rows sorted by code, with per-signature totals; ``query`` votes."""

    def __init__(
        self,
        codes: np.ndarray,
        sizes: np.ndarray,
        shares: np.ndarray,
        sigs: np.ndarray,
        signatures: int,
        active: np.ndarray | None = None,
        ordered: bool = False,
    ) -> None:
        """``ordered``: the columns are known to be sorted by code (a saved library's are:
        checking would read every page of a large memory map at each open)."""
        if not ordered and len(codes) > 1 and not bool(np.all(codes[1:] >= codes[:-1])):
            order = np.lexsort((sigs, codes))
            codes, sizes, shares, sigs = codes[order], sizes[order], shares[order], sigs[order]
        self.codes, self.sizes, self.shares, self.sigs = codes, sizes, shares, sigs
        self.signatures = signatures
        self._totals: np.ndarray | None = None
        self._filter: np.ndarray | None = None
        self.active = np.ones(signatures, dtype=bool) if active is None else np.asarray(active, dtype=bool)

    @property
    def totals(self) -> np.ndarray:
        """Distinctive patches per (signature, kind), counted on first use: only evidence
        needs them, and counting reads the whole signature column."""
        if self._totals is None:
            voters = self._voter(np.asarray(self.sigs, dtype=np.int64), self.codes)
            self._totals = np.bincount(voters, minlength=2 * self.signatures)
        return self._totals

    def _maybe_here(self, codes: np.ndarray) -> np.ndarray | None:
        """False for upload codes that are surely not in the library (a bit table of the
        library's codes, built on first use), True for those that may be; None where the
        library has too many codes for a small table (every code is then looked up).

        Why: most codes of an upload are in no signature, and finding that out by sorting the
        upload's ~6k (code, size) pairs and searching them was ~0.4 ms of a small file's scan
        (~5%); a table lookup per code is ~20 us. The codes that may be there go through the
        same sort and search as before, so the same pairs are found, in the same order."""
        if len(self.codes) > FILTER_MAX_CODES:
            return None
        if self._filter is None:
            size = 1 << max(12, int(FILTER_BITS_PER_CODE * len(self.codes)).bit_length())
            table = np.zeros(size, dtype=bool)
            table[_filter_slots(np.asarray(self.codes), size)] = True
            self._filter = table
        return self._filter.take(_filter_slots(codes, len(self._filter)))

    @staticmethod
    def _voter(sig: np.ndarray, codes: np.ndarray) -> np.ndarray:
        return sig * 2 + (np.asarray(codes) & np.uint64(1)).astype(np.int64)

    def __len__(self) -> int:
        return len(self.codes)

    def _common(self, rows: np.ndarray, n: np.ndarray) -> np.ndarray:
        """Per found code (its ``n`` library rows, listed code by code in ``rows``): is it carried
        by more than :data:`MAX_DESIGNS_PER_CODE` signatures?"""
        code = np.repeat(np.arange(len(n)), n)
        pairs = np.unique(code * np.int64(self.signatures + 1) + self.sigs[rows].astype(np.int64))
        designs = np.bincount(pairs // np.int64(self.signatures + 1), minlength=len(n))
        return designs > MAX_DESIGNS_PER_CODE

    def query(self, codes: PatchCodes, min_matched: int = MIN_MATCHED, min_share: float = MIN_SHARE) -> list[LocalHit]:
        """Signatures with at least ``min_matched`` patches and ``min_share`` of their area
        reproduced at one scale, most covered first."""
        from scanner.features.patches import SIZE_STEPS

        if not len(self.codes) or not len(codes):
            return []
        upload_codes, upload_sizes = codes.codes, codes.sizes
        maybe = self._maybe_here(upload_codes)
        if maybe is not None:  # only codes that may be in the library: the same pairs are found
            if not maybe.any():
                return []
            upload_codes, upload_sizes = upload_codes[maybe], upload_sizes[maybe]
        # distinct (code, size) pairs, in code order (sorted needles search a large map faster)
        order = _code_size_order(upload_codes, upload_sizes)
        qc, qs = upload_codes[order], upload_sizes[order].astype(np.int64)
        new = np.ones(len(qc), dtype=bool)
        new[1:] = (qc[1:] != qc[:-1]) | (qs[1:] != qs[:-1])
        qc, qs = qc[new], qs[new]
        lo = np.searchsorted(self.codes, qc, side="left")
        found = lo < len(self.codes)
        found[found] = self.codes[lo[found]] == qc[found]  # most codes of an upload are nowhere
        if not found.any():
            return []
        lo, qc, qs = lo[found], qc[found], qs[found]
        n = np.searchsorted(self.codes, qc, side="right") - lo
        use = n <= MAX_HITS_PER_CODE
        lo, n, qs = lo[use], n[use], qs[use]
        if not len(lo):
            return []
        rows = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(int(n.sum()))
        common = self._common(rows, n)
        if common.any():  # common local geometry in this library casts no vote
            keep_rows = np.repeat(~common, n)
            rows, lo, n, qs = rows[keep_rows], lo[~common], n[~common], qs[~common]
            if not len(lo):
                return []
        q_size = np.repeat(qs, n)
        sig = self.sigs[rows].astype(np.int64)
        keep = self.active[sig]
        rows, shift = rows[keep], q_size[keep] - self.sizes[rows[keep]].astype(np.int64)
        sig = self._voter(sig[keep], self.codes[rows])
        if not len(rows):
            return []
        # votes per (signature, shift); the best window of three neighbouring shifts per signature
        key = sig * (2 * _OFFSET) + shift + _OFFSET
        ukey, votes = np.unique(key, return_counts=True)
        window = votes.copy()
        for d in (-1, 1):
            at = np.searchsorted(ukey, ukey + d)
            found = (at < len(ukey)) & (ukey[np.minimum(at, len(ukey) - 1)] == ukey + d)
            window[found] += votes[at[found]]
        usig = ukey // (2 * _OFFSET)
        out = []
        for s in np.unique(usig[window >= min_matched]):
            mine = np.flatnonzero(usig == s)
            best = mine[np.argmax(window[mine])]
            centre = int(ukey[best] % (2 * _OFFSET)) - _OFFSET
            found_rows = np.unique(rows[(sig == s) & (np.abs(shift - centre) <= 1)])
            share = float(self.shares[found_rows].sum())
            if len(found_rows) >= min_matched and share >= min_share:
                total = int(self.totals[s])
                scale = 2.0 ** (centre / SIZE_STEPS)
                kind = KIND_NAMES[int(s) % 2]
                out.append(LocalHit(int(s) // 2, len(found_rows), total, min(share, 1.0), scale, kind))
        best: dict[int, LocalHit] = {}  # one hit per signature: the better-covered kind
        for hit in sorted(out, key=lambda h: (-h.share, -h.matched, h.kind)):
            best.setdefault(hit.signature, hit)
        return sorted(best.values(), key=lambda h: (-h.share, -h.matched, h.signature))
