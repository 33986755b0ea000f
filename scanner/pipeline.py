"""``scan_one``: the one place where loading, description, matching and policy meet.

Every front end (``scan``, ``watch``, ``serve``, ``survey``) calls this and only writes what
it returns. Order of decisions for each mesh of an upload:

1. unreadable -> ``unscannable`` with the loader's reason code;
2. allowlisted (file sha256 or geometry hash) -> ``clear``, saying so;
3. exact identity with a signature (file sha256, then canonical geometry hash) -> ``flag``;
4. near-duplicate of a signature, per body and for the whole file, within the signature
   row's own threshold (set at enrolment from its distance to benign reference shapes) and
   never above the configured one -> ``flag``, with every matching signature as evidence;
5. otherwise ``clear``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime

from scanner import __version__
from scanner.config import Settings
from scanner.errors import CORRUPT, LIMIT_MEMORY, UnreadableInput
from scanner.library import SignatureLibrary
from scanner.loading import iter_blob_meshes
from scanner.mesh import Mesh
from scanner.sources import blob_sha256, open_blob
from scanner.verdict import CLEAR, FLAG, UNSCANNABLE, Match, Verdict


@dataclass
class ScanContext:
    settings: Settings = field(default_factory=Settings)
    library: SignatureLibrary | None = None

    @property
    def library_version(self) -> str | None:
        return self.library.library_version if self.library is not None else None


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def scan_one(source: str | os.PathLike[str], context: ScanContext | None = None) -> list[Verdict]:
    """Verdicts for one upload: one per mesh file, or one per archive member."""
    context = context or ScanContext()
    path = os.fspath(source)
    limits = context.settings.limits
    try:
        blob = open_blob(path, limits.max_file_bytes)
    except UnreadableInput as err:
        return [unscannable_verdict(path, context, err)]
    sha = blob_sha256(blob)
    verdicts = []
    for result in iter_blob_meshes(blob, limits, path):
        base = Verdict(
            path=path,
            member=result.member,
            verdict=UNSCANNABLE,
            sha256=sha,
            format=result.format or None,
            scanner_version=__version__,
            library_version=context.library_version,
            scanned_at=_now(),
        )
        if result.error is not None:
            verdicts.append(_unscannable(base, result.error))
            continue
        try:
            verdicts.append(_judge(base, result.mesh, context, whole_file=result.member is None))
        except MemoryError:
            verdicts.append(_unscannable(base, UnreadableInput(LIMIT_MEMORY, "ran out of memory while describing")))
        except (ValueError, FloatingPointError) as exc:
            verdicts.append(_unscannable(base, UnreadableInput(CORRUPT, f"cannot describe: {exc}")))
    return verdicts


def unscannable_verdict(path: str, context: ScanContext, err: UnreadableInput) -> Verdict:
    """The verdict for an upload that could not be scanned at all (time, memory, crash)."""
    base = Verdict(
        path=path,
        member=None,
        verdict=UNSCANNABLE,
        scanner_version=__version__,
        library_version=context.library_version,
        scanned_at=_now(),
    )
    return _unscannable(base, err)


def _unscannable(v: Verdict, err: UnreadableInput) -> Verdict:
    v.verdict, v.reason, v.detail = UNSCANNABLE, err.reason, err.detail
    v.explanation = (
        f"could not be read ({err.reason}): {err.detail}" if err.detail else f"could not be read ({err.reason})"
    )
    return v


def _judge(v: Verdict, mesh: Mesh, context: ScanContext, whole_file: bool) -> Verdict:
    v.geometry_hash = mesh.geometry_hash
    v.triangles = mesh.triangle_count
    v.bodies = mesh.body_count
    lib = context.library
    if lib is None or len(lib) == 0:
        v.verdict = CLEAR
        v.explanation = "no signature library loaded; nothing to match against"
        return v
    file_sha = v.sha256 if whole_file else None
    allowed = lib.allowed(file_sha, v.geometry_hash)
    if allowed is not None:
        v.verdict = CLEAR
        v.explanation = "on the allowlist of known-benign files" + (f" ({allowed.note})" if allowed.note else "")
        return v
    threshold = context.settings.match.distance_threshold
    matches: list[Match] = []
    for kind, found in (("sha256", lib.find(sha256=file_sha)), ("geometry", lib.find(geometry_hash=v.geometry_hash))):
        for i in found:
            s = lib.signatures[i]
            matches.append(Match(s.id, s.category, 0.0, threshold, None, kind))
        if matches:
            break
    if not matches:
        matches = _near_duplicates(mesh, lib, context)
    if not matches:
        v.verdict = CLEAR
        v.explanation = f"no signature within its threshold (at most {threshold:g}) of the file or any of its bodies"
        return v
    v.verdict = FLAG
    v.matches = matches
    best = matches[0]
    v.category = best.category
    v.explanation = _explain(best, len({m.signature_id for m in matches}))
    return v


def _near_duplicates(mesh: Mesh, lib: SignatureLibrary, context: ScanContext) -> list[Match]:
    from scanner.features import describe

    threshold = context.settings.match.distance_threshold
    desc = describe(mesh)
    vectors, bodies = desc.rows()
    hits = lib.index().query(vectors, k=context.settings.match.neighbours, radius=threshold)
    best: dict[tuple[int, int | None], Match] = {}
    for h in sorted(hits, key=lambda h: h.distance):
        body = bodies[h.query_row]
        key = (h.signature, None if body < 0 else body)
        if key in best:
            continue
        s = lib.signatures[h.signature]
        best[key] = Match(
            signature_id=s.id,
            category=s.category,
            distance=round(h.distance, 5),
            threshold=round(h.threshold, 5),
            body=None if body < 0 else body,
            kind="near-duplicate",
            signature_body=None if h.body < 0 else h.body,
        )
    return sorted(best.values(), key=lambda m: m.distance)


def _explain(best: Match, n_signatures: int) -> str:
    where = "the whole file" if best.body is None else f"body {best.body}"
    if best.kind == "sha256":
        what = f"is byte-for-byte the known file {best.signature_id}"
    elif best.kind == "geometry":
        what = f"has exactly the triangles of known file {best.signature_id}"
    else:
        what = (
            f"{where} is a near-duplicate of known file {best.signature_id}"
            + ("" if best.signature_body is None else f" (its body {best.signature_body})")
            + f": shape distance {best.distance:.4f} <= threshold {best.threshold:g}"
        )
    more = f"; {n_signatures - 1} other signature(s) also match" if n_signatures > 1 else ""
    return f"flagged as {best.category.replace('_', ' ')}: the upload {what}{more}"
