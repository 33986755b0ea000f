"""Verdicts and their evidence: the record every front end writes (the JSON contract of
DESIGN.md). Nothing here decides: :mod:`scanner.policy` does (an ordered tuple of rules), and
:mod:`scanner.pipeline` builds each record once from the decision."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any

from scanner.errors import NOT_A_MODEL

FLAG, REVIEW, CLEAR, UNSCANNABLE = "flag", "review", "clear", "unscannable"
SCHEMA_VERSION = "1"
"""The record's contract: ``scanner/data/verdict.schema.json``; every output is tested against it."""
VERDICTS = (FLAG, REVIEW, CLEAR, UNSCANNABLE)


@dataclass(frozen=True)
class Match:
    """Evidence that an upload is (a near-duplicate of) a known file."""

    signature_id: str
    category: str
    distance: float
    threshold: float
    body: int | None
    """Body of the upload that matched (None: the whole file; -2: its loose triangles, i.e.
    all bodies too small to enclose a volume, pooled; -3: the whole file without the walls
    between pieces cut and put back together); see ``kind``."""
    kind: str = "near-duplicate"
    """``sha256`` (same bytes), ``geometry`` (same triangles), ``near-duplicate`` (a global
    descriptor row), ``stretched`` (the whole file, with a stretch along some axis undone) or
    ``local`` (enough of the signature's distinctive triangle patches)."""
    signature_body: int | None = None
    signature_share: float | None = None
    """Share of the signature's surface the matched row describes when it is a plane-cut piece
    of it (0.7: the upload holds a copy of 70% of the known file); None: all of it or a body."""
    publisher: str | None = None
    """Who published the matched signature when it came from a subscribed bank
    (``signatures update``): the publisher's name; None for a signature enrolled locally."""
    publisher_key: str | None = None
    """The fingerprint of the key that signed that bank's bundle (the publisher's identity;
    names are not unique); None for a signature enrolled locally."""
    patches_matched: int | None = None
    """Kind ``local``: distinct distinctive patches of the signature the upload reproduced at
    one scale (:mod:`scanner.features.patches`); ``signature_share`` is their share of its area."""
    patches_total: int | None = None
    """Kind ``local``: distinctive patches the signature has."""


_LOCAL_ONLY = ("patches_matched", "patches_total")
_MATCH_FIELDS = tuple(f.name for f in fields(Match))


def match_dict(match: Match) -> dict[str, Any]:
    """A match as JSON; the fields only a ``local`` match has are left out of the others, so
    every other verdict stays byte for byte what it was before local matching existed.

    Field by field rather than ``dataclasses.asdict``: every field of a match is a number, a
    string or None, so the dict is the same, without asdict's recursion and deep copies
    (measured: ``Verdict.to_dict`` of a clear small file 31 -> 1.7 us; a batch scan converts
    each verdict in the worker and again in the parent)."""
    d = {name: getattr(match, name) for name in _MATCH_FIELDS}
    for name in _LOCAL_ONLY:
        if d[name] is None:
            del d[name]
    return d


@dataclass
class Verdict:
    path: str
    member: str | None
    verdict: str
    category: str | None = None
    reason: str | None = None
    sha256: str | None = None
    geometry_hash: str | None = None
    bodies: int | None = None
    triangles: int | None = None
    matches: list[Match] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    explanation: str = ""
    scanner_version: str = ""
    library_version: str | None = None
    model_version: str | None = None
    scanned_at: str = ""
    format: str | None = None
    detail: str | None = None
    copied_from: str | None = None
    """Set when the verdicts were copied from identical content already scanned at this path."""
    schema_version: str = SCHEMA_VERSION
    """Version of the record's JSON Schema (``scanner/data/verdict.schema.json``)."""
    review_score: float | None = None
    """1 - P(benign), rounded like ``scores``: the number compared with ``review_threshold``.
    Set whenever a classifier scored the file (flag, review and clear alike), so consumers
    never recompute it or read it out of ``explanation``."""
    review_threshold: float | None = None
    """The review threshold in force when the classifier scored the file (None: no classifier
    consulted). ``review`` iff ``review_score >= review_threshold`` for unmatched files."""
    review_body: dict[str, Any] | None = None
    """Which body ``review_score`` is of, when it is a body's scored alone rather than the whole
    file's: ``{"body": body number, "share": its share of the surface area}``; None: the whole
    file (or no classifier). The review score is the highest of the whole file's and of each
    body's that carries a meaningful share (:mod:`scanner.classify.bodies`)."""
    distance_threshold: float | None = None
    """The global near-duplicate distance cap (``[match] distance_threshold``) in force when the
    file was matched against a non-empty library; each match also carries its own, possibly
    tighter, ``threshold``. None when no matching ran (allowlisted, empty library, unscannable)."""

    @property
    def preview(self) -> bytes | None:
        """The PNG preview the scan worker rendered (:mod:`scanner.preview`), carried beside
        the record to the results store. Deliberately not a field: it is never in
        :meth:`to_dict`, so no output, sidecar or stored record holds it, and the verdict
        contract (``scanner/data/verdict.schema.json``) does not change."""
        return self.__dict__.get("_preview")

    @preview.setter
    def preview(self, png: bytes | None) -> None:
        self.__dict__["_preview"] = png

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON types, the fields in their declared order (what
        ``dataclasses.asdict`` gave: its test compares the two). The containers are copies
        (``scores``, ``review_body``), as asdict's were; every other field is a number, a
        string or None."""
        d = {name: getattr(self, name) for name in _VERDICT_FIELDS}
        d["matches"] = [match_dict(m) for m in self.matches]
        d["scores"] = dict(self.scores)
        if self.review_body is not None:
            d["review_body"] = copy.deepcopy(self.review_body)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        """Rebuild from ``to_dict()`` output (JSON from a worker process, or a record stored
        before ``schema_version``, ``review_score``, ``review_threshold``, ``review_body`` or
        ``distance_threshold`` existed: those take their defaults)."""
        d = dict(d)
        d["matches"] = [Match(**m) for m in d.get("matches", [])]
        return cls(**d)

    @property
    def needs_attention(self) -> bool:
        return self.verdict in (FLAG, REVIEW)

    @property
    def is_error(self) -> bool:
        """Unscanned in a way worth an error exit.

        Only an archive member recognised as not a model (a README, a texture, an MTL beside
        the model) is not: a model format meshscan cannot read (``unsupported-format``) is an
        error wherever it is, and so is an upload in which nothing is a model - see
        :func:`scanner.formats.read_blob`.
        """
        if self.verdict != UNSCANNABLE:
            return False
        return not (self.reason == NOT_A_MODEL and self.member is not None)


_VERDICT_FIELDS = tuple(f.name for f in fields(Verdict))
