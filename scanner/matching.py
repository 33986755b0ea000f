"""The matcher: one index per signal kind, built from a signature library (the store).

Shaped like python-threatexchange's ``SignalType`` / ``SignalTypeIndex``: each signal kind
names itself and builds its own index from the library's records; an index answers
``query`` with matches that carry the distance and the threshold that decided them. The
library stays a store of records (descriptors, hashes, metadata); nothing here is persisted,
so an index is always the library's current content, rebuilt in milliseconds at load.

Signal kinds, in the order the pipeline consults them:

- ``sha256``: the upload's bytes are a known file (dictionary lookup);
- ``geometry``: the same multiset of triangles as a known file (dictionary lookup);
- ``near-duplicate``: a global shape descriptor row (whole file, body, or loose triangles)
  within the signature row's own threshold (exact k-nearest neighbours); a signature's rows
  include its plane-cut pieces (:mod:`scanner.features.pieces`), so part of a known file is
  found too, and the match says which share of it (``signature_share``). A hit stands only
  when the upload's row is not a plain solid and is nearer the signature than any generic
  reference shape (:func:`scanner.features.reference.confirms`) and when no other known
  design is about as near (:data:`DISTINCT_RATIO`) nor, beyond half its threshold, several
  within 1.5x its distance (:data:`CROWD_DESIGNS`): the second stage; a hit on a piece beyond
  :data:`PIECE_CONFIRM` x its threshold, or from a convex upload row (:data:`CONVEX_SOLIDITY`),
  also needs the upload near the signature another way;
- ``stretched``: when no row matched, the whitened whole-file row within its threshold while
  the plain row stays within a looser band (:class:`scanner.features.affine.AffineIndex`): a
  copy stretched along some axis (the crowding test, in whitened space; not the one-rival
  test: see :func:`crowded`).
- ``local``: the upload reproduces enough of a signature's distinctive triangle patches at
  one scale (:mod:`scanner.patch_index`; codes that more than three signatures carry do not
  count): a copy cut, fused to other geometry, split into
  spaced pieces or surrounded by decoys keeps most of its triangles exactly.

The allowlist is an index too (two dictionaries), so lookups cost the same for ten entries
or a million.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from scanner.exchange.source import bank_of
from scanner.features.affine import AFFINE_ROW, AffineIndex
from scanner.features.patches import MIN_SHARE
from scanner.features.pieces import piece_share
from scanner.features.reference import confirms, nearest_generic_distance
from scanner.patch_index import PatchIndex
from scanner.verdict import Match

DISTINCT_RATIO = 0.9
"""A near-duplicate hit at distance d stands only when no row of another known design lies
within d / ``DISTINCT_RATIO`` of the upload's row: a copy of a design is clearly nearer it than
anything else, while an unrelated shape that lands in a crowded part of the library is about as
near several designs. This is what keeps precision from falling as the library grows: the
more signatures, the more often an unrelated part lands inside some row's threshold, but then
also beside others. Measured (``bench/evasion.py --proxy-libraries 1000``, seed 0): the real
corpus parts falsely flagged against 1,000 proxy signatures went from 4 of 43 to 0 (each
vetoed hit had another design at 0.54-0.99 x its distance); uploads of 14 evasion families of
24 enrolled proxies scanned against that whole library lost at most one flag of 24 per family
(noise 0.5% and 1% on densified copies), while 1.0 (no margin) left two unrelated designs at
0.0195 and 0.0198 from a benign turned part standing."""

PIECE_UPLOAD_SHARE = 0.1
"""A hit on a signature's plane-cut piece counts only from an upload row that holds at least this
share of the upload's surface: a cut piece is more generic than a whole part, and a small body of
a larger model (a vent, a foot, a knob: 2.4% of a vented box) that resembles half of a known part
was one of five false pairs in 100,000 (benign look-alike, proxy signature) pairs. The cut copies the
pieces are for are the upload (partial: 100%), half or a quarter of it (split: 25-50%) or their
own archive member; a piece hidden among decoys still has its exact triangles for the local
patches (``local``)."""

PIECE_CONFIRM = 0.65
"""A hit on a plane-cut piece row stands on its own only within this share of the row's
threshold; beyond it, only when the upload is near the same signature another way
(:meth:`Matcher._confirm_pieces`): its row within :data:`PIECE_WHOLE` of the signature's
whole-file row when the piece keeps most of it (:data:`PIECE_MOST`), or another of its rows near
a row of the signature (:data:`PIECE_AGREE`), or :data:`PIECE_PATCHES` of the signature's
distinctive patches in the upload. Not a cap: a cap of 0.02 removed the benign false pairs but
lost a sliced copy rebuilt from its inner walls at 0.0254 from an 85% piece (0.85 x its
threshold, ``tests/integration/test_appended_payloads.py``), which its whole-file row (0.082)
corroborates.

