"""``scan_one``: one upload through the stages of a scan, each handing a value to the next.

1. :func:`scanner.loading.open_upload` -> :class:`~scanner.loading.OpenedUpload`: the upload
   opened once, its sha256 and its meshes (one for a mesh file, one per archive member);
2. :meth:`scanner.shape.Shape.of` -> one :class:`~scanner.shape.Shape` per mesh: its
   surface, descriptor rows and classifier rows (the whole file's and its sizeable bodies'),
   each computed at most once;
3. :func:`scanner.policy.decide` -> one :class:`~scanner.policy.Decision` per mesh: the first
   of the policy's ordered rules that decides (exact match, allowlist, near-duplicate,
   classifier review, clear); a mesh that cannot be described is ``unscannable`` with the
   reason code;
4. an archive's mesh members read together when none flagged alone (a part cut into pieces,
   one piece per member): the joint flag revises the members' decisions;
5. :func:`_verdict` -> one :class:`~scanner.verdict.Verdict` per mesh, built once from its
   decision, the upload's hashes and the scan's versions;
6. with ``settings.previews`` (a run that records to a results database), one PNG preview
   per upload that needs a person (:func:`_attach_preview`), drawn from the mesh already
   loaded and carried beside its verdict (:attr:`Verdict.preview`), never in the record.

Every front end (``scan``, ``watch``, ``serve``, ``survey``) calls this and only writes what
it returns. (Verdicts stay a mutable dataclass because front ends relabel them afterwards -
``path`` for an upload sent as bytes, the versions a guarded child reports - but nothing in
the scan itself assigns a verdict's field after it is built.)
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from scanner._version import __version__
from scanner.context import NoLibraryError, ScanContext
from scanner.errors import CORRUPT, LIMIT_MEMORY, UnreadableInput
from scanner.formats import MemberResult
from scanner.loading import join, open_upload
from scanner.mesh import Mesh, shared_walls
from scanner.policy import Case, Decision, Score, decide, flag_explanation, unreadable
from scanner.shape import Shape
from scanner.util import utc_now
from scanner.verdict import FLAG, REVIEW, UNSCANNABLE, Match, Verdict

__all__ = ["NoLibraryError", "ScanContext", "judge", "scan_one", "unscannable_verdict"]


@dataclass(frozen=True)
class Identity:
    """What is known of a mesh before any decision: its exact geometry and size. A mesh that
    cannot be described keeps what was measured before the failure."""

    geometry_hash: str | None = None
    triangles: int | None = None
    bodies: int | None = None


@dataclass(frozen=True)
class _Judged:
    """One mesh (or unreadable member) of an upload with its decision: a verdict's makings."""

    result: MemberResult
    scanned_at: str
    decision: Decision
    identity: Identity = Identity()
    joint: bool = False
    """Flagged with the evidence of the archive's members read together: its matches' body
    numbers are bodies of the joined mesh, not of this member."""


def scan_one(source: str | os.PathLike[str], context: ScanContext | None = None) -> list[Verdict]:
    """Verdicts for one upload: one per mesh file, or one per archive member."""
    context = context or ScanContext()
    if context.library is None:
        raise NoLibraryError("no signature library loaded: scanning without one would call everything clear")
    if len(context.library) == 0 and context.model is None:
        raise NoLibraryError("the signature library is empty and no classifier is loaded: nothing could flag")
    path = os.fspath(source)
    try:
        upload = open_upload(path, context.settings.limits)
    except UnreadableInput as err:
        return [unscannable_verdict(path, context, err)]
    sha = upload.sha256
    judged = [_judge_member(result, sha, context) for result in upload.members()]
    judged = _members_together(path, judged, context)
    verdicts = [_verdict(path, sha, j, context) for j in judged]
    if context.settings.previews:
        _attach_preview(judged, verdicts)
    return verdicts


def _attach_preview(judged: list[_Judged], verdicts: list[Verdict]) -> None:
    """Render the preview of the upload's most pressing result - its first ``flag``, else its
    first ``review`` - from the mesh already loaded, and carry it on that verdict.

    One per upload, because the results store keys previews by the upload's sha256 (an
    archive's members share it), and only for results a person will look at: rendering costs
    a fraction of a second on a large mesh, which a clear upload should not pay. The surface
    the descriptors read is drawn, with the matched body highlighted when the match names one.
    A preview that cannot be drawn (no area, out of memory) is left out: never the verdict's
    loss."""
    for wanted in (FLAG, REVIEW):
        for j, v in zip(judged, verdicts, strict=True):
            if v.verdict == wanted and j.result.mesh is not None:
                v.preview = _preview(j.result.mesh, None if j.joint else j.decision.matches)
                return


def _preview(mesh: Mesh, matches: tuple[Match, ...] | list[Match] | None) -> bytes | None:
    from scanner.preview import render_preview

    try:
        surface = mesh.surface()
        body = next((m.body for m in matches or () if m.body is not None and m.body >= 0), None)
        highlight = None
        if body is not None and surface.body_count > 1:
            highlight = surface.body_labels() == body
        return render_preview(surface.vertices, surface.faces, highlight)
    except (MemoryError, ValueError, FloatingPointError):
        return None


def unscannable_verdict(path: str, context: ScanContext, err: UnreadableInput) -> Verdict:
    """The verdict for an upload that could not be scanned at all (time, memory, crash)."""
    return _verdict(path, None, _Judged(MemberResult(None, ""), utc_now(), unreadable(err)), context)


