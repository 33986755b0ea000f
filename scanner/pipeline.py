"""``scan_one``: the one place where loading, description, matching and policy meet.

Every front end (``scan``, ``watch``, ``serve``, ``survey``) calls this and only writes what
it returns. Order of decisions for each mesh of an upload:

1. unreadable -> ``unscannable`` with the loader's reason code;
2. allowlisted (file sha256 or geometry hash) -> ``clear``, saying so;
3. exact identity with a signature (file sha256, then canonical geometry hash) -> ``flag``;
4. near-duplicate of a signature, per body and for the whole file, within the signature
   row's own threshold (set at enrolment from its distance to benign reference shapes) and
   never above the configured one -> ``flag``, with every matching signature as evidence;
5. no signature match, and a component model is loaded: the calibrated probability of each
   category (``scores``); when the probability that the file is a component of any category
   (1 - P(benign)) reaches the review threshold -> ``review``, with the most likely category
   and the features that raised the score most, in words;
6. otherwise ``clear`` (saying what the classifier scored, when there is one).

The descriptor is computed at most once per mesh and shared by matching and the classifier.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from scanner._version import __version__
from scanner.context import NoLibraryError, ScanContext
from scanner.errors import CORRUPT, LIMIT_MEMORY, UnreadableInput
from scanner.loading import iter_blob_meshes
from scanner.mesh import Mesh
from scanner.sources import blob_sha256, open_blob
from scanner.util import utc_now
from scanner.verdict import CLEAR, FLAG, REVIEW, UNSCANNABLE, Match, Verdict

if TYPE_CHECKING:
    from scanner.classify.explain import Assessment
    from scanner.features import Descriptor


def scan_one(source: str | os.PathLike[str], context: ScanContext | None = None) -> list[Verdict]:
    """Verdicts for one upload: one per mesh file, or one per archive member."""
    context = context or ScanContext()
    if context.library is None:
        raise NoLibraryError("no signature library loaded: scanning without one would call everything clear")
    if len(context.library) == 0 and context.model is None:
        raise NoLibraryError("the signature library is empty and no classifier is loaded: nothing could flag")
    path = os.fspath(source)
    limits = context.settings.limits
    try:
        blob = open_blob(path, limits.max_file_bytes)
    except UnreadableInput as err:
        return [unscannable_verdict(path, context, err)]
    sha = blob_sha256(blob)
    verdicts = []
    members: list[tuple[Verdict, Mesh]] = []
    for result in iter_blob_meshes(blob, limits, path):
        base = Verdict(
            path=path,
            member=result.member,
            verdict=UNSCANNABLE,
            sha256=sha,
            format=result.format or None,
            scanner_version=__version__,
            library_version=context.library_version,
            model_version=context.model_version,
            scanned_at=utc_now(),
        )
        if result.error is not None:
            verdicts.append(_unscannable(base, result.error))
            continue
        verdicts.append(_judge_guarded(base, result.mesh, context, whole_file=result.member is None))
        if verdicts[-1].verdict != UNSCANNABLE:
            members.append((verdicts[-1], result.mesh))
    _judge_members_together(path, members, context)
    return verdicts


def _without_walls(meshes: list[Mesh], path: str) -> Mesh:
    """The members joined, minus the walls between them: where a part was cut into pieces,
    each piece carries a cut face, which the whole never had (:func:`scanner.mesh.shared_walls`)."""
    from scanner.loading import join
    from scanner.mesh import shared_walls

    joined = join(meshes, path)
    owner = np.repeat(np.arange(len(meshes)), [m.triangle_count for m in meshes])
    wall = shared_walls(joined.corners32, owner)
    if not wall.any() or wall.all():
        return joined
    return Mesh(vertices=joined.corners32[~wall].reshape(-1, 3), source=path, format="archive")


def _judge_guarded(base: Verdict, mesh: Mesh, context: ScanContext, whole_file: bool) -> Verdict:
    try:
        return _judge(base, mesh, context, whole_file=whole_file)
    except UnreadableInput as err:
        return _unscannable(base, err)
    except MemoryError:
        return _unscannable(base, UnreadableInput(LIMIT_MEMORY, "ran out of memory while describing"))
    except (ValueError, FloatingPointError) as exc:
        return _unscannable(base, UnreadableInput(CORRUPT, f"cannot describe: {exc}"))


def _judge_members_together(path: str, members: list[tuple[Verdict, Mesh]], context: ScanContext) -> None:
    """Match an archive's mesh members as one upload when none flagged on its own.

    Why: a part cut into pieces, one piece per member, reassembles in the slicer; each piece
    alone is far from the signature, the pieces together are not. Members that flag alone
    keep their own evidence; the others are flagged with the joint evidence, naming the
    members. Bounded by the triangle limit, so joining cannot cost more than one large file."""
    if any(v.verdict == FLAG for v, _ in members):
        return
    # allowlisted members were judged benign by a person; the rest are read together
    members = [(v, m) for v, m in members if context.matcher.allowed(None, v.geometry_hash) is None]
    if len(members) < 2:
        return
    if sum(m.triangle_count for _, m in members) > context.settings.limits.max_triangles:
        return
    joint = Verdict(path=path, member=None, verdict=UNSCANNABLE, scanner_version=__version__)
    matching_only = ScanContext(settings=context.settings, library=context.library, model=None)
    matching_only._matcher = context.matcher  # the same library: never rebuild its indexes
    joint = _judge_guarded(joint, _without_walls([m for _, m in members], path), matching_only, whole_file=False)
    if joint.verdict != FLAG:
        return
    names = ", ".join(v.member or "?" for v, _ in members)
    subject = f"this member matches nothing alone, but the {len(members)} mesh members of the upload together ({names})"
    for v, _ in members:
        v.verdict, v.category, v.matches = FLAG, joint.category, joint.matches
        v.explanation = _explain(joint.matches[0], len({m.signature_id for m in joint.matches}), subject)


def unscannable_verdict(path: str, context: ScanContext, err: UnreadableInput) -> Verdict:
    """The verdict for an upload that could not be scanned at all (time, memory, crash)."""
    base = Verdict(
        path=path,
        member=None,
        verdict=UNSCANNABLE,
        scanner_version=__version__,
        library_version=context.library_version,
        model_version=context.model_version,
        scanned_at=utc_now(),
    )
    return _unscannable(base, err)


def _unscannable(v: Verdict, err: UnreadableInput) -> Verdict:
    v.verdict, v.reason, v.detail = UNSCANNABLE, err.reason, err.detail
    v.explanation = (
        f"could not be read ({err.reason}): {err.detail}" if err.detail else f"could not be read ({err.reason})"
    )
    return v


class _Shape:
    """The mesh's descriptor, computed on first use and then shared by matching and the
    classifier (it is the expensive part of a scan)."""

    def __init__(self, mesh: Mesh, max_bodies: int) -> None:
        self.mesh = mesh.surface()
        """Without degenerate and repeated triangles: what every descriptor reads."""
        self.max_bodies = max_bodies
        self._desc: Descriptor | None = None
        self._whole: np.ndarray | None = None

    def descriptor(self) -> Descriptor:
        if self._desc is None:
            from scanner.features import describe

            self._desc = describe(self.mesh, self.max_bodies)
            self._whole = self._desc.whole
        return self._desc

    def whole(self) -> np.ndarray:
        if self._whole is None:
            from scanner.errors import EMPTY
            from scanner.features import describe_triangles

            if self.mesh.triangle_count == 0:
                raise UnreadableInput(EMPTY, "no triangle with any area")
            self._whole = describe_triangles(self.mesh.corners32, self.mesh.corner_keys)
        return self._whole


def _judge(v: Verdict, mesh: Mesh, context: ScanContext, whole_file: bool) -> Verdict:
    v.geometry_hash = mesh.geometry_hash
    v.triangles = mesh.triangle_count
    shape = _Shape(mesh, context.settings.limits.max_bodies)
    v.bodies = shape.mesh.body_count
    file_sha = v.sha256 if whole_file else None
    threshold = context.settings.match.distance_threshold
    matcher = context.matcher
    matches = matcher.exact(file_sha, v.geometry_hash, threshold)
    allowed = matcher.allowed(file_sha, v.geometry_hash)
    if allowed is not None and not matches:
        # an exact signature match beats the allowlist: a merged or mistaken allowlist entry
        # must not silence a known file; it only suppresses near-duplicate and classifier hits
        v.verdict = CLEAR
        v.explanation = "on the allowlist of known-benign files" + (f" ({allowed.note})" if allowed.note else "")
        return v
    if len(matcher.library) == 0:
        return _classify(v, shape, context, "the signature library is empty")
    v.distance_threshold = threshold
    if not matches:
        vectors, bodies = shape.descriptor().rows()
        match = context.settings.match
        matches = matcher.near(vectors, bodies, k=match.neighbours, radius=match.distance_threshold)
    if not matches:
        return _classify(
            v,
            shape,
            context,
            f"no signature within its threshold (at most {threshold:g}) of the file or any of its bodies",
        )
    v.verdict = FLAG
    v.matches = matches
    best = matches[0]
    v.category = best.category
    share = None
    if best.kind == "near-duplicate" and best.body is not None:
        desc = shape.descriptor()
        shares = dict(zip(desc.body_ids, desc.body_shares or [], strict=False))
        share = shares.get(best.body)
    v.explanation = _explain(best, len({m.signature_id for m in matches}), share=share)
    if allowed is not None:
        v.explanation += "; it is also on the allowlist, but an exact signature match wins over an allowlist entry"
    if context.model is not None:  # the classifier's view is evidence too
        from scanner.classify.explain import assess
        from scanner.classify.features import feature_row

        _score(v, assess(context.model, feature_row(shape.mesh, shape.whole())), context)
    return v


def _score(v: Verdict, a: Assessment, context: ScanContext) -> None:
    """Record the classifier's numbers as fields: ``scores``, ``review_score`` (1 - P(benign),
    rounded like ``scores``, so it is what ``scores`` says) and the threshold in force."""
    from scanner.classify.model import BENIGN

    v.scores = a.scores
    v.review_score = round(1.0 - a.scores[BENIGN], 4)
    v.review_threshold = context.review_threshold


def _classify(v: Verdict, shape: _Shape, context: ScanContext, no_match: str) -> Verdict:
    """No signature matched: the classifier decides between ``review`` and ``clear``."""
    if context.model is None:
        v.verdict = CLEAR
        v.explanation = no_match
        return v
    from scanner.classify.explain import assess, explanation, reasons
    from scanner.classify.features import feature_row

    threshold = context.review_threshold
    row = feature_row(shape.mesh, shape.whole())
    a = assess(context.model, row)
    _score(v, a, context)
    if v.review_score >= threshold:  # the stored number decides, so the record is self-consistent
        why = reasons(context.model, row, top=context.settings.classify.explain_top)
        v.verdict = REVIEW
        v.category = a.category
        v.explanation = f"review as {a.category.replace('_', ' ')}: {no_match}, but " + explanation(a, why, threshold)
        return v
    v.verdict = CLEAR
    v.explanation = (
        f"{no_match}; the classifier gives {a.probability:.2f} that it is a component (most likely "
        f"{a.category.replace('_', ' ')}), below the review threshold {threshold:.2f}"
    )
    return v


def _where(body: int | None, share: float | None = None) -> str:
    from scanner.features import LOOSE_ROW, WALLS_ROW

    if body is None:
        return "the whole file"
    if body == WALLS_ROW:
        return "the whole file without the walls between its pieces (faces where it was cut and put back together)"
    part = f" ({share:.0%} of the upload's surface)" if share is not None and share < 0.995 else ""
    if body == LOOSE_ROW:
        return f"its loose triangles (bodies too small to enclose a volume), taken together{part}"
    return f"body {body}{part}"


def _explain(best: Match, n_signatures: int, subject: str = "the upload", share: float | None = None) -> str:
    where = _where(best.body, share)
    if best.kind == "sha256":
        what = f"is byte-for-byte the known file {best.signature_id}"
    elif best.kind == "geometry":
        what = f"has exactly the triangles of known file {best.signature_id}"
    else:
        of = (
            f"{best.signature_share:.0%} of known file {best.signature_id} (a plane-cut piece of it)"
            if best.signature_share is not None
            else f"known file {best.signature_id}"
        )
        what = (
            f"{where} is a near-duplicate of {of}"
            + ("" if best.signature_body is None else f" (its body {best.signature_body})")
            + f": shape distance {best.distance:.4f} <= threshold {best.threshold:g}"
        )
    more = f"; {n_signatures - 1} other signature(s) also match" if n_signatures > 1 else ""
    return f"flagged as {best.category.replace('_', ' ')}: {subject} {what}{more}"
