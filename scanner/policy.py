"""The decision policy: an ordered tuple of rules, each a small function of one mesh's facts.

A rule reads a :class:`Case` (the file's hash, the mesh's :class:`~scanner.shape.Shape`, the
scan's library and model) and returns a :class:`Decision`, or None to pass the mesh on to the
next rule. :func:`decide` returns the first decision; the last rule always decides. In order
(:data:`RULES`):

1. ``exact_match``: the file's bytes (sha256) or its exact triangles (geometry hash) are a
   signature's -> ``flag``; this beats the allowlist, which is said in the explanation;
2. ``allowlisted``: on the allowlist (file sha256 or geometry hash) -> ``clear``, saying so;
3. ``near_duplicate``: a descriptor row (whole file, body, loose triangles, or the surface
   without its walls) within a signature row's own threshold, never above the configured one
   -> ``flag``, with every matching signature as evidence (nothing to look in when the library
   is empty);
4. ``classifier_review``: no signature matched and the component model's 1 - P(benign) reaches
   the review threshold -> ``review`` as the most likely category, with the features that
   raised the score most, in words. The score is the highest of the whole file's and of each
   body's scored alone (:mod:`scanner.classify.bodies`), so decoy bodies cannot dilute a part;
   the explanation names the body that raised it;
5. ``clear``: otherwise, saying what the classifier scored when there is one.

Whenever a classifier is loaded its numbers are part of the decision (``flag`` included):
they are evidence too. Every fact is computed on first use and once (:class:`Case` and
:class:`~scanner.shape.Shape`), so the rules stay small and their order alone decides what
is computed: an exact or allowlisted file is never described.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from scanner.classify.bodies import BodyRow, share_words
from scanner.classify.explain import Assessment, assess_rows, explanation, reasons
from scanner.classify.model import BENIGN
from scanner.context import ScanContext
from scanner.errors import UnreadableInput
from scanner.features import LOOSE_ROW, WALLS_ROW
from scanner.shape import Shape
from scanner.verdict import CLEAR, FLAG, REVIEW, UNSCANNABLE, Match

if TYPE_CHECKING:
    from scanner.library import AllowEntry
    from scanner.matching import Matcher


@dataclass(frozen=True)
class Score:
    """The classifier's numbers as the verdict records them."""

    scores: dict[str, float]
    review_score: float
    """1 - P(benign), rounded like ``scores``, so it is what ``scores`` says."""
    review_threshold: float | None
    """The threshold in force when the classifier scored the file."""
    body: int | None = None
    """The body whose score (scored alone) this is; None: the whole file's."""
    body_share: float | None = None
    """That body's share of the upload's surface area."""


@dataclass(frozen=True)
class Decision:
    """What the policy concluded about one mesh: the verdict's decided fields, and nothing
    about where the mesh came from (the pipeline adds that when it builds the verdict)."""

    verdict: str
    explanation: str
    category: str | None = None
    matches: tuple[Match, ...] = ()
    score: Score | None = None
    distance_threshold: float | None = None
    """The global near-duplicate cap when matching ran against a non-empty library."""
    reason: str | None = None
    detail: str | None = None


def unreadable(err: UnreadableInput, distance_threshold: float | None = None) -> Decision:
    """``unscannable`` with the reader's (or the describer's) reason code."""
    text = f"could not be read ({err.reason}): {err.detail}" if err.detail else f"could not be read ({err.reason})"
    return Decision(UNSCANNABLE, text, reason=err.reason, detail=err.detail, distance_threshold=distance_threshold)