def judge(mesh: Mesh, context: ScanContext, file_sha: str | None, classifier: bool = True) -> tuple[Identity, Decision]:
    """One mesh's identity and decision. ``file_sha``: the upload's sha256 when the mesh is
    the whole file (None for an archive member); ``classifier=False``: matching only.

    A failure to describe the mesh (a limit, no area, memory, a numeric fault) is an
    ``unscannable`` decision, never an exception: one bad member does not lose the others."""
    identity, case = Identity(), None
    try:
        identity = Identity(mesh.geometry_hash, mesh.triangle_count)
        shape = Shape.of(mesh, context.settings.limits.max_bodies)
        identity = dataclasses.replace(identity, bodies=shape.bodies)
        case = Case(file_sha, identity.geometry_hash, shape, context, classifier)
        return identity, decide(case)
    except (UnreadableInput, MemoryError, ValueError, FloatingPointError) as exc:
        return identity, unreadable(_as_unreadable(exc), None if case is None else case.distance_threshold)


def _as_unreadable(exc: Exception) -> UnreadableInput:
    if isinstance(exc, UnreadableInput):
        return exc
    if isinstance(exc, MemoryError):
        return UnreadableInput(LIMIT_MEMORY, "ran out of memory while describing")
    return UnreadableInput(CORRUPT, f"cannot describe: {exc}")


def _judge_member(result: MemberResult, sha: str | None, context: ScanContext) -> _Judged:
    scanned_at = utc_now()
    if result.error is not None or result.mesh is None:
        err = result.error or UnreadableInput(CORRUPT, "the reader returned no mesh")
        return _Judged(result, scanned_at, unreadable(err))
    identity, decision = judge(result.mesh, context, sha if result.member is None else None)
    return _Judged(result, scanned_at, decision, identity)


def _members_together(path: str, judged: list[_Judged], context: ScanContext) -> list[_Judged]:
    """Match an archive's mesh members as one upload when none flagged on its own.

    Why: a part cut into pieces, one piece per member, reassembles in the slicer; each piece
    alone is far from the signature, the pieces together are not. Members that flag alone
    keep their own evidence; the others are flagged with the joint evidence, naming the
    members. Bounded by the triangle limit, so joining cannot cost more than one large file."""
    scanned = [i for i, j in enumerate(judged) if j.decision.verdict != UNSCANNABLE]
    if any(judged[i].decision.verdict == FLAG for i in scanned):
        return judged
    # allowlisted members were judged benign by a person; the rest are read together
    together = [i for i in scanned if context.matcher.allowed(None, judged[i].identity.geometry_hash) is None]
    meshes = [m for i in together if (m := judged[i].result.mesh) is not None]
    if len(meshes) < 2 or sum(m.triangle_count for m in meshes) > context.settings.limits.max_triangles:
        return judged
    _, joint = judge(_without_walls(meshes, path), context, None, classifier=False)  # the same library's indexes
    if joint.verdict != FLAG:
        return judged
    names = ", ".join(judged[i].result.member or "?" for i in together)
    folder = os.path.isdir(path)  # a folder read together (scan --together): its files
    one, many = ("file", "model files of the folder") if folder else ("member", "mesh members of the upload")
    subject = f"this {one} matches nothing alone, but the {len(together)} {many} together ({names})"
    text = flag_explanation(joint.matches[0], len({m.signature_id for m in joint.matches}), subject)
    revised = list(judged)
    for i in together:
        decision = dataclasses.replace(
            judged[i].decision, verdict=FLAG, category=joint.category, matches=joint.matches, explanation=text
        )
        revised[i] = dataclasses.replace(judged[i], decision=decision, joint=True)
    return revised


def _without_walls(meshes: list[Mesh], path: str) -> Mesh:
    """The members joined, minus the walls between them: where a part was cut into pieces,
    each piece carries a cut face, which the whole never had (:func:`scanner.mesh.shared_walls`)."""
    joined = join(meshes, path)
    owner = np.repeat(np.arange(len(meshes)), [m.triangle_count for m in meshes])
    wall = shared_walls(joined.corners32, owner)
    if not wall.any() or wall.all():
        return joined
    return Mesh(vertices=joined.corners32[~wall].reshape(-1, 3), source=path, format="archive")


def _verdict(path: str, sha: str | None, judged: _Judged, context: ScanContext) -> Verdict:
    """The record, built once: where the mesh came from, what it is, what was decided."""
    d, identity, score = judged.decision, judged.identity, judged.decision.score
    return Verdict(
        path=path,
        member=judged.result.member,
        verdict=d.verdict,
        category=d.category,
        reason=d.reason,
        sha256=sha,
        geometry_hash=identity.geometry_hash,
        bodies=identity.bodies,
        triangles=identity.triangles,
        matches=list(d.matches),
        scores=dict(score.scores) if score is not None else {},
        explanation=d.explanation,
        scanner_version=__version__,
        library_version=context.library_version,
        model_version=context.model_version,
        scanned_at=judged.scanned_at,
        format=judged.result.format or None,
        detail=d.detail,
        review_score=score.review_score if score is not None else None,
        review_threshold=score.review_threshold if score is not None else None,
        review_body=_review_body(score),
        distance_threshold=d.distance_threshold,
    )


def _review_body(score: Score | None) -> dict[str, Any] | None:
    """The verdict's ``review_body``: the body whose score (scored alone) is the review score."""
    if score is None or score.body is None:
        return None
    return {"body": score.body, "share": score.body_share}