Calibrated on the two distributions (``bench/piece_hits.py``: every piece hit that stood before
this rule). False: every benign pair of ``bench/evasion.py`` at seed 0 (300 look-alikes x 24
proxies, and 500 x 200 for 100,000 pairs) - three hits, all of a lone row (a one-body file) at
0.71-1.0 x the threshold (a turned part at 0.86 of a bolt's 50% piece, a turned part at 0.71 of
a barrel's 85% piece, a hinge at 0.996 of a slide's 70% piece), 0.147-0.33 from the whole row,
no patch of the signature; the public corpus against 200 and 1,000 proxies gave none. True: the
evasion families that need pieces (split, partial, fused, sliced G-code, decimation; 24
proxies, seeds 0 and 1): 174 piece hits, 29 uploads flagged through a piece hit alone (the
``local`` kind would not have flagged them). Of those 29, 14 are within 0.65 x (at most
0.616), the others are corroborated - 85% pieces of decimated and sliced copies by the
whole row at 0.018-0.090 (the false 85% hit: 0.147), partial and split
copies by 3-7 patches covering 14-83% of the signature (false: 0), one sliced copy in shuffled
pieces by another body (about 1.5 x a row's threshold; false rows had no other body). The
eight hits of evasion uploads on another proxy's pieces (sibling designs, 0.68-0.99 x) are all
refused. Result: 0 of 7,200 and 0 of 100,000 benign pairs (1 and 2 before), every piece
family's recall in ``bench/evasion.py`` unchanged at seed 0 and no upload lost at seed 1. The
margins are thin where the data are thin: 0.65 against 0.71, 0.09 against 0.147 (0.107-0.114
for hits on a sibling proxy's 85% piece), 3 patches against 0. Cost: only for a piece hit
beyond 0.65 x - the signature's rows (a binary search: ``NearDuplicateIndex.rows_of``), and
the upload's patch codes when the descriptor rows do not corroborate."""

CONVEX_SOLIDITY = 0.98
"""An upload row at least this solid (enclosed volume over convex hull volume,
:mod:`scanner.features.solidity`) is a convex stock shape - a pin, a block, a disc - and its
hit on a signature's plane-cut piece needs the corroboration a far piece hit needs
(:data:`PIECE_CONFIRM`) at any distance: a convex piece of a part is as generic as the stock it
resembles, and no grid of reference solids covers every chamfer and proportion of them (README,
"Evasions, measured": the public corpus's chamfered dowel pin, solidity 1.000, at 0.41 x a
bolt proxy's 50% piece among 10,000 proxy signatures). Whole-file and body rows are not
affected: a signature that is itself convex is matched as before (and a plain solid never
confirms, :data:`scanner.features.reference.PLAIN_SOLID`).

Where 0.98 sits: over the public corpus's 193 rows (125 meshes and archive members, whole rows
and the bodies of files of up to 50 bodies) no row lies between 0.974 (a sensor housing) and
0.990 (a tray, a plate with holes - stock-like too); 74 rows are at 0.99 or more (cubes,
spheres, pins, lids, pyramids), 24 at 0.90-0.98. On the copies' side the default
``bench/evasion.py`` run is unchanged by the rule but one member of 48 in "split, members"
(its upload still flagged): the bench's cut copies keep their triangles, which corroborate."""

PIECE_WHOLE = 0.1
"""Corroboration of a piece hit: the upload row within this of the signature's whole-file row
(for pieces keeping :data:`PIECE_MOST`): most of the part is there (decimated or sliced copies
at 0.018-0.090; the false 85% hit at 0.147)."""

PIECE_MOST = 0.85
"""The whole-file corroboration (:data:`PIECE_WHOLE`) applies to pieces keeping this much: a
70% piece near the whole row was a fused copy's hit on a sibling proxy (0.070)."""

PIECE_AGREE = 1.5
"""Corroboration of a piece hit: another upload row - another surface, not within
``SAME_DESIGN`` of the hit row - within this x the threshold of a row of the same signature
(the other pieces of a split or sliced copy: 0.24-6.6 x in the bench; every false hit was a
one-body file)."""

PIECE_PATCHES = 3
"""Corroboration of a piece hit: this many of the signature's distinctive patches, covering
``MIN_SHARE`` of it, at one scale (the ``local`` kind alone needs ``MIN_MATCHED``): partial and
split copies that keep their triangles carry 3-7 below that (14-83% of the signature); no false
piece hit carried one (over 300 benign look-alikes x 24 proxies the most ring codes of one
proxy found was 2: README, "How matching works", item 7)."""

SAME_DESIGN = 0.02
"""Rows of two signatures this close are one shape up to sampling noise (``PLAIN_SOLID``,
``scanner.enrol.SAMPLING_NOISE``): the same design enrolled twice, by two sources or under two
categories, does not make a copy of it ambiguous."""

CROWD_RATIO = 1.5
"""See :data:`CROWD_DESIGNS`."""

CROWD_DESIGNS = 3
"""A hit at distance d stands only when fewer than this many *other* known designs lie within
``CROWD_RATIO`` x d of the upload (descriptor rows; whitened rows for ``stretched``). A copy of
a design is clearly nearer it than other designs; an unrelated part that lands in a crowded
part of the library - with 10,000 signatures some row is near almost anything - is about as
near several. The rate of false flags then does not grow with the library: the more
signatures, the more often an unrelated part falls inside some row's threshold, but then also
beside others. (:data:`DISTINCT_RATIO` is the one-rival case: any other design within d/0.9.)
Calibrated at 10,000 proxy signatures: README, "Thresholds", crowding."""


CROWD_BAND = 0.5
"""The crowding test (:data:`CROWD_DESIGNS`) reads hits beyond this share of their row's
threshold only: nearer than that, a hit stands among other designs too."""


def crowded(
    own: np.ndarray,
    rivals: np.ndarray,
    signatures: np.ndarray,
    distances: np.ndarray,
    distance: float,
    threshold: float,
    one_rival: bool = True,
) -> bool:
    """Is a hit at ``distance`` from the upload, on a signature row ``own``, contested by the rows
    ``rivals`` (of other signatures ``signatures``, at ``distances`` from the upload, all within
    ``CROWD_RATIO`` x ``distance``)? Rivals within ``SAME_DESIGN`` of ``own`` are the same shape
    enrolled again and do not count; rivals of one signature, or within ``SAME_DESIGN`` of one
    counted already, count once.

    ``one_rival=False`` leaves out the one-rival test (:data:`DISTINCT_RATIO`), for ``stretched``
    hits: their distances are read in whitened space, which removes exactly what tells a design
    from its siblings of other proportions, so a stretched copy of one design is by construction
    about as near another design that differs from it only by a stretch - and is then a
    stretched copy of that one too, still a known part. Measured at 10,000 proxy signatures
    (``bench/evasion.py --within 10000``, seed 0): with the one-rival test, copies stretched x1.05
    / x1.05 through a 3MF transform / x1.2 / x1.2 through a 3MF transform were flagged 83% /
    88% / 79% / 58% (83 / 88 / 83 / 62% with the crowd test off), without it 92% / 92% / 88% /
    75% (and 100% with neither test); of the real parts' false stretched hits at that size the
    crowd refuses all but one (a printer part of 1,136 whose other designs sit at 1.03-1.11x
    its distance: README, "Evasions, measured", stretched hits)."""
    if not len(rivals):
        return False
    own = np.asarray(own, dtype=np.float64)
    rivals = np.asarray(rivals, dtype=np.float64)
    apart = np.sqrt(((rivals - own) ** 2).sum(axis=1)) > SAME_DESIGN
    if one_rival and (apart & (np.asarray(distances) < distance / DISTINCT_RATIO)).any():
        return True
    if distance <= CROWD_BAND * threshold:
        return False
    counted: list[np.ndarray] = []
    seen: set[int] = set()
    for row, sig in zip(rivals[apart], np.asarray(signatures)[apart], strict=True):
        if int(sig) in seen or any(np.sqrt(((row - c) ** 2).sum()) <= SAME_DESIGN for c in counted):
            continue
        seen.add(int(sig))
        counted.append(row)
        if len(counted) >= CROWD_DESIGNS:
            return True
    return False


if TYPE_CHECKING:
    from scanner.features.patches import PatchCodes
    from scanner.index import Hit, NearDuplicateIndex
    from scanner.library import AllowEntry, SignatureLibrary


class ExactIndex:
    """Hash -> positions of the signatures that carry it (a dictionary, not a scan)."""

    def __init__(self) -> None:
        self._by_key: dict[str, list[int]] = defaultdict(list)

    def add(self, key: str | None, position: int) -> None:
        if key:
            self._by_key[key].append(position)

    def query(self, key: str | None) -> list[int]:
        return list(self._by_key.get(key, ())) if key else []

    def __len__(self) -> int:
        return len(self._by_key)


class _ExactSignal:
    """A signal that is one hash per signature, looked up in a dictionary."""

    name: ClassVar[str]
    attribute: ClassVar[str]
    """The :class:`~scanner.library.Signature` field holding the hash."""

    @classmethod
    def build(cls, lib: SignatureLibrary) -> ExactIndex:
        stored = lib.stored_index(cls.name)  # an opened library's sorted column: nothing to build
        if stored is not None:
            return stored  # type: ignore[return-value]
        index = ExactIndex()
        for position, s in enumerate(lib.signatures):
            if s.disabled is None:  # a disabled signature stays in the library but never matches
                index.add(getattr(s, cls.attribute), position)
        return index


class FileSha256Signal(_ExactSignal):
    """The upload's bytes (sha256 of the file) are those of a known file."""

    name = "sha256"
    attribute = "sha256"


class GeometryHashSignal(_ExactSignal):
    """The upload holds exactly the triangles of a known file (any format, order, winding)."""

    name = "geometry"
    attribute = "geometry_hash"


class GlobalDescriptorSignal:
    """A descriptor row of the upload lies within a signature row's own threshold."""

    name: ClassVar[str] = "near-duplicate"

    @staticmethod
    def build(lib: SignatureLibrary) -> NearDuplicateIndex:
        from scanner.index import NearDuplicateIndex

        index = NearDuplicateIndex()
        if not len(lib.rows):
            return index.build()
        # every row, in library order (a memory-mapped matrix is not copied; the ANN shortlist
        # stored beside the library numbers the same rows); disabled signatures' rows are masked
        active = np.asarray(lib.active(), dtype=bool)[lib.rows[:, 0]] & (lib.rows[:, 1] != AFFINE_ROW)
        index.add(lib.vectors, lib.rows[:, 0], lib.rows[:, 1], lib.thresholds)
        if not active.all():  # whitened rows belong to StretchSignal: never compared as plain ones
            index.active = active
        return index.build(ann=lib.shortlist())


class LocalPatchSignal:
    """Enough of a signature's distinctive triangle patches, at one scale, are in the upload."""

    name: ClassVar[str] = "local"

    @staticmethod
    def build(lib: SignatureLibrary) -> PatchIndex:
        columns = (lib.patch_codes, lib.patch_sizes, lib.patch_shares, lib.patch_sigs)
        active = np.asarray(lib.active(), dtype=bool)
        # a loaded library's columns were sorted when saved; ones added since are sorted here
        return PatchIndex(*columns, signatures=len(lib.signatures), active=active, ordered=lib.patches_ordered)


class StretchSignal:
    """A stretched copy: the whitened row of the upload's whole file near a signature's, with the
    plain whole-file rows still within a looser band (:mod:`scanner.features.affine`)."""

    name: ClassVar[str] = "stretched"

    @staticmethod
    def build(lib: SignatureLibrary) -> AffineIndex:
        rows = np.asarray(lib.rows).reshape(-1, 2)
        picks = np.flatnonzero(rows[:, 1] == AFFINE_ROW)
        positions = rows[picks, 0]
        whole_of = np.full(len(lib.signatures), -1, dtype=np.int64)
        whole = np.flatnonzero(rows[:, 1] == -1)
        whole_of[rows[whole, 0]] = whole
        plain = whole_of[positions]
        usable = np.asarray(lib.active(), dtype=bool)[positions] & (plain >= 0)
        thresholds = np.where(usable, np.asarray(lib.thresholds)[picks], 0.0)
        return AffineIndex(lib.vectors[picks], positions, thresholds, lib.vectors[np.maximum(plain, 0)])


class AllowlistIndex:
    """Known-benign files by sha256 and by geometry hash."""

    def __init__(self, entries: list[AllowEntry]) -> None:
        self._sha: dict[str, AllowEntry] = {}
        self._geometry: dict[str, AllowEntry] = {}
        for entry in entries:
            if entry.sha256:
                self._sha.setdefault(entry.sha256, entry)
            if entry.geometry_hash:
                self._geometry.setdefault(entry.geometry_hash, entry)

    def query(self, sha256: str | None, geometry_hash: str | None) -> AllowEntry | None:
        found = self._sha.get(sha256) if sha256 else None
        if found is None and geometry_hash:
            found = self._geometry.get(geometry_hash)
        return found


class _Publishers:
    """Per signature position: (publisher, key fingerprint) of the bank it came from, None when
    enrolled locally - read from the signature's record when a match needs it, not for every
    signature at build (a library of millions opens without parsing its records)."""

    def __init__(self, lib: SignatureLibrary) -> None:
        self.lib = lib

    def __getitem__(self, position: int) -> tuple[str, str] | None:
        return bank_of(self.lib.signatures[position].source)

    def __len__(self) -> int:
        return len(self.lib.signatures)


@dataclass
class Matcher:
    """Every index of one library, built once per loaded library and shared by all scans."""

    library: SignatureLibrary
    sha256: ExactIndex
    geometry: ExactIndex
    descriptors: NearDuplicateIndex
    patches: PatchIndex
    allowlist: AllowlistIndex
    publishers: _Publishers
    """Per signature position: (publisher, key fingerprint) of the bank it came from, None
    when enrolled locally - so every match says whose signature matched."""
    stretch: AffineIndex | None = field(default=None, repr=False)
    """Built on first use (:meth:`stretched`): most uploads settle before it is consulted."""

    @classmethod
    def build(cls, lib: SignatureLibrary) -> Matcher:
        return cls(
            library=lib,
            sha256=FileSha256Signal.build(lib),
            geometry=GeometryHashSignal.build(lib),
            descriptors=GlobalDescriptorSignal.build(lib),
            patches=LocalPatchSignal.build(lib),
            allowlist=lib.stored_allow_index() or AllowlistIndex(lib.allowlist),  # type: ignore[arg-type]
            publishers=_Publishers(lib),
        )

    def exact(self, sha256: str | None, geometry_hash: str | None, threshold: float) -> list[Match]:
        """Matches on the file's bytes, else on its exact triangles (the first kind that hits)."""
        for kind, index, key in (("sha256", self.sha256, sha256), ("geometry", self.geometry, geometry_hash)):
            found = index.query(key)
            if found:
                return [self._match(p, 0.0, threshold, None, kind, None) for p in found]
        return []

    def allowed(self, sha256: str | None, geometry_hash: str | None) -> AllowEntry | None:
        return self.allowlist.query(sha256, geometry_hash)

    def near(
        self,
        vectors: np.ndarray,
        bodies: list[int],
        k: int,
        radius: float,
        shares: Sequence[float] | None = None,
        patches: Callable[[], PatchCodes] | None = None,
        solidity: Callable[[int], float | None] | None = None,
    ) -> list[Match]:
        """Near-duplicate matches of descriptor rows (one per (signature, upload body)), nearest
        first. ``bodies`` names each row: -1 the whole file, -2 its loose triangles; ``shares``
        each row's share of the upload's surface (None: not known, every row may match a piece);
        ``patches`` computes the upload's patch codes, asked for only when a piece hit needs
        corroboration (:data:`PIECE_CONFIRM`; None: patches do not corroborate); ``solidity``
        gives a row's solidity (by row index), asked for only about a near piece hit
        (:data:`CONVEX_SOLIDITY`; None: not known, no row is taken for convex)."""
        best: dict[tuple[int, int | None], Match] = {}
        hits = self.descriptors.query(vectors, k=k, radius=radius)
        if shares is not None:  # a small body that looks like half a part is no evidence
            hits = [h for h in hits if piece_share(h.body) is None or shares[h.query_row] >= PIECE_UPLOAD_SHARE]
        if hits:  # second stage: a row nearer a plain benign shape than the signature is no evidence
            rows = sorted({h.query_row for h in hits})
            benign = dict(zip(rows, nearest_generic_distance(np.asarray(vectors)[rows]), strict=True))
            hits = [h for h in hits if confirms(h.distance, benign[h.query_row])]
            hits = self._distinct(np.asarray(vectors), hits)
            hits = self._confirm_pieces(np.asarray(vectors), hits, patches, solidity)
        for h in sorted(hits, key=lambda h: h.distance):
            body = bodies[h.query_row]
            body = None if body == -1 else body
            if (h.signature, body) in best:
                continue
            signature_body = None if h.body < 0 else h.body
            best[(h.signature, body)] = self._match(
                h.signature,
                round(h.distance, 5),
                round(h.threshold, 5),
                body,
                "near-duplicate",
                signature_body,
                piece_share(h.body),
            )
        return sorted(best.values(), key=lambda m: m.distance)

    def _distinct(self, vectors: np.ndarray, hits: list[Hit]) -> list[Hit]:
        """The hits no other known design competes with: no row of another design within
        ``distance / DISTINCT_RATIO`` of the upload's row, and fewer than :data:`CROWD_DESIGNS`
        other designs within :data:`CROWD_RATIO` x ``distance`` (rows of other signatures,
        whatever their own thresholds, that are not the hit row's shape: :data:`SAME_DESIGN`)."""
        if not hits:
            return hits
        index = self.descriptors
        rows = sorted({h.query_row for h in hits})
        radius = max(h.distance for h in hits) * max(1.0 / DISTINCT_RATIO, CROWD_RATIO)
        around = dict(zip(rows, index.neighbours(vectors[rows], radius), strict=True))
        kept = []
        for h in hits:
            candidates, distances = around[h.query_row]
            other = (index.signatures[candidates] != h.signature) & (distances <= CROWD_RATIO * h.distance)
            near = candidates[other]
            if not crowded(
                index.vectors[h.row],
                index.vectors[near],
                index.signatures[near],
                distances[other],
                h.distance,
                h.threshold,
            ):
                kept.append(h)
        return kept

    def _confirm_pieces(
        self,
        vectors: np.ndarray,
        hits: list[Hit],
        patches: Callable[[], PatchCodes] | None,
        solidity: Callable[[int], float | None] | None = None,
    ) -> list[Hit]:
        """The hits without the plane-cut piece hits that are no evidence (:data:`PIECE_CONFIRM`):
        a piece hit beyond ``PIECE_CONFIRM`` x its threshold, or from a convex upload row
        (:data:`CONVEX_SOLIDITY`), stands only when the upload is also near the signature another
        way (:meth:`_corroborated`)."""

        def convex(row: int) -> bool:
            value = None if solidity is None else solidity(row)
            return value is not None and value >= CONVEX_SOLIDITY

        doubtful = [
            i
            for i, h in enumerate(hits)
            if piece_share(h.body) is not None and (h.distance > PIECE_CONFIRM * h.threshold or convex(h.query_row))
        ]
        if not doubtful:
            return hits
        local: list[set[int]] = []  # signatures with some of their patches in the upload, computed once

        def patched(signature: int) -> bool:
            if patches is None or not len(self.patches):
                return False
            if not local:
                found = self.patches.query(patches(), min_matched=PIECE_PATCHES, min_share=MIN_SHARE)
                local.append({hit.signature for hit in found})
            return signature in local[0]

        refused = {i for i in doubtful if not self._corroborated(vectors, hits[i]) and not patched(hits[i].signature)}
        return [h for i, h in enumerate(hits) if i not in refused]

    def _corroborated(self, vectors: np.ndarray, hit: Hit) -> bool:
        """Is the upload near ``hit``'s signature other than through that piece, in descriptor
        space? The hit row within :data:`PIECE_WHOLE` of the signature's whole-file row when the
        piece keeps most of it (85%), or another upload row - another surface: not within
        ``SAME_DESIGN`` of the hit row - within :data:`PIECE_AGREE` x the threshold of any row of
        the same signature (the other pieces of a split or sliced copy)."""
        index = self.descriptors
        own = index.rows_of(hit.signature)
        own = own[np.asarray(index.bodies[own]) != AFFINE_ROW]
        q = np.asarray(vectors, dtype=np.float64)
        rows = np.asarray(index.vectors[own], dtype=np.float64)
        dist = np.sqrt(((q[:, None, :] - rows[None, :, :]) ** 2).sum(axis=2))  # upload rows x signature rows
        whole = np.asarray(index.bodies[own]) == -1
        most = (piece_share(hit.body) or 0.0) >= PIECE_MOST
        if most and whole.any() and dist[hit.query_row, whole].min() <= PIECE_WHOLE:
            return True
        apart = np.sqrt(((q - q[hit.query_row]) ** 2).sum(axis=1)) > SAME_DESIGN
        thresholds = np.asarray(index.thresholds[own], dtype=np.float64)
        usable = thresholds > 0
        if not apart.any() or not usable.any():
            return False
        return bool((dist[np.ix_(apart, usable)] <= PIECE_AGREE * thresholds[usable]).any())

    def local(self, codes: PatchCodes) -> list[Match]:
        """Signatures whose distinctive patches the upload reproduces (kind ``local``), the
        most covered first. Distance is the share of the signature *not* found, so the order
        and the threshold read as for the other kinds."""
        from scanner.features.patches import MIN_SHARE

        out = []
        for hit in self.patches.query(codes):
            m = self._match(hit.signature, round(1.0 - hit.share, 5), round(1.0 - MIN_SHARE, 5), None, "local", None,
                            round(hit.share, 4))  # fmt: skip
            out.append(dataclasses.replace(m, patches_matched=hit.matched, patches_total=hit.total))
        return out

    def stretched(
        self, plain: np.ndarray, affine: Callable[[], np.ndarray], head: Callable[[], np.ndarray] | None = None
    ) -> list[Match]:
        """Matches of a copy stretched along some axis (kind ``stretched``), nearest first, for
        an upload no row of which matched: ``plain`` is its whole-file row, ``affine`` computes
        its whitened row (called only when a signature is within both plain bands) and
        ``head`` its first columns, read first (:meth:`AffineIndex.query`)."""
        if self.stretch is None:
            self.stretch = StretchSignal.build(self.library)
        index = self.stretch
        out = []
        for h in index.query(plain, affine, rivals=CROWD_RATIO, head=head):
            at = np.asarray([r[2] for r in h.rivals], dtype=np.int64)
            # one design or two is read on the plain rows, as for every other kind: whitening folds
            # designs that differ only in proportions together
            contest = (index.plain[h.row], index.plain[at], index.positions[at], np.asarray([r[1] for r in h.rivals]))
            if not crowded(*contest, h.distance, h.threshold, one_rival=False):
                out.append(
                    self._match(h.position, round(h.distance, 5), round(h.threshold, 5), None, "stretched", None)
                )
        return out

    def _match(
        self,
        position: int,
        distance: float,
        threshold: float,
        body: int | None,
        kind: str,
        signature_body: int | None,
        signature_share: float | None = None,
    ) -> Match:
        s = self.library.signatures[position]
        publisher, key = self.publishers[position] or (None, None)
        return Match(s.id, s.category, distance, threshold, body, kind, signature_body, signature_share, publisher, key)