@dataclass(frozen=True)
class Case:
    """The facts about one mesh that the rules read, each computed on first use."""

    file_sha: str | None
    """The upload's sha256 when the mesh is the whole file (None for an archive member)."""
    geometry_hash: str
    shape: Shape
    context: ScanContext
    classifier: bool = True
    """False: signature matching only, even when the context has a model."""

    @property
    def matcher(self) -> Matcher:
        return self.context.matcher

    @property
    def library_empty(self) -> bool:
        return len(self.matcher.library) == 0

    @property
    def threshold(self) -> float:
        return self.context.settings.match.distance_threshold

    @property
    def distance_threshold(self) -> float | None:
        """The cap the verdict records: None when there was no library to match against."""
        return None if self.library_empty else self.threshold

    def prefetch(self) -> None:
        """Once describing is certain: have a large surface's descriptor, patch codes and
        classifier row computed on two threads where a core is idle
        (:meth:`scanner.shape.Shape.prefetch`), those the rules can read - the patch codes
        whenever the library has patches (a file that flags as a near-duplicate then had
        them computed for nothing, on the otherwise idle core's share)."""
        matching = not self.library_empty
        self.shape.prefetch(
            descriptor=matching, patches=matching and len(self.matcher.patches) > 0, classifier=self.has_model
        )

    @cached_property
    def exact(self) -> list[Match]:
        return self.matcher.exact(self.file_sha, self.geometry_hash, self.threshold)

    @cached_property
    def allowed(self) -> AllowEntry | None:
        return self.matcher.allowed(self.file_sha, self.geometry_hash)

    @cached_property
    def near_candidates(self) -> list[Match]:
        """Near-duplicate (else stretched) matches of the descriptor rows, before :attr:`near`
        asks whether the surface can be a part at all."""
        if self.library_empty:
            return []
        self.prefetch()
        vectors, bodies = self.shape.rows
        match = self.context.settings.match
        shares = self.shape.descriptor.row_shares()
        found = self.matcher.near(vectors, bodies, k=match.neighbours, radius=match.distance_threshold, shares=shares,
                                  patches=lambda: self.shape.patch_codes,
                                  solidity=lambda row: self.shape.solidity(bodies[row]))  # fmt: skip
        # no row matched: is it a copy stretched along some axis? (scanner.features.affine)
        return found or self.matcher.stretched(
            self.shape.whole, lambda: self.shape.affine, head=lambda: self.shape.affine_head
        )

    @cached_property
    def flat_surface(self) -> bool:
        return flat(self.shape.surface.corners32)

    @cached_property
    def near(self) -> list[Match]:
        """:attr:`near_candidates`, none for a surface in one plane (:data:`FLAT`)."""
        return [] if self.near_candidates and self.flat_surface else self.near_candidates

    @cached_property
    def local(self) -> list[Match]:
        if self.library_empty or not len(self.matcher.patches):
            return []
        return self.matcher.local(self.shape.patch_codes)

    @property
    def has_model(self) -> bool:
        return self.classifier and self.context.model is not None

    @cached_property
    def assessments(self) -> list[tuple[BodyRow | None, Assessment]]:
        """The whole file's assessment (None: no body), then each body's scored alone."""
        assert self.context.model is not None
        self.prefetch()
        parts = self.shape.body_rows
        rows = np.stack([self.shape.classifier_row, *(p.row for p in parts)])
        return list(zip([None, *parts], assess_rows(self.context.model, rows), strict=True))

    @cached_property
    def top(self) -> tuple[BodyRow | None, Assessment]:
        """The highest-scoring of :attr:`assessments` (the whole file wins a tie)."""
        best = 0
        for i, (_, a) in enumerate(self.assessments):
            if a.probability > self.assessments[best][1].probability:
                best = i
        return self.assessments[best]

    @property
    def assessment(self) -> Assessment:
        """The assessment the decision reports: the highest over the file and its bodies."""
        return self.top[1]

    @cached_property
    def score(self) -> Score | None:
        """The classifier's numbers (None: no classifier consulted)."""
        if not self.has_model:
            return None
        part, a = self.top
        return Score(
            a.scores,
            round(1.0 - a.scores[BENIGN], 4),
            self.context.review_threshold,
            None if part is None else part.body,
            None if part is None else round(part.share, 4),
        )

    @property
    def scored_what(self) -> str:
        """Which surface the reported score is of, for an explanation ("" for a file with no
        body scored alone)."""
        part = self.top[0]
        n = len(self.assessments) - 1
        if part is None:
            return f"the whole file scores highest (of the file and its {n} bodies scored alone): " if n else ""
        return (
            f"body {part.body} of its {self.shape.bodies} bodies ({share_words(part.share)} of the surface area), "
            f"scored on its own, is the highest of the whole file and the {n} bodies scored alone: "
        )

    @property
    def no_match(self) -> str:
        if self.library_empty:
            return "the signature library is empty"
        if self.near_candidates and self.flat_surface:
            n = len(self.near_candidates)
            return (f"its surface lies in one plane, which encloses nothing a printer could build, so the "
                    f"{n} signature(s) within their threshold of it are no evidence")  # fmt: skip
        return f"no signature within its threshold (at most {self.threshold:g}) of the file or any of its bodies"


FLAT = 1e-9
"""A surface whose thinnest spread is below this share of its widest (second moments of its
corners) lies in one plane: it encloses nothing a printer could build, so its descriptor rows
are no evidence of a part. One triangle of a real test file sat 0.008 from a thin
frame proxy's whole-file row among 10,000 proxy signatures (README, "Thresholds")."""


def flat(corners: np.ndarray) -> bool:
    """Do the points ``corners`` (N, 3) lie in one plane (:data:`FLAT`)?"""
    points = np.asarray(corners, dtype=np.float64).reshape(-1, 3)
    if len(points) < 4:
        return True
    centred = points - points.mean(axis=0)
    spread = np.linalg.eigvalsh(centred.T @ centred)
    return bool(spread[0] <= FLAT * spread[-1])


def exact_match(case: Case) -> Decision | None:
    if not case.exact:
        return None
    decision = _flag(case, case.exact)
    if case.allowed is None:
        return decision
    # an exact signature match beats the allowlist: a merged or mistaken allowlist entry
    # must not silence a known file; it only suppresses near-duplicate and classifier hits
    also = "; it is also on the allowlist, but an exact signature match wins over an allowlist entry"
    return dataclasses.replace(decision, explanation=decision.explanation + also)


