"""Matching against a motivated uploader: recall per evasion family, next to false matches.

    python bench/evasion.py [--proxies 24] [--seed 0] [--benign 300] [--families REGEX]
                            [--json OUT] [--real-corpus DIR | --no-real-corpus]

What it does (issue 11, item 6), everything through the shipped code paths:

1. generates ``--proxies`` synthetic proxies with ``fixtures/generate.py`` (abstract
   box/cylinder/tube compositions; categories in turn, random pose and scale, formats in turn)
   and enrols each file with ``scanner.enrol.enrol`` into a library in a temporary folder,
   which is saved and loaded back (checksums and all);
2. applies every evasion of ``fixtures/evasions.py`` (family x strength; ``--families`` keeps
   those whose name matches) to each enrolled proxy as meshscan read it, writes the result as
   a real upload file or archive, and scans it with ``scanner.pipeline.scan_one`` (signature
   matching alone: no classifier, as ``--no-model``). An evasion is caught when the upload
   gets ``flag`` - for an archive, when any member does; for copies spread over several
   members the share of members flagged is shown too. ``d`` is the descriptor distance from
   the upload (any row of any member) to its own signature - for information: the verdict
   decides, not ``d``;
3. prints recall per family and strength against the issue's tier (100 / 90 / 70 %), PASS or
   MISS; beside it, for information: each copy's area and volume change, for copies that stay
   in the part's frame (re-tessellations) how far their surface moved and the recall each side
   of 1% of the diagonal (a re-tessellated copy, or one the tool deformed?), and for copies
   spread over the files of one folder (read together, as ``scan --together``) what the same
   files give scanned one by one;
4. false matches: ``--benign`` generated benign look-alikes (``fixtures.generate.BENIGN``, the
   hard negatives) scanned against the library - (file, signature) pairs and files flagged;
5. the real-parts check: public corpus meshes nobody here made, with twins dropped (rule
   printed), a seeded order; the first 10, 30 and all but 30 enrolled, the rest scanned;
   files falsely flagged at each size.

Defaults take a few minutes on a 2-core machine; ``--proxies 200 --benign 500`` gives
100,000 (benign, signature) pairs. At scale: ``--proxy-libraries 1000 10000`` scans the real
parts (and ``--extra-benign DIR``) against that many generated proxy signatures (cached with
``--library-cache``; with ``--enrol-jobs`` a stopped enrolment resumes from its saved chunks),
and ``--within 10000`` enrols the bench proxies *into* such a library, so the families are
scanned where other designs of each kind sit near each part (the false flags of the one and
the recall of the other move together when a rule reads how crowded the library is; a family
"caught only through another proxy's signature" was flagged for the wrong design).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for scanner, fixtures and bench when run from a checkout

import scanner  # noqa: E402
from bench.robustness import _stem, locate_corpus  # noqa: E402
from fixtures.evasions import EVASIONS, Evasion, as_trimesh  # noqa: E402
from fixtures.generate import BENIGN_KINDS, PROXY_CATEGORIES, generate  # noqa: E402
from scanner.enrol import enrol  # noqa: E402
from scanner.library import SignatureLibrary  # noqa: E402
from scanner.loading import iter_meshes  # noqa: E402
from scanner.pipeline import ScanContext, scan_one  # noqa: E402
from scanner.verdict import FLAG, Verdict  # noqa: E402

CORPUS_ENROLLED = 30
"""The issue's reference library size for the real-parts check."""


@dataclass
class Outcome:
    """One evasion of one proxy."""

    caught: bool
    own: bool
    """Flagged with the proxy's own signature among the matches."""
    members: int
    members_flagged: int
    distance: float
    unscannable: bool = False
    area_change: float = math.nan
    """Surface area of the upload (every member) over the enrolled mesh's, minus 1: information,
    to tell a re-tessellation (0) from a copy the tool damaged (decimation that collapses
    features loses area and volume)."""
    volume_change: float = math.nan
    """The same for the enclosed (signed) volume."""
    deviation: float = math.nan
    """Rows whose copy stays in the part's frame (``Evasion.same_frame``): how far the copy's
    surface moved, two-sided - the larger of the 99th percentiles of each surface's sample
    distances to the other's - over the enrolled part's diagonal (:func:`_surface_deviation`)."""
    triangles: int = 0
    """Triangles of the upload (every member)."""
    alone: tuple[int, int] | None = None
    """A folder upload (``scan --together``): (files flagged, files) when each file is scanned
    alone instead, as a platform that stores a post's files one by one would."""


@dataclass
class Row:
    evasion: Evasion
    outcomes: list[Outcome] = field(default_factory=list)
    misses: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float:
        return float(np.mean([o.caught for o in self.outcomes])) if self.outcomes else float("nan")

    @property
    def passed(self) -> bool:
        return self.recall * 100 >= self.evasion.tier - 1e-9

    def change(self) -> dict:
        """Median and largest |area| / |volume| change of the copies over the enrolled meshes."""
        out = {}
        for name in ("area_change", "volume_change"):
            values = np.abs([getattr(o, name) for o in self.outcomes])
            values = values[np.isfinite(values)]
            out[name] = (float(np.median(values)), float(values.max())) if len(values) else None
        return out

    def to_dict(self) -> dict:
        d = np.array([o.distance for o in self.outcomes], dtype=float)
        finite = d[np.isfinite(d)]
        member_total = sum(o.members for o in self.outcomes)
        caught = sum(o.caught for o in self.outcomes)
        return {
            "family": self.evasion.family,
            "strength": self.evasion.strength,
            "tier": self.evasion.tier,
            "in_issue": self.evasion.in_issue,
            "n": len(self.outcomes),
            "caught": caught,
            "recall": self.recall,
            "interval": wilson_interval(caught, len(self.outcomes)),
            "own_signature": sum(o.own for o in self.outcomes),
            "unscannable": sum(o.unscannable for o in self.outcomes),
            "member_recall": (sum(o.members_flagged for o in self.outcomes) / member_total) if member_total else None,
            "median_distance": float(np.median(finite)) if len(finite) else None,
            "max_distance": float(finite.max()) if len(finite) else None,
            "status": "PASS" if self.passed else "MISS",
            "misses": self.misses,
            "surface_change": self.change(),
            "missed_copies_change": [
                {"area": o.area_change, "volume": o.volume_change} for o in self.outcomes if not o.caught
            ],
            "deviation": self.deviation(),
        }

    def deviation(self) -> dict | None:
        """Same-frame rows: copies within :data:`FAITHFUL` of the enrolled surface and the recall
        among them and among the rest (None for other rows)."""
        dev = np.array([o.deviation for o in self.outcomes], dtype=float)
        if not len(dev) or not np.isfinite(dev).any():
            return None
        caught = np.array([o.caught for o in self.outcomes])
        faithful = dev <= FAITHFUL
        return {
            "median_triangles": float(np.median([o.triangles for o in self.outcomes])),
            "median": float(np.nanmedian(dev)),
            "max": float(np.nanmax(dev)),
            "faithful": int(faithful.sum()),
            "faithful_caught": int((caught & faithful).sum()),
            "damaged_caught": int((caught & ~faithful).sum()),
        }


