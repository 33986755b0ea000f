"""Near-duplicate robustness of the meshscan descriptor on real meshes.

    python bench/robustness.py [--corpus DIR] [--seed 7] [--threshold T] [--benign-seeds N]

What it does (issue 3, item 7):
1. takes the public corpus meshes of >= 500 triangles that meshscan reads;
2. drops twins - meshes that are the same shape up to similarity (one model in several
   formats or tessellations, primitive spheres inside other files): two meshes are twins
   when their canonical geometry hashes are equal, when they share a file name but for the
   extension (``reference.obj`` and ``reference.ply``: one model exported twice, perturbed
   enough to sit just past the distance rule), or when any descriptor row (whole file
   or body) of one is closer than TWIN_DISTANCE to any row of the other - closer than a
   rotated copy of a mesh typically lands from itself; the first in path order is kept.
   Meshes as close as that to a primitive of the benign reference set (spheres, tori,
   plain cylinders) are dropped too: under scale invariance they are rightly equal to every
   other sphere, and meshscan gives such shapes no near-duplicate tolerance by design;
3. enrols a seeded random half as signatures; makes variants of each enrolled mesh (random
   rotation, scale 0.1x and 10x, mirror, loop subdivision, decimation to 50% and 25%,
   vertex noise 0.2% and 0.5% of the bounding-box diagonal, format round trips through
   STL, OBJ, PLY and 3MF files on disk, merged into one file with an unrelated mesh);
4. scans each variant against the library and prints recall per transformation, and the
   false-match rate on the never-enrolled half, over all (mesh, signature) pairs and per
   mesh, at the threshold (default: the shipped one);
5. optionally (--benign N --proxies P) generates P synthetic proxies (fixtures/generate.py)
   and enrols them next to the corpus signatures, generates N benign look-alikes (pipes,
   fittings, handles, brackets, enclosures, profiles, toys, generic objects - the hard
   negatives), and reports the false-match rate over all N x (signatures) pairs; with
   N = 500 and P = 200 that is over 100,000 pairs.
It also prints distance quantiles, which is how the shipped threshold was calibrated.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for scanner and fixtures when run from a checkout

import trimesh  # noqa: E402

import scanner  # noqa: E402
from fixtures.evasions import random_rotation  # noqa: E402
from scanner.config import MatchSettings  # noqa: E402
from scanner.features import describe  # noqa: E402
from scanner.features.reference import nearest_reference_distance, row_thresholds  # noqa: E402
from scanner.index import NearDuplicateIndex  # noqa: E402
from scanner.mesh import Mesh  # noqa: E402

TWIN_DISTANCE = 0.025
"""Closer than this (any body or whole-file row of one to any of the other) = same shape: a
rotated copy of one mesh lands at 0.01-0.02 from itself (sampling noise)."""


def _stem(path: str) -> str:
    """A model exported to several formats keeps its name: ``fuze.obj``, ``fuze.ply``, ``fuze.zip``."""
    name = Path(path).name.lower()
    for suffix in (".tar.gz", ".tar.bz2"):
        name = name.removesuffix(suffix)
    return str(Path(path).parent / Path(name).stem)


def _min_row_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)).min())


def locate_corpus(arg: str | None) -> Path | None:
    """The public corpus folder (holding MANIFEST.tsv): ``arg``, else ``$MESHSCAN_CORPUS/public``,
    else ``shared/corpus/public`` beside the checkout or beside any folder above it (a git
    worktree sits one level deeper than the main checkout)."""
    import os

    if arg:
        candidates = [Path(arg)]
    else:
        env = os.environ.get("MESHSCAN_CORPUS")
        candidates = [Path(env) / "public", Path(env)] if env else []
        candidates += [p / "shared" / "corpus" / "public" for p in REPO.parents]
    return next((c for c in candidates if (c / "MANIFEST.tsv").is_file()), None)


def find_corpus(arg: str | None) -> Path:
    found = locate_corpus(arg)
    if found is None:
        sys.exit("corpus not found: pass --corpus DIR (the folder holding MANIFEST.tsv)")
    return found


def to_trimesh(mesh: Mesh) -> trimesh.Trimesh:
    return trimesh.Trimesh(mesh.welded_vertices.astype(np.float64), mesh.welded_faces, process=False)


def from_trimesh(tm: trimesh.Trimesh, name: str) -> Mesh:
    return Mesh(vertices=np.asarray(tm.vertices, dtype=np.float64), faces=np.asarray(tm.faces), source=name)


def variants(mesh: Mesh, other: Mesh, rng: np.random.Generator, tmp: Path) -> dict[str, Mesh]:
    tm = to_trimesh(mesh)
    diag = float(np.linalg.norm(tm.bounds[1] - tm.bounds[0]))
    out: dict[str, Mesh] = {}
    rot = random_rotation(rng)
    out["rotation"] = from_trimesh(
        trimesh.Trimesh(tm.vertices @ rot.T + rng.normal(size=3), tm.faces, process=False), "rot"
    )
    out["scale 0.1x"] = from_trimesh(trimesh.Trimesh(tm.vertices * 0.1, tm.faces, process=False), "s01")
    out["scale 10x"] = from_trimesh(trimesh.Trimesh(tm.vertices * 10.0, tm.faces, process=False), "s10")
    mir = tm.vertices.copy()
    mir[:, 0] *= -1
    out["mirror"] = from_trimesh(trimesh.Trimesh(mir, tm.faces[:, ::-1], process=False), "mirror")
    try:
        v, f = trimesh.remesh.subdivide_loop(tm.vertices, tm.faces, iterations=1)
    except ValueError:  # loop subdivision needs a manifold; split each triangle in four instead
        v, f = trimesh.remesh.subdivide(tm.vertices, tm.faces)
    out["loop subdivision"] = from_trimesh(trimesh.Trimesh(v, f, process=False), "subdiv")
    v, f = trimesh.remesh.subdivide(tm.vertices, tm.faces)  # same surface, 4x the triangles
    out["midpoint subdivision"] = from_trimesh(trimesh.Trimesh(v, f, process=False), "midpoint")
    for frac in (0.5, 0.25):
        try:
            dec = tm.simplify_quadric_decimation(percent=1 - frac, aggression=5)
        except TypeError:
            dec = tm.simplify_quadric_decimation(face_count=int(len(tm.faces) * frac))
        out[f"decimation {int(frac * 100)}%"] = from_trimesh(dec, "dec")
    for level in (0.002, 0.005):
        noisy = tm.vertices + rng.normal(scale=level * diag / np.sqrt(3), size=tm.vertices.shape)
        out[f"noise {level * 100:.1f}%"] = from_trimesh(trimesh.Trimesh(noisy, tm.faces, process=False), "noise")
    for fmt in ("stl", "obj", "ply", "3mf"):
        path = tmp / f"roundtrip.{fmt}"
        rotated = trimesh.Trimesh(tm.vertices @ rot.T, tm.faces, process=False)
        rotated.export(path)
        out[f"format {fmt.upper()}"] = scanner.load(path)
    o = to_trimesh(other)
    shift = tm.bounds[1] - o.bounds[0] + 0.1 * diag
    scale = diag / max(float(np.linalg.norm(o.bounds[1] - o.bounds[0])), 1e-12)
    o_v = (o.vertices - o.bounds[0]) * scale + tm.bounds[0] + np.array([shift[0] + diag, 0, 0])
    merged = trimesh.util.concatenate([tm, trimesh.Trimesh(o_v, o.faces, process=False)])
    out["merged with another mesh"] = from_trimesh(merged, "merged")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threshold", type=float, default=MatchSettings().distance_threshold)
    ap.add_argument("--min-triangles", type=int, default=500)
    ap.add_argument("--benign", type=int, default=0, help="also generate this many benign look-alikes ...")
    ap.add_argument("--proxies", type=int, default=200, help="... and enrol this many generated proxies")
    args = ap.parse_args()
    corpus = find_corpus(args.corpus)
    rows = list(csv.DictReader(open(corpus / "MANIFEST.tsv"), delimiter="\t"))
    meshes: list[tuple[str, Mesh]] = []
    for r in sorted(rows, key=lambda r: r["path"]):
        try:
            m = scanner.load(corpus / r["path"])
        except scanner.UnreadableInput:
            continue
        if m.triangle_count >= args.min_triangles:
            meshes.append((r["path"], m))
    t0 = time.perf_counter()
    descs = [describe(m) for _, m in meshes]
    twin_distance = TWIN_DISTANCE
    rows_of = [d.rows()[0] for d in descs]
    kept, dropped = [], []
    for i, (path, _m) in enumerate(meshes):
        twin = next(
            (j for j in kept if descs[j].geometry_hash == descs[i].geometry_hash
             or _stem(meshes[j][0]) == _stem(path)
             or _min_row_distance(rows_of[i], rows_of[j]) < twin_distance),
            None,
        )  # fmt: skip
        primitive = float(nearest_reference_distance(descs[i].whole[None, :])[0]) < twin_distance
        if twin is None and not primitive:
            kept.append(i)
        elif twin is None:
            dropped.append((path, "a primitive shape of the benign reference set (sphere, torus, cylinder, ...)"))
        else:
            dropped.append((path, meshes[twin][0]))
    print(
        f"corpus meshes >= {args.min_triangles} triangles: {len(meshes)}; twins and primitives dropped: {len(dropped)}"
    )
    for path, twin in dropped:
        print(f"  twin: {path} ~ {twin}")
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(kept))
    enrolled = [kept[i] for i in order[: len(kept) // 2]]
    held_out = [kept[i] for i in order[len(kept) // 2 :]]

    index = NearDuplicateIndex()
    for sig, i in enumerate(enrolled):
        vectors, bodies = descs[i].rows()
        index.add(vectors, [sig] * len(vectors), bodies, row_thresholds(vectors, args.threshold))
    index.build()

    results: dict[str, list[tuple[bool, float]]] = {}
    misses: list[tuple[str, str, float, float]] = []
    thr_of = {sig: index.thresholds[np.asarray(index.signatures) == sig] for sig in range(len(enrolled))}
    with tempfile.TemporaryDirectory() as tmp:
        for sig, i in enumerate(enrolled):
            other = meshes[held_out[sig % len(held_out)]][1]
            for name, variant in variants(meshes[i][1], other, rng, Path(tmp)).items():
                vectors, _ = describe(variant).rows()
                best = float(index.min_distance_per_signature(vectors)[sig])
                rel = float(index.min_distance_per_signature(vectors, relative=True)[sig])
                results.setdefault(name, []).append((rel <= 1.0, best))
                if rel > 1.0:
                    misses.append((meshes[i][0], name, best, float(thr_of[sig].max())))
    print()
    for path, name, best, sig_thr in misses:
        print(f"  miss: {path} after {name}: distance {best:.4f}, signature threshold at most {sig_thr:.4f}")
    thr = index.thresholds
    print(
        f"Recall with per-signature thresholds (global {args.threshold:g}; calibrated against benign references: "
        f"median {np.median(thr):.4f}, min {thr.min():.4f}); {len(enrolled)} enrolled; descriptor {descs[0].version}"
    )
    print(f"{'transformation':28s} {'recall':>8s} {'n':>4s} {'median d':>9s} {'p95 d':>8s} {'max d':>8s}")
    for name, rs in results.items():
        d = np.array([x[1] for x in rs])
        rec = np.mean([x[0] for x in rs])
        print(
            f"{name:28s} {rec * 100:7.1f}% {len(rs):4d} {np.median(d):9.4f} {np.quantile(d, 0.95):8.4f} {d.max():8.4f}"
        )
    # false matches: every never-enrolled mesh against every signature
    pair_d, pair_rel = [], []
    per_mesh = []
    for i in held_out:
        vectors, _ = descs[i].rows()
        dmin = index.min_distance_per_signature(vectors)
        rel = index.min_distance_per_signature(vectors, relative=True)
        pair_d.append(dmin)
        pair_rel.append(rel)
        per_mesh.append(bool((rel <= 1.0).any()))
        for sig in np.flatnonzero(rel <= 1.0):
            print(f"  false match: {meshes[i][0]} ~ signature {meshes[enrolled[sig]][0]} at {dmin[sig]:.4f}")
    pair_d = np.concatenate(pair_d)
    fm = (np.concatenate(pair_rel) <= 1.0).sum()
    print()
    print(f"False matches on the never-enrolled half ({len(held_out)} meshes x {len(enrolled)} signatures):")
    print(f"  pairs: {fm} / {len(pair_d)} = {fm / len(pair_d) * 100:.3f}%")
    print(f"  meshes with any false match: {sum(per_mesh)} / {len(per_mesh)} = {np.mean(per_mesh) * 100:.2f}%")
    q = np.quantile(pair_d, [0.001, 0.01, 0.05])
    print(
        f"  nearest unrelated pair distance {pair_d.min():.4f}; quantiles 0.1% {q[0]:.4f}, 1% {q[1]:.4f}, 5% {q[2]:.4f}"
    )
    if args.benign:
        benign_false_matches(index, len(enrolled), args, rng)
    print(f"(total {time.perf_counter() - t0:.1f} s)")


def benign_false_matches(index: NearDuplicateIndex, n_corpus_sigs: int, args: argparse.Namespace,
                         rng: np.random.Generator) -> None:  # fmt: skip
    from fixtures.generate import BENIGN, PROXIES

    gen = np.random.default_rng(args.seed + 1000)
    proxies = list(PROXIES.values())
    proxy_meshes = []
    for p in range(args.proxies):
        tm = proxies[p % len(proxies)](gen)
        proxy_meshes.append(tm)
        vectors, bodies = describe(from_trimesh(tm, "proxy")).rows()
        index.add(vectors, [n_corpus_sigs + p] * len(vectors), bodies, row_thresholds(vectors, args.threshold))
    index.build()
    # how many proxy signatures keep near-duplicate tolerance at all (their shapes are simple)
    proxy_rows = index.signatures >= n_corpus_sigs
    thr = index.thresholds[proxy_rows]
    print()
    below = (thr < 0.02).mean() * 100
    print(f"Proxy signatures: per-row thresholds median {np.median(thr):.4f}; {below:.0f}% are below the")
    print("  sampling noise (0.02) and match exact copies only")
    hits = {"rotation": 0, "noise 0.2%": 0}
    for p, tm in enumerate(proxy_meshes[:60]):
        rot = trimesh.Trimesh(tm.vertices @ random_rotation(rng).T, tm.faces, process=False)
        diag = float(np.linalg.norm(tm.extents))
        noisy = trimesh.Trimesh(tm.vertices + rng.normal(scale=0.002 * diag / np.sqrt(3), size=tm.vertices.shape),
                                tm.faces, process=False)  # fmt: skip
        for name, variant in (("rotation", rot), ("noise 0.2%", noisy)):
            vectors, _ = describe(from_trimesh(variant, name)).rows()
            hits[name] += index.min_distance_per_signature(vectors, relative=True)[n_corpus_sigs + p] <= 1.0
    n = min(60, len(proxy_meshes))
    print(f"  recall of the first {n} proxies: " + ", ".join(f"{k} {v / n * 100:.0f}%" for k, v in hits.items()))
    n_sigs = n_corpus_sigs + args.proxies
    kinds = list(BENIGN.items())
    worst, any_match, pairs, matched = [], 0, 0, 0
    per_kind: dict[str, list[int]] = {}
    for b in range(args.benign):
        kind, fn = kinds[b % len(kinds)]
        vectors, _ = describe(from_trimesh(fn(gen), kind)).rows()
        dmin = index.min_distance_per_signature(vectors)[:n_sigs]
        hits = int((index.min_distance_per_signature(vectors, relative=True)[:n_sigs] <= 1.0).sum())
        pairs += len(dmin)
        matched += hits
        any_match += hits > 0
        per_kind.setdefault(kind, [0, 0])
        per_kind[kind][0] += 1
        per_kind[kind][1] += hits > 0
        worst.append(dmin.min())
    worst = np.array(worst)
    print()
    print(f"False matches of {args.benign} generated benign look-alikes against {n_corpus_sigs} corpus + "
          f"{args.proxies} proxy signatures:")  # fmt: skip
    print(f"  pairs: {matched} / {pairs} = {matched / pairs * 100:.4f}%")
    print(f"  meshes with any false match: {any_match} / {args.benign} = {any_match / args.benign * 100:.2f}%")
    print(
        "  by kind (meshes with a false match / meshes): "
        + ", ".join(f"{k} {v[1]}/{v[0]}" for k, v in per_kind.items())
    )
    q = np.quantile(worst, [0.001, 0.01, 0.05])
    print(f"  nearest-signature distance per mesh: min {worst.min():.4f}; quantiles 0.1% {q[0]:.4f}, 1% {q[1]:.4f}, "
          f"5% {q[2]:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