def allowlisted(case: Case) -> Decision | None:
    if case.allowed is None:
        return None
    note = f" ({case.allowed.note})" if case.allowed.note else ""
    return Decision(CLEAR, "on the allowlist of known-benign files" + note)


def near_duplicate(case: Case) -> Decision | None:
    return _flag(case, case.near) if case.near else None


def local_patches(case: Case) -> Decision | None:
    """After the global descriptor: a cut, fused, split or decoyed copy is far from every
    descriptor row but keeps most of the part's triangles exactly."""
    return _flag(case, case.local) if case.local else None


def classifier_review(case: Case) -> Decision | None:
    score = case.score
    if score is None or score.review_threshold is None or score.review_score < score.review_threshold:
        return None  # the stored number decides, so the record is self-consistent
    (part, a), model, threshold = case.top, case.context.model, score.review_threshold
    row = case.shape.classifier_row if part is None else part.row
    why = reasons(model, row, top=case.context.settings.classify.explain_top)
    text = f"review as {a.category.replace('_', ' ')}: {case.no_match}, but {case.scored_what}"
    text += explanation(a, why, threshold)
    return Decision(REVIEW, text, a.category, score=score, distance_threshold=case.distance_threshold)


def clear(case: Case) -> Decision:
    score = case.score
    if score is None:
        return Decision(CLEAR, case.no_match, distance_threshold=case.distance_threshold)
    a = case.assessment
    text = (
        f"{case.no_match}; {case.scored_what}the classifier gives {a.probability:.2f} that it is a component "
        f"(most likely {a.category.replace('_', ' ')}), below the review threshold {score.review_threshold:.2f}"
    )
    return Decision(CLEAR, text, score=score, distance_threshold=case.distance_threshold)


Rule = Callable[[Case], Decision | None]

RULES: tuple[Rule, ...] = (exact_match, allowlisted, near_duplicate, local_patches, classifier_review, clear)
"""The policy, in order: the first rule that returns a decision decides."""


def decide(case: Case, rules: tuple[Rule, ...] = RULES) -> Decision:
    """The first decision of ``rules``; raises :class:`UnreadableInput` (or ``MemoryError``,
    ``ValueError``) when a fact a rule needs cannot be computed - the pipeline turns that
    into ``unscannable``."""
    for rule in rules:
        decision = rule(case)
        if decision is not None:
            return decision
    raise AssertionError("the last rule always decides")


def _flag(case: Case, matches: list[Match]) -> Decision:
    best = matches[0]
    share = case.shape.body_share(best.body) if best.kind == "near-duplicate" else None
    text = flag_explanation(best, len({m.signature_id for m in matches}), share=share)
    return Decision(FLAG, text, best.category, tuple(matches), case.score, case.distance_threshold)


def _where(body: int | None, share: float | None = None) -> str:
    if body is None:
        return "the whole file"
    if body == WALLS_ROW:
        return "the whole file without the walls between its pieces (faces where it was cut and put back together)"
    part = f" ({share:.0%} of the upload's surface)" if share is not None and share < 0.995 else ""
    if body == LOOSE_ROW:
        return f"its loose triangles (bodies too small to enclose a volume), taken together{part}"
    return f"body {body}{part}"


def _published(match: Match) -> str:
    """Whose signature it is, when it came from a subscribed publisher's bank (nothing for a
    signature enrolled locally: those sentences stay as they always were)."""
    return f" (published by {match.publisher})" if match.publisher else ""


def flag_explanation(best: Match, n_signatures: int, subject: str = "the upload", share: float | None = None) -> str:
    """The ``flag`` sentence: which known file, how (bytes, triangles or shape distance), where
    in the upload (``subject``: the upload, or an archive's members read together)."""
    where = _where(best.body, share)
    known = best.signature_id + _published(best)
    if best.kind == "sha256":
        what = f"is byte-for-byte the known file {known}"
    elif best.kind == "local":
        what = (
            f"reproduces {best.signature_share:.0%} of the distinctive surface of known file {known}: "
            f"{best.patches_matched} of its {best.patches_total} distinctive triangle patches, unchanged and at one "
            "scale (a copy cut, fused to other geometry, split into pieces or hidden among decoys keeps them)"
        )
    elif best.kind == "stretched":
        what = (
            f"{where} is a stretched copy of known file {known}: with the stretch undone (both surfaces "
            f"whitened), shape distance {best.distance:.4f} <= threshold {best.threshold:g}"
        )
    elif best.kind == "geometry":
        what = f"has exactly the triangles of known file {known}"
    else:
        of = (
            f"{best.signature_share:.0%} of known file {known} (a plane-cut piece of it)"
            if best.signature_share is not None
            else f"known file {known}"
        )
        what = (
            f"{where} is a near-duplicate of {of}"
            + ("" if best.signature_body is None else f" (its body {best.signature_body})")
            + f": shape distance {best.distance:.4f} <= threshold {best.threshold:g}"
        )
    more = f"; {n_signatures - 1} other signature(s) also match" if n_signatures > 1 else ""
    return f"flagged as {best.category.replace('_', ' ')}: {subject} {what}{more}"