# ---------------------------------------------------------------- helpers
def _round_robin(rows: list[tuple[str, str, str]], order: tuple[str, ...], n: int) -> list[tuple[str, str, str]]:
    """The first ``n`` rows taking categories (or kinds) in turn, so a small run covers all."""
    by: dict[str, list] = defaultdict(list)
    for r in rows:
        by[r[2].rsplit("-", 2)[0].split("-", 1)[1]].append(r)  # "proxy-barrel-s0-000" -> "barrel"
    queues = [by[k] for k in order if k in by]
    out: list[tuple[str, str, str]] = []
    i = 0
    while len(out) < n and any(i < len(q) for q in queues):
        out += [q[i] for q in queues if i < len(q)][: n - len(out)]
        i += 1
    return out


_INDEXES: dict[tuple, object] = {}


def _own_distance(path: str, lib: SignatureLibrary, sig: int) -> float:
    """Descriptor distance from the upload to signature ``sig`` (min over rows and members);
    NaN when the matcher no longer exposes it this way (the verdict is what counts)."""
    try:
        from scanner.features import describe
        from scanner.matching import Matcher

        key = (id(lib), lib.library_version, len(lib.rows))  # one matcher per library, not per upload
        if key not in _INDEXES:
            _INDEXES[key] = Matcher.build(lib).descriptors
        index = _INDEXES[key]
        best = math.inf
        for r in iter_meshes(path):
            if r.mesh is not None and r.mesh.triangle_count:
                vectors, _ = describe(r.mesh).rows()
                best = min(best, float(index.min_distance_per_signature(vectors)[sig]))
        return best
    except (ImportError, TypeError, ValueError, IndexError):
        return math.nan


SAME_UNITS = 0.1
"""A copy whose diameter is within this share of the enrolled one's is in the same units (the
rescaling evasions scale by 0.05-37; a decimated copy's diameter moves up to ~6%)."""


def _area_volume(meshes: list[scanner.Mesh]) -> tuple[float, float, float]:
    """Total triangle area, signed enclosed volume and diameter (the largest distance between two
    vertices: moves with a uniform scale, not with a rotation, and not with damage inside the
    part's outline) of some meshes, in float64."""
    from scipy.spatial import ConvexHull, QhullError

    tri = np.concatenate([np.asarray(m.triangles, dtype=np.float64).reshape(-1, 3, 3) for m in meshes])
    area = float(0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).sum())
    volume = float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)
    points = np.unique(tri.reshape(-1, 3), axis=0)
    try:
        points = points[ConvexHull(points).vertices][:4000]
    except (QhullError, ValueError):  # flat or too few points: the pairs of all of them
        points = points[:4000]
    diameter = max(float(np.linalg.norm(points - p, axis=1).max()) for p in points) if len(points) else math.nan
    return area, volume, diameter


FAITHFUL = 0.01
"""A same-frame copy whose surface deviation (:func:`_surface_deviation`) is at most 1% of the
part's diagonal is the part re-tessellated; beyond, the tool changed its shape. Measured on the 24
bench proxies (seed 0): the same surface finely re-tessellated (midpoint subdivision) reads
0.07% (0.14% at most), vertex noise of 0.2% / 0.5% / 1% of the diagonal 0.22% / 0.53% / 1.04%
(medians), Loop subdivision, which rounds the part, 3.2%."""
DEVIATION_SAMPLES = 60_000


def _surface_samples(tri: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points spread over triangles (T, 3, 3) by area, reproducibly, with the unit normal
    of the triangle each lies on."""
    rng = np.random.default_rng(seed)
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norm = np.linalg.norm(cross, axis=1)
    pick = rng.choice(len(tri), size=n, p=norm / norm.sum())
    u, v = rng.random(n), rng.random(n)
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[pick]
    points = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
    return points, cross[pick] / norm[pick, None]


class _Surface:
    """Samples of one surface, a KD-tree of them, and its sampling floor: what lets
    :meth:`distances` read a point's distance to the surface rather than to the nearest sample."""

    def __init__(self, tri: np.ndarray, seed: int) -> None:
        from scipy.spatial import cKDTree

        self.points, self.normals = _surface_samples(tri, DEVIATION_SAMPLES, seed)
        self.tree = cKDTree(self.points)
        other, _ = _surface_samples(tri, DEVIATION_SAMPLES // 6, seed + 1000)
        self.floor = float(np.percentile(self.tree.query(other)[0], 99))
        """How far a point on this very surface can be from its nearest sample (99th percentile)."""

    def distances(self, points: np.ndarray) -> np.ndarray:
        """Each point's distance to the surface, from below: the larger of its distance to the
        nearest sample's tangent plane and its distance to that sample less the floor (0 for a
        point on the surface up to rounding; the full offset for a wall moved along its normal)."""
        near, idx = self.tree.query(points)
        plane = np.abs(np.einsum("ij,ij->i", points - self.points[idx], self.normals[idx]))
        return np.maximum(plane, near - self.floor)


def _surface_deviation(path: str, enrolled: tuple[_Surface, float]) -> tuple[float, int]:
    """(deviation, triangles) of the upload at ``path``: the larger of the two 99th percentiles
    of surface distances (copy samples to the part, part samples to the copy;
    :meth:`_Surface.distances`), over the part's diagonal; NaN when unreadable."""
    try:
        meshes = [r.mesh for r in iter_meshes(path) if r.mesh is not None and r.mesh.triangle_count]
    except (scanner.UnreadableInput, ValueError, OSError):
        return math.nan, 0
    if not meshes:
        return math.nan, 0
    tri = np.concatenate([np.asarray(m.triangles, dtype=np.float64).reshape(-1, 3, 3) for m in meshes])
    part, diag = enrolled
    copy = _Surface(tri, 1)
    there = np.percentile(part.distances(copy.points[:10_000]), 99)
    back = np.percentile(copy.distances(part.points[:10_000]), 99)
    return float(max(there, back) / diag), len(tri)


def _enrolled_samples(mesh: scanner.Mesh) -> tuple[_Surface, float]:
    tri = np.asarray(mesh.triangles, dtype=np.float64).reshape(-1, 3, 3)
    flat = tri.reshape(-1, 3)
    return _Surface(tri, 2), float(np.linalg.norm(flat.max(axis=0) - flat.min(axis=0)))


def _surface_change(path: str, enrolled: tuple[float, float, float]) -> tuple[float, float]:
    """(area, volume) of the upload at ``path`` (all members) relative to ``enrolled``, minus 1,
    at the upload's own scale: divided by the diameters' ratio squared and cubed when that ratio is
    off 1 by more than ``SAME_UNITS`` (a copy in other units is not a change), else as it is (the
    tool can move a corner and the diameter with it); NaN where undefined. Information only."""
    try:
        meshes = [r.mesh for r in iter_meshes(path) if r.mesh is not None and r.mesh.triangle_count]
    except (scanner.UnreadableInput, ValueError, OSError):
        return math.nan, math.nan
    if not meshes:  # nothing readable: no change to report
        return math.nan, math.nan
    area, volume, size = _area_volume(meshes)
    a0, v0, s0 = enrolled
    if not (a0 > 0 and v0 and s0 > 0 and size > 0):
        return math.nan, math.nan
    k = size / s0
    k = 1.0 if abs(k - 1.0) <= SAME_UNITS else k
    return area / (a0 * k**2) - 1.0, abs(volume) / (abs(v0) * k**3) - 1.0


def _flagged_ids(verdicts: list[Verdict]) -> set[str]:
    return {m.signature_id for v in verdicts if v.verdict == FLAG for m in v.matches}


def _enrol_all(folder: Path, files: list[tuple[Path, str]], source: str) -> list[list[str]]:
    """Enrol ``files`` in order into a new library saved at ``folder``; each file's signature ids."""
    lib = SignatureLibrary.create(folder, name=f"bench-evasion {source}")
    ids = []
    for path, category in files:
        results = enrol(lib, path, category, source)
        ids.append([r.signature_id for r in results if r.signature_id is not None])
    lib.save(folder)
    return ids


CHUNK_FILES = 250
"""Files a chunk of a parallel enrolment holds: each chunk is saved on its own and marked done,
so a run that is stopped (a 10,000-proxy library takes about two hours here) resumes where it
stopped instead of starting again."""


def _library(
    folder: Path, files: list[tuple[Path, str]], source: str, jobs: int = 1
) -> tuple[SignatureLibrary, list[list[str]]]:
    """Enrol ``files`` ((path, category)) through ``scanner.enrol``, save, load back; returns
    the loaded library and each file's signature ids (archives: one per member). With ``jobs``
    > 1 contiguous chunks of ``CHUNK_FILES`` enrol in forked processes and are merged in order
    (the same library: enrolment of one file does not read the others). Each chunk is kept in
    ``<folder>.chunks`` with its ids once saved, and a chunk already there is not enrolled
    again: a stopped run of the same code resumes (the caller keys ``folder`` by that code).
    The chunks are removed once the whole library is saved."""
    if jobs <= 1 or len(files) < 8 * jobs:
        ids = _enrol_all(folder, files, source)
        return SignatureLibrary.load(folder), ids
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    parts = folder.parent / f"{folder.name}.chunks"
    size = min(CHUNK_FILES, math.ceil(len(files) / jobs))
    chunks = [(parts / f"chunk{i:05d}", files[lo : lo + size]) for i, lo in enumerate(range(0, len(files), size))]
    todo = [(chunk, chosen) for chunk, chosen in chunks if not (chunk / "ids.json").exists()]
    if todo:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            list(pool.map(_enrol_chunk, *zip(*todo, strict=True), [source] * len(todo)))
    lib = SignatureLibrary.create(folder, name=f"bench-evasion {source}")
    ids: list[list[str]] = []
    for chunk, _ in chunks:
        lib.merge(SignatureLibrary.load(chunk))
        ids.extend(json.loads((chunk / "ids.json").read_text()))
    lib.save(folder)
    shutil.rmtree(parts)
    return SignatureLibrary.load(folder), ids


def _enrol_chunk(folder: Path, files: list[tuple[Path, str]], source: str) -> None:
    """:func:`_enrol_all` of one chunk, marked done by its ids file (written last)."""
    ids = _enrol_all(folder, files, source)
    (folder / "ids.json.tmp").write_text(json.dumps(ids))
    (folder / "ids.json.tmp").replace(folder / "ids.json")


def _source_key() -> str:
    """A digest of the scanner package's sources and data: a cached library is reused only by the
    very code that enrolled it (thresholds and row kinds change without a version change)."""
    digest = hashlib.sha256()
    root = Path(scanner.__file__).resolve().parent
    for path in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------- evasions
def run_evasions(args: argparse.Namespace, work: Path) -> tuple[list[Row], dict]:
    per_class = math.ceil(args.proxies / len(PROXY_CATEGORIES))
    rows = generate(work / "proxies", per_class, args.seed, benign_per_kind=0)
    proxies = _round_robin(rows, PROXY_CATEGORIES, args.proxies)
    files = [(work / "proxies" / rel, cat) for rel, cat, _ in proxies]
    t0 = time.perf_counter()
    lib, ids = _library(work / "library", files, "bench-proxy")
    enrol_s = time.perf_counter() - t0
    if args.within:
        lib = _crowded(lib, args, work)
    context = ScanContext(library=lib, model=None)
    index_of = {s.id: i for i, s in enumerate(lib.signatures)}
    pattern = re.compile(args.families, re.I) if args.families else None
    chosen = [e for e in EVASIONS if pattern is None or pattern.search(e.key)]
    results = [Row(e) for e in chosen]
    uploads = work / "uploads"
    uploads.mkdir()
    t0 = time.perf_counter()
    for p, ((path, _cat), sig_ids) in enumerate(zip(files, ids, strict=True)):
        if len(sig_ids) != 1:
            print(f"  skipped {path.name}: enrolled as {len(sig_ids)} signatures", file=sys.stderr)
            continue
        own = sig_ids[0]
        enrolled = scanner.load(path)
        size = _area_volume([enrolled])
        part_samples = None
        mesh = as_trimesh(enrolled)
        for row in results:
            upload = row.evasion.apply(mesh, seed=args.seed * 100_003 + p, stem=f"p{p:03d}")
            target = upload.write(uploads)
            verdicts = scan_one(target, context)
            flagged = _flagged_ids(verdicts)
            caught = any(v.verdict == FLAG for v in verdicts)
            area_change, volume_change = _surface_change(target, size)
            alone = _files_alone(target, context) if os.path.isdir(target) else None
            deviation, triangles = math.nan, 0
            if row.evasion.same_frame:
                part_samples = part_samples or _enrolled_samples(enrolled)
                deviation, triangles = _surface_deviation(target, part_samples)
            outcome = Outcome(
                caught=caught,
                own=own in flagged,
                members=len(verdicts) if row.evasion.multi_member else 0,
                members_flagged=sum(v.verdict == FLAG for v in verdicts) if row.evasion.multi_member else 0,
                distance=_own_distance(target, lib, index_of[own]),
                unscannable=all(v.verdict == "unscannable" for v in verdicts),
                area_change=area_change,
                volume_change=volume_change,
                deviation=deviation,
                triangles=triangles,
                alone=alone,
            )
            row.outcomes.append(outcome)
            if not caught:
                row.misses.append(path.name)
            shutil.rmtree(target) if os.path.isdir(target) else Path(target).unlink()
    meta = {
        "proxies": len(files),
        "signatures": len(lib),
        "enrol_seconds": round(enrol_s, 2),
        "scan_seconds": round(time.perf_counter() - t0, 2),
    }
    return results, meta | {"library": lib, "work": work}


def wilson_interval(caught: int, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval of a recall of ``caught`` out of ``n`` copies (the
    reports' own, :func:`scanner.report.stats.wilson_interval`); NaN for a row with no copies,
    whose recall is NaN too.

    Why: at the default 24 proxies one copy is four points of recall, so a row at 92% is one
    copy from a 90% tier; printed beside each recall, the interval says how far the sample
    lets the figure be trusted (measured: seed 0's 24 proxies gave 79% on the densified
    decimation at "50%", 96 proxies of seed 5 gave 73%, inside the first's 60-91%)."""
    from scanner.report.stats import wilson_interval as wilson

    return (math.nan, math.nan) if n <= 0 else wilson(caught, n)


def print_table(results: list[Row]) -> None:
    print("| family | strength | target | recall | 95% interval | n | median d | max d | status |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in results:
        d = row.to_dict()
        note = ""
        if d["member_recall"] is not None:
            note = f" ({d['member_recall']:.0%} of members)"
        if d["unscannable"]:
            note += f" ({d['unscannable']} unscannable)"
        listed = "" if d["in_issue"] else "*"
        med = "-" if d["median_distance"] is None else f"{d['median_distance']:.4f}"
        mx = "-" if d["max_distance"] is None else f"{d['max_distance']:.4f}"
        low, high = d["interval"]
        print(
            f"| {d['family']} | {d['strength']} | {'100%' if d['tier'] == 100 else '>= ' + str(d['tier']) + '%'}"
            f"{listed} | {d['recall']:.0%}{note} | {low:.0%}-{high:.0%} | {d['n']} | {med} | {mx} | {d['status']} |"
        )
    if not results:
        print("(no evasion selected by --families)")
        return
    by_tier = defaultdict(lambda: [0, 0])
    for row in results:
        by_tier[row.evasion.tier][0] += row.passed
        by_tier[row.evasion.tier][1] += 1
    print()
    print(
        "Tiers met: "
        + "; ".join(f"{t}%: {p}/{n} rows" for t, (p, n) in sorted(by_tier.items(), reverse=True))
        + ". * = not in the issue's lists, held to the tier of its nearest listed sibling."
    )
    print(
        "recall = uploads that got `flag` (an archive: any member), with its 95% Wilson interval over "
        "the n copies (status reads the recall itself); d = descriptor distance of the upload to its own "
        "signature (information only)."
    )
    print_surface_change(results)
    print_deviation(results)
    print_alone(results)
    wrong = [(r.evasion.key, sum(o.caught and not o.own for o in r.outcomes)) for r in results]
    wrong = [(k, n) for k, n in wrong if n]
    if wrong:
        print("Caught only through another proxy's signature: " + ", ".join(f"{k} {n}" for k, n in wrong))


def print_surface_change(results: list[Row], floor: float = 0.005) -> None:
    """Information beside the table: rows whose copies changed the surface itself (median or
    largest |area| or |volume| change of at least ``floor``) - a copy the tool damaged, not only
    re-tessellated. Rows that add or cut geometry by design (decoys, plates, partial, split)
    show their own change too; for them it is expected."""
    changed = []
    for row in results:
        c = row.change()
        if c["area_change"] is None or c["volume_change"] is None:
            continue
        if max(*c["area_change"], *c["volume_change"]) >= floor:
            missed = [o for o in row.outcomes if not o.caught and np.isfinite(o.area_change)]
            changed.append((row, c, missed))
    if not changed:
        return
    print()
    print("Surface change of the copies (information: |area| and |volume| of the upload against the enrolled")
    print("mesh at the upload's own scale, median / largest; a re-tessellation or a rigid or uniformly scaled")
    print("copy changes neither):")
    print()
    print("| family | strength | area change | volume change | missed copies: median area / volume change |")
    print("|---|---|---|---|---|")
    for row, c, missed in changed:
        (am, ax), (vm, vx) = c["area_change"], c["volume_change"]
        lost = "-"
        if missed:
            lost = (f"{np.median([abs(o.area_change) for o in missed]):.1%} / "
                    f"{np.median([abs(o.volume_change) for o in missed]):.1%} ({len(missed)})")  # fmt: skip
        e = row.evasion
        print(f"| {e.family} | {e.strength} | {am:.1%} / {ax:.1%} | {vm:.1%} / {vx:.1%} | {lost} |")


def _files_alone(folder: str, context: ScanContext) -> tuple[int, int]:
    """(files flagged, files) of a folder upload when each file is scanned on its own."""
    files = sorted(os.path.join(folder, name) for name in os.listdir(folder))
    flagged = sum(any(v.verdict == FLAG for v in scan_one(f, context)) for f in files)
    return flagged, len(files)


def print_alone(results: list[Row]) -> None:
    """Information beside the table, for rows whose upload is a folder of files read together:
    what the same files give scanned one by one (the route ``scan --together`` closes)."""
    rows = [row for row in results if row.outcomes and all(o.alone is not None for o in row.outcomes)]
    if not rows:
        return
    print()
    print("The same files scanned one by one (information: a platform that stores a post's files apart):")
    print()
    print("| family | strength | parts with a file flagged alone | files flagged alone | parts read together |")
    print("|---|---|---|---|---|")
    for row in rows:
        parts = sum(o.alone[0] > 0 for o in row.outcomes)
        files, total = sum(o.alone[0] for o in row.outcomes), sum(o.alone[1] for o in row.outcomes)
        n = len(row.outcomes)
        e = row.evasion
        print(f"| {e.family} | {e.strength} | {parts} of {n} | {files} of {total} | {row.recall:.0%} |")


def print_deviation(results: list[Row]) -> None:
    """Information beside the table, for rows whose copy stays in the part's frame: how far the
    copies' surfaces moved, and the recall among copies that kept the part's shape (within
    :data:`FAITHFUL`) and among those the tool changed. A row's status is its recall over every
    copy; this says what the misses are."""
    rows = [(row, row.deviation()) for row in results]
    rows = [(row, d) for row, d in rows if d is not None]
    if not rows:
        return
    print()
    print("Surface deviation of the copies that stay in the part's frame (information: two-sided 99th")
    print("percentile of surface distance over the part's diagonal, median / largest; a copy within")
    print(f"{FAITHFUL:.0%} keeps the part's shape, beyond it the tool changed it):")
    print()
    print("| family | strength | median triangles | deviation | copies within 1% | their recall | recall beyond 1% |")
    print("|---|---|---|---|---|---|---|")
    for row, d in rows:
        n, ok = len(row.outcomes), d["faithful"]
        inside = f"{d['faithful_caught'] / ok:.0%}" if ok else "-"
        beyond = f"{d['damaged_caught'] / (n - ok):.0%} of {n - ok}" if n - ok else "-"
        e = row.evasion
        print(f"| {e.family} | {e.strength} | {d['median_triangles']:.0f} | {d['median']:.2%} / {d['max']:.2%} "
              f"| {ok} of {n} | {inside} | {beyond} |")  # fmt: skip


# ---------------------------------------------------------------- benign false matches
def run_benign(args: argparse.Namespace, lib: SignatureLibrary, work: Path) -> dict:
    per_kind = math.ceil(args.benign / len(BENIGN_KINDS))
    rows = generate(work / "benign", 0, args.seed + 7919, benign_per_kind=per_kind)
    chosen = _round_robin(rows, BENIGN_KINDS, args.benign)
    context = ScanContext(library=lib, model=None)
    flagged_files, pairs, false_pairs, examples = 0, 0, 0, []
    per_kind_hits: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for rel, _cat, group in chosen:
        kind = group.split("-")[1]
        verdicts = scan_one(work / "benign" / rel, context)
        ids = _flagged_ids(verdicts)
        pairs += len(lib)
        false_pairs += len(ids)
        flagged_files += bool(ids)
        per_kind_hits[kind][0] += 1
        per_kind_hits[kind][1] += bool(ids)
        if ids:
            best = min((m for v in verdicts for m in v.matches), key=lambda m: m.distance)
            examples.append(f"{rel} ({kind}) ~ {best.signature_id} ({best.category}) {best.kind} d={best.distance:.4f}")
    out = {
        "files": len(chosen),
        "signatures": len(lib),
        "pairs": pairs,
        "false_pairs": false_pairs,
        "files_flagged": flagged_files,
        "by_kind": {k: {"files": v[0], "flagged": v[1]} for k, v in per_kind_hits.items()},
        "examples": examples,
    }
    print()
    print(f"### False matches: {len(chosen)} generated benign look-alikes x {len(lib)} proxy signatures")
    print(f"- (file, signature) pairs falsely matched: {false_pairs} / {pairs} = {false_pairs / max(pairs, 1):.4%}")
    print(f"- files falsely flagged: {flagged_files} / {len(chosen)} = {flagged_files / max(len(chosen), 1):.2%}")
    print("- by kind (flagged / files): " + ", ".join(f"{k} {v[1]}/{v[0]}" for k, v in per_kind_hits.items()))
    for e in examples[:10]:
        print(f"  - {e}")
    if len(examples) > 10:
        print(f"  - ... and {len(examples) - 10} more (--json has them all)")
    return out


# ---------------------------------------------------------------- real parts
def _shape_key(mesh: scanner.Mesh) -> str:
    """Same tessellated shape up to rotation, translation, uniform scale, mirror, vertex and
    triangle order: the triangle count and the sorted, area-normalised triangle areas (to 4
    significant digits). Independent of the descriptor being measured."""
    tri = mesh.triangles.astype(np.float64)
    areas = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    total = areas.sum()
    if not np.isfinite(total) or total <= 0:
        return f"degenerate-{len(areas)}"
    rounded = np.array([float(f"{a:.4g}") for a in np.sort(areas / total)])
    return hashlib.sha256(rounded.tobytes()).hexdigest()[:16] + f"-{len(areas)}"


def _ring_codes(mesh: scanner.Mesh) -> np.ndarray:
    """The distinct ring patch codes of a mesh (each triangle with its neighbours, up to
    similarity): two files that share nearly all of them are one tessellated model."""
    from scanner.features.patches import RING, mesh_patch_codes

    codes = mesh_patch_codes(mesh).codes
    return np.unique(codes[(codes & np.uint64(1)) == RING])


def _same_tessellation(a: dict, b: dict) -> bool:
    """One model moved, rescaled or re-exported with its triangles intact: triangle counts
    within 10% and 90% of the smaller file's distinct ring codes found in the other (float32
    rounding of a moved copy changes a few; a different design shares almost none)."""
    small, large = sorted((a, b), key=lambda p: len(p["rings"]))
    if min(a["triangles"], b["triangles"]) < 0.9 * max(a["triangles"], b["triangles"]) or not len(small["rings"]):
        return False
    return float(np.isin(small["rings"], large["rings"]).mean()) >= 0.9


def _body_shapes(mesh: scanner.Mesh) -> list[np.ndarray]:
    """Each body's sorted, area-normalised triangle areas (bodies of >= 8 triangles)."""
    out = []
    for body in mesh.bodies() if mesh.body_count <= 512 else []:
        if body.triangle_count < 8:
            continue
        tri = body.triangles.astype(np.float64)
        areas = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
        if np.isfinite(areas.sum()) and areas.sum() > 0:
            out.append(np.sort(areas / areas.sum()))
    return out


def _identical_body(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    """Do two files hold a body of the same shape - the same triangle count and the same sorted
    area-normalised areas within 0.1% (one body moved, scaled or re-exported through a unit
    transform: float32 rounding moves the 4th digit, so a hash of rounded areas misses it)?
    Independent of the descriptor being measured."""
    return any(len(x) == len(y) and np.allclose(x, y, rtol=1e-3, atol=1e-9) for x in a for y in b)


def run_corpus(args: argparse.Namespace, corpus: Path, work: Path) -> dict:
    with open(corpus / "MANIFEST.tsv", newline="", encoding="utf-8") as fh:
        paths = sorted(r["path"] for r in csv.DictReader(fh, delimiter="\t"))
    parts: list[dict] = []
    dropped: list[str] = []
    for rel in paths:
        try:
            mesh = scanner.load(corpus / rel)
        except scanner.UnreadableInput:
            continue
        if mesh.triangle_count < args.corpus_min_triangles:
            continue
        entry = {"path": rel, "hash": mesh.geometry_hash, "stem": _stem(rel), "shape": _shape_key(mesh),
                 "triangles": mesh.triangle_count, "rings": _ring_codes(mesh)}  # fmt: skip
        twin = next(
            (
                (p["path"], why)
                for p in parts
                for why, same in (
                    ("same geometry hash", p["hash"] == entry["hash"]),
                    ("same name stem", p["stem"] == entry["stem"]),
                    ("same shape up to similarity", p["shape"] == entry["shape"]),
                    ("same tessellation", _same_tessellation(p, entry)),
                )
                if same
            ),
            None,
        )
        if twin is not None:
            dropped.append(f"{rel} ~ {twin[0]} ({twin[1]})")
            continue
        entry["bodies"] = _body_shapes(mesh)
        parts.append(entry)
    rng = np.random.default_rng(args.seed + 31)
    order = [parts[i] for i in rng.permutation(len(parts))]
    print()
    print(f"### Real parts: {corpus}")
    print(
        f"{len(parts)} distinct meshes of >= {args.corpus_min_triangles} triangles that meshscan reads; "
        f"{len(dropped)} true twins dropped (kept the first in path order). Twin rule: the same "
        "geometry hash (identical triangles), the same file name but for the extension (one model "
        "exported twice: reference.obj / reference.ply), or the same shape up to similarity (equal "
        "triangle count and equal sorted area-normalised triangle areas: one model moved, scaled or "
        "re-indexed), or the same tessellation (triangle counts within 10% and 90% of the smaller "
        "file's triangles, with their neighbours, found unchanged up to similarity in the other: "
        "one model moved far enough for float32 rounding to change its areas, or re-exported with "
        "seams). A false match whose files share a body of the same shape is reported as a "
        "body-for-body identical part."
    )
    for d in dropped:
        print(f"  - twin dropped: {d}")
    sizes = [("10", 10), (str(CORPUS_ENROLLED), CORPUS_ENROLLED), ("all but 30", len(order) - CORPUS_ENROLLED)]
    sizes = [(label, k) for label, k in sizes if 0 < k < len(order)]
    out: dict = {"corpus": str(corpus), "distinct": len(parts), "twins_dropped": dropped, "runs": []}
    print()
    if len(order) - CORPUS_ENROLLED < CORPUS_ENROLLED:
        print(f"(the corpus is small: 'all but 30' enrols only {len(order) - CORPUS_ENROLLED})")
    print("| enrolled | scanned | files falsely flagged | of which share an identical body | pairs falsely matched |")
    print("|---|---|---|---|---|")
    for label, k in sizes:
        enrolled, scanned = order[:k], order[k:]
        folder = work / f"corpus-lib-{k}"
        lib, ids = _library(folder, [(corpus / p["path"], "other_component") for p in enrolled], "bench-corpus")
        owner = {sid: p for p, sids in zip(enrolled, ids, strict=True) for sid in sids}
        context = ScanContext(library=lib, model=None)
        flagged, body_twins, false_pairs, details = 0, 0, 0, []
        for p in scanned:
            sig_ids = _flagged_ids(scan_one(corpus / p["path"], context))
            if not sig_ids:
                continue
            flagged += 1
            false_pairs += len(sig_ids)
            sources = sorted({owner[s]["path"] for s in sig_ids if s in owner})
            shared = any(_identical_body(p["bodies"], owner[s]["bodies"]) for s in sig_ids if s in owner)
            body_twins += shared
            details.append(f"{p['path']} ~ {', '.join(sources)}" + (" (identical body)" if shared else ""))
        n_pairs = len(scanned) * len(lib)
        print(
            f"| {label}: {k} files ({len(lib)} signatures) | {len(scanned)} "
            f"| {flagged} ({flagged / max(len(scanned), 1):.1%}) | {body_twins} | {false_pairs} / {n_pairs} |"
        )
        out["runs"].append(
            {"label": label, "enrolled": k, "signatures": len(lib), "scanned": len(scanned), "files_flagged": flagged,
             "identical_body": body_twins, "false_pairs": false_pairs, "pairs": n_pairs, "details": details}
        )  # fmt: skip
        for extra in args.extra_benign:
            run = _extra_scan(Path(extra), context, label, {s: p["bodies"] for s, p in owner.items()})
            run.update(enrolled=k)
            print(
                f"| {label}: {k} files ({len(lib)} signatures) | {run['scanned']} under {extra} "
                f"| {run['files_flagged']} ({run['files_flagged'] / max(run['scanned'], 1):.1%}) "
                f"| {run['identical_body']} | {run['false_pairs']} / {run['pairs']} |"
            )
            out["runs"].append(run)
    for run in out["runs"]:
        for d in run["details"]:
            where = f" (under {run['set']})" if run.get("set") else ""
            print(f"  - with {run['label']} enrolled{where}: {d}")
    for n in args.proxy_libraries or []:
        out["runs"].extend(_corpus_vs_proxies(args, corpus, order, n, work))
    return out


def _proxy_library(args: argparse.Namespace, n: int, work: Path) -> SignatureLibrary:
    """``n`` generated proxy signatures (seed + 17: none is a bench proxy), from
    ``--library-cache`` when the same code enrolled them before."""
    cache = args.library_cache / f"proxies-{n}-seed{args.seed}-{_source_key()}" if args.library_cache else None
    if cache is not None and (cache / "manifest.json").exists():
        print(f"  (the {n}-proxy library from {cache})")
        return SignatureLibrary.load(cache)
    rows = generate(work / f"many-{n}", math.ceil(n / len(PROXY_CATEGORIES)), args.seed + 17, benign_per_kind=0)
    chosen = _round_robin(rows, PROXY_CATEGORIES, n)
    files = [(work / f"many-{n}" / r, c) for r, c, _ in chosen]
    return _library(cache or work / f"many-lib-{n}", files, "bench-many", jobs=args.enrol_jobs)[0]


def _crowded(lib: SignatureLibrary, args: argparse.Namespace, work: Path) -> SignatureLibrary:
    """The bench proxies' library merged into ``--within`` generated proxy signatures: the copies
    are then scanned in a crowded library, where other designs of each kind sit near each part."""
    big = _proxy_library(args, args.within, work)
    merged = SignatureLibrary.create(work / "within", name=f"bench proxies + {args.within}")
    merged.merge(lib)
    merged.merge(big)
    merged.save(work / "within")
    return SignatureLibrary.load(work / "within")


def _corpus_vs_proxies(args: argparse.Namespace, corpus: Path, parts: list[dict], n: int, work: Path) -> list[dict]:
    """Every distinct real part scanned against ``n`` generated proxy signatures: precision
    must not fall as the library grows."""
    t0 = time.perf_counter()
    lib = _proxy_library(args, n, work)
    context = ScanContext(library=lib, model=None)
    flagged = [p["path"] for p in parts if _flagged_ids(scan_one(corpus / p["path"], context))]
    rate = len(flagged) / max(len(parts), 1)
    print(
        f"- {len(parts)} real parts against {len(lib)} generated proxy signatures: {len(flagged)} flagged "
        f"({rate:.1%}) {flagged if flagged else ''} ({time.perf_counter() - t0:.0f} s)"
    )
    runs = [{"label": f"{n} proxies", "enrolled": n, "signatures": len(lib), "scanned": len(parts),
             "files_flagged": len(flagged), "identical_body": 0, "false_pairs": None, "pairs": None,
             "details": flagged}]  # fmt: skip
    for folder in args.extra_benign:
        runs.append(_extra_vs_proxies(Path(folder), context, n))
    return runs


def _extra_scan(folder: Path, context: ScanContext, label: str, owners: dict[str, list[np.ndarray]]) -> dict:
    """Every file under ``folder`` (real benign meshes from elsewhere) scanned against a library
    of real corpus parts (``owners``: each signature's file's body shapes): files falsely
    flagged, and how many of them hold a body identical to the matched file's (which may match,
    and is reported as such). The issue's "<= 1 in 100 never-enrolled real parts against a
    30-signature library of real parts" needs more never-enrolled parts than the corpus's 13."""
    scanned, flagged, body_twins, false_pairs, details = 0, 0, 0, 0, []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        verdicts = scan_one(path, context)
        if all(v.verdict == "unscannable" for v in verdicts):
            continue
        scanned += 1
        sig_ids = _flagged_ids(verdicts)
        if not sig_ids:
            continue
        flagged += 1
        false_pairs += len(sig_ids)
        bodies = _body_shapes(scanner.load(path))
        shared = any(_identical_body(bodies, owners[s]) for s in sig_ids if s in owners)
        body_twins += shared
        names = sorted({s.name or s.id for s in context.library.signatures if s.id in sig_ids})
        details.append(f"{path.relative_to(folder)} ~ {', '.join(names)}" + (" (identical body)" if shared else ""))
    return {"label": label, "set": str(folder), "signatures": len(context.library), "scanned": scanned,
            "files_flagged": flagged, "identical_body": body_twins, "false_pairs": false_pairs,
            "pairs": scanned * len(context.library), "details": details}  # fmt: skip


def _extra_vs_proxies(folder: Path, context: ScanContext, n: int) -> dict:
    """Every file under ``folder`` (real benign meshes from elsewhere, e.g. printer parts of
    public repositories: far more than the corpus's 43, so a rate near 1% can be told from 0)
    scanned against the same ``n``-proxy library. A file counts once, an archive too; files
    meshscan cannot read are left out of the count, not counted as clear."""
    t0 = time.perf_counter()
    run = _extra_scan(folder, context, f"{n} proxies", {})
    rate = run["files_flagged"] / max(run["scanned"], 1)
    print(
        f"- {run['scanned']} real benign files under {folder} against {len(context.library)} generated proxy "
        f"signatures: {run['files_flagged']} flagged ({rate:.1%}) {run['details'] or ''} "
        f"({time.perf_counter() - t0:.0f} s)"
    )
    return run | {"enrolled": n}


def _false_rate(run: dict) -> float:
    """Real parts falsely flagged, not counting those that hold a body identical to one of the
    matched signature's file (the issue: such a part "may match, and is reported as such")."""
    return (run["files_flagged"] - run["identical_body"]) / max(run["scanned"], 1)


def print_verdict(report: dict) -> None:
    """Against the issue's targets, in one place: does the matcher survive, and at what cost."""
    rows = report["evasions"]
    missed = [f"{r['family']} [{r['strength']}]" for r in rows if r["status"] != "PASS"]
    print()
    print("### Against issue 11's targets")
    print(f"- recall tiers: {len(rows) - len(missed)} of {len(rows)} rows met" + (
        "" if rows else " (no evasion selected)") + (
        "" if not missed else f"; missed: {len(missed)}"))  # fmt: skip
    benign = report.get("benign")
    if benign:
        enough = (
            "" if benign["pairs"] >= 100_000 else " (fewer than the 100,000 pairs the target needs: --proxies/--benign)"
        )
        ok = "met" if benign["false_pairs"] == 0 else "NOT met"
        print(f"- 0 false (benign, signature) pairs: {ok}, {benign['false_pairs']} of {benign['pairs']}{enough}")
    corpus = report.get("real_corpus")
    if corpus:
        for run in corpus["runs"]:
            rate = _false_rate(run)
            ok = "met" if rate <= 0.01 else "NOT met"
            twins = f"; {run['identical_body']} more share an identical body: may match, reported" if run[
                "identical_body"] else ""  # fmt: skip
            where = f" (files under {run['set']})" if run.get("set") else ""
            print(f"- <= 1% real parts{where} falsely flagged with {run['label']} enrolled: {ok} ({rate:.1%}{twins})")
    every = bool(rows) and not missed and (not benign or benign["false_pairs"] == 0) and all(
        _false_rate(r) <= 0.01 for r in (corpus or {"runs": []})["runs"])  # fmt: skip
    print(f"- every target of this run met: {'yes' if every else 'no'}")
    report["all_targets_met"] = every


# ---------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--proxies", type=int, default=24, help="generated proxies enrolled (default 24)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--benign", type=int, default=300, help="generated benign look-alikes scanned (0: skip)")
    ap.add_argument("--families", help="only evasions whose 'family [strength]' matches this regex")
    ap.add_argument("--json", type=Path, help="write every figure (and each miss) here")
    ap.add_argument("--real-corpus", help="public corpus folder (default: ../shared/corpus/public if present)")
    ap.add_argument("--no-real-corpus", action="store_true", help="skip the real-parts check")
    ap.add_argument("--corpus-min-triangles", type=int, default=100,
                    help="real parts below this are test primitives (cubes, single triangles), skipped")  # fmt: skip
    ap.add_argument("--enrol-jobs", type=int, default=1, help="processes enrolling a --proxy-libraries library")
    ap.add_argument("--library-cache", type=Path,
                    help="keep each --proxy-libraries library here, reused by later runs of the same code")  # fmt: skip
    ap.add_argument("--proxy-libraries", type=int, nargs="*", metavar="N",
                    help="also scan the real parts against N generated proxy signatures (e.g. 1000 10000)")  # fmt: skip
    ap.add_argument("--extra-benign", action="append", default=[], metavar="DIR",
                    help="real benign meshes from elsewhere (every file under DIR; repeatable), scanned "
                         "against each --proxy-libraries library beside the corpus")  # fmt: skip
    ap.add_argument("--within", type=int, metavar="N",
                    help="enrol the bench proxies into N generated proxy signatures (cached like "
                         "--proxy-libraries) and scan the copies against all of them: recall in a "
                         "crowded library")  # fmt: skip
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    report: dict = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(prefix="meshscan-evasion-") as tmp:
        work = Path(tmp)
        results, meta = run_evasions(args, work)
        lib = meta.pop("library")
        meta.pop("work")
        print(
            f"## Evasions: {meta['proxies']} generated proxies enrolled ({meta['signatures']} signatures, "
            f"seed {args.seed}); signature matching alone (no classifier); scanner {scanner.__version__}"
        )
        print()
        print_table(results)
        report["evasions"] = [r.to_dict() for r in results]
        report["evasion_meta"] = meta
        if args.benign > 0:
            report["benign"] = run_benign(args, lib, work)
        corpus = None if args.no_real_corpus else locate_corpus(args.real_corpus)
        if corpus is not None:
            report["real_corpus"] = run_corpus(args, corpus, work)
        elif not args.no_real_corpus:
            print("\n(real-parts check skipped: no corpus found; pass --real-corpus DIR)")
    print_verdict(report)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"\n(total {report['seconds']} s)")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
