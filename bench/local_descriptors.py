"""Local-descriptor matching (issue 11, item 3) on synthetic proxies: partial and piecewise copies.

    python bench/local_descriptors.py [--proxies 20] [--negatives 300] [--corpus DIR] [--cache DIR]

What it does:
1. generates ``--proxies`` abstract proxies (fixtures/generate.py: boxes, cylinders, tubes) and
   enrols their local descriptors in a :class:`LocalIndex` whose benign codebook is built from
   generated benign look-alikes of another seed (so the negatives below are never in it);
2. makes queries of each proxy, each also rotated, mirrored half the time and uniformly scaled
   by 0.05-20x: the copy itself (``rotated+scaled``), vertex noise of 0.5% of the bounding-box
   diagonal, 70% and 50% kept (a plane cut, capped), split in 2 and in 4 by planes (each piece
   queried alone, and the union of the pieces' coverage as an upload holding all pieces would
   get), boolean-fused with a plate (manifold3d), and surrounded by 32 decoy boxes larger than
   the part (the upload described body by body, as connectivity gives them);
3. negatives: ``--negatives`` generated benign meshes of a third seed and, when present, every
   readable mesh of the public corpus (real objects nobody here made), each described body by
   body with the union taken, against every enrolled proxy;
4. prints, per query family, recall - the share of queries whose own signature reaches its
   coverage threshold (``max(0.3, 1.5 x`` the best coverage any codebook mesh reaches, set by
   ``LocalIndex.calibrate``); signatures with too few distinctive patches are not matchable
   and count as misses) - the false matches on the negatives, the describe cost per surface
   (and for a 5k- and a 1M-triangle mesh) and the bytes per stored signature.

Generated meshes are cached (``--cache``, default /tmp/meshscan-local-bench) as .npz of
triangles, so re-runs measure only the descriptor.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for scanner and fixtures when run from a checkout

import trimesh  # noqa: E402

from scanner.mesh import Mesh  # noqa: E402

FAMILIES = ("rotated+scaled", "noise 0.5%", "kept 70%", "kept 50%", "split 2 (piece)", "split 2 (union)",
            "split 4 (piece)", "split 4 (union)", "fused plate", "32 decoys")  # fmt: skip
PROXY_SEED, CODEBOOK_SEED, NEGATIVE_SEED = 101, 303, 202


# ---------------------------------------------------------------- generation
def _generator():
    import fixtures.generate as gen

    return gen


def _proxies(n: int, seed: int) -> list[trimesh.Trimesh]:
    gen = _generator()
    rng = np.random.default_rng(seed)
    gen._TESSELLATION[0] = np.random.default_rng([seed, 0x7E55])
    try:
        fns = list(gen.PROXIES.values())
        return [fns[i % len(fns)](rng) for i in range(n)]
    finally:
        gen._TESSELLATION[0] = None


def _benign(per_kind: int, seed: int) -> list[trimesh.Trimesh]:
    gen = _generator()
    rng = np.random.default_rng(seed)
    gen._TESSELLATION[0] = np.random.default_rng([seed, 0x7E55])
    try:
        return [fn(rng) for fn in gen.BENIGN.values() for _ in range(per_kind)]
    finally:
        gen._TESSELLATION[0] = None


def _similarity(m: trimesh.Trimesh, rng: np.random.Generator) -> trimesh.Trimesh:
    """Random rotation, uniform scale 0.05-20x (log-uniform), mirror half the time."""
    m = m.copy()
    t = trimesh.transformations.random_rotation_matrix(rng.random(3))
    s = float(np.exp(rng.uniform(np.log(0.05), np.log(20.0))))
    t[:3, :3] *= s
    if rng.random() < 0.5:
        t[:3, 0] *= -1
    m.apply_transform(t)  # trimesh flips the winding of a mirrored mesh itself
    return m


def _area_quantile_offset(m: trimesh.Trimesh, direction: np.ndarray, keep: float) -> float:
    """The plane offset along ``direction`` above which ``keep`` of the surface area lies."""
    c = m.triangles_center @ direction
    order = np.argsort(c)
    cum = np.cumsum(m.area_faces[order]) / m.area
    return float(c[order][np.searchsorted(cum, 1.0 - keep)])


def _cut(m: trimesh.Trimesh, direction: np.ndarray, offset: float) -> trimesh.Trimesh:
    """The part of ``m`` on the ``direction`` side of the plane, capped (manifold3d's exact cut)."""
    import manifold3d

    solid = manifold3d.Manifold(manifold3d.Mesh(np.asarray(m.vertices, np.float32), np.asarray(m.faces, np.uint32)))
    out = solid.trim_by_plane(tuple(float(x) for x in direction), float(offset)).to_mesh()
    return trimesh.Trimesh(np.asarray(out.vert_properties)[:, :3], np.asarray(out.tri_verts), process=False)


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _split(m: trimesh.Trimesh, rng: np.random.Generator, pieces: int) -> list[trimesh.Trimesh]:
    d1 = _unit(rng)
    o1 = _area_quantile_offset(m, d1, 0.5)
    halves = [_cut(m, d1, o1), _cut(m, -d1, -o1)]
    if pieces == 2:
        return halves
    d2 = np.cross(d1, _unit(rng))
    d2 /= np.linalg.norm(d2)
    out = []
    for h in halves:
        o2 = _area_quantile_offset(h, d2, 0.5)
        out += [_cut(h, d2, o2), _cut(h, -d2, -o2)]
    return out


def _fused(m: trimesh.Trimesh, rng: np.random.Generator) -> trimesh.Trimesh:
    """The part boolean-unioned with a plate overlapping it (one body)."""
    ext = m.extents
    big = np.argsort(ext)[::-1]
    size = np.empty(3)
    size[big[0]], size[big[1]], size[big[2]] = (
        ext[big[0]] * 1.3,
        ext[big[1]] * 1.5 + ext[big[0]] * 0.3,
        ext[big[0]] * 0.06,
    )
    at = m.bounds[0].copy() + ext / 2
    at[big[2]] = m.bounds[0][big[2]] + ext[big[2]] * rng.uniform(0.1, 0.3)  # sunk into the part's lower side
    plate = trimesh.creation.box(extents=size, transform=trimesh.transformations.translation_matrix(at))
    return trimesh.boolean.union([m, plate], engine="manifold")


def _decoys(m: trimesh.Trimesh, rng: np.random.Generator, n: int = 32) -> trimesh.Trimesh:
    """The part with ``n`` separate boxes, each larger than the part, around it."""
    diag = float(np.linalg.norm(m.extents))
    boxes = [m]
    for i in range(n):
        ext = rng.uniform(1.0, 2.0, 3) * diag
        ring, k = divmod(i, 8)
        angle = 2 * np.pi * (k + 0.5 * ring) / 8
        r = (2.5 + 2.5 * ring) * diag
        at = m.centroid + np.array([np.cos(angle) * r, np.sin(angle) * r, rng.uniform(-1, 1) * diag])
        boxes.append(trimesh.creation.box(extents=ext, transform=trimesh.transformations.translation_matrix(at)))
    return trimesh.util.concatenate(boxes)


def _noise(m: trimesh.Trimesh, rng: np.random.Generator, level: float) -> trimesh.Trimesh:
    m = m.copy()
    m.vertices = m.vertices + rng.normal(0, level * float(np.linalg.norm(m.extents)), m.vertices.shape)
    return m


def _tri(m: trimesh.Trimesh) -> np.ndarray:
    return np.asarray(m.triangles, dtype=np.float32)


def make_queries(m: trimesh.Trimesh, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """Every query family of one proxy: a list of surfaces (pieces) per family; every surface
    is also moved by its own random similarity (an uploader may pose each piece differently)."""
    q: dict[str, list[np.ndarray]] = {}
    q["rotated+scaled"] = [_tri(_similarity(m, rng))]
    q["noise 0.5%"] = [_tri(_similarity(_noise(m, rng, 0.005), rng))]
    for keep in (0.7, 0.5):
        d = _unit(rng)
        q[f"kept {int(keep * 100)}%"] = [_tri(_similarity(_cut(m, d, _area_quantile_offset(m, d, keep)), rng))]
    for pieces in (2, 4):
        s = float(np.exp(rng.uniform(np.log(0.05), np.log(20.0))))  # pieces of one upload share its scale
        parts = []
        for p in _split(m, rng, pieces):
            p = p.copy()
            p.apply_transform(trimesh.transformations.random_rotation_matrix(rng.random(3)))
            p.apply_scale(s)
            parts.append(_tri(p))
        q[f"split {pieces}"] = parts
    q["fused plate"] = [_tri(_similarity(_fused(m, rng), rng))]
    q["32 decoys"] = _bodies(_tri(_similarity(_decoys(m, rng), rng)))
    return q


def _bodies(tri: np.ndarray) -> list[np.ndarray]:
    """Bodies by connectivity of the welded triangles (as the scanner splits an upload)."""
    mesh = Mesh(vertices=tri.reshape(-1, 3), faces=None)
    return [b.corners32 for b in mesh.bodies()]


def _save(path: Path, groups: list[list[np.ndarray]]) -> None:
    arrays = {f"g{i}_p{j}": t for i, g in enumerate(groups) for j, t in enumerate(g)}
    np.savez(path, **arrays)


def _load(path: Path) -> list[list[np.ndarray]]:
    with np.load(path, allow_pickle=False) as z:
        out: dict[int, dict[int, np.ndarray]] = {}
        for key in z.files:
            g, p = key[1:].split("_p")
            out.setdefault(int(g), {})[int(p)] = z[key]
    return [[out[g][p] for p in sorted(out[g])] for g in sorted(out)]


def dataset(cache: Path, n_proxies: int, n_negatives: int, codebook_per_kind: int) -> dict:
    """Proxies, their queries, codebook meshes and negatives (cached as triangles)."""
    cache.mkdir(parents=True, exist_ok=True)
    tag = f"p{n_proxies}-n{n_negatives}-c{codebook_per_kind}"
    files = {k: cache / f"{k}-{tag}.npz" for k in ("proxies", "queries", "codebook", "negatives")}
    if all(f.is_file() for f in files.values()):
        return {k: _load(f) for k, f in files.items()}
    t0 = time.perf_counter()
    proxies = _proxies(n_proxies, PROXY_SEED)
    rng = np.random.default_rng(7)
    queries = []
    for m in proxies:
        fam = make_queries(m, rng)
        queries.append([np.array([len(fam[name]) for name in sorted(fam)], dtype=np.float32).reshape(-1, 1, 1)])
        queries[-1] += [t for name in sorted(fam) for t in fam[name]]
    per_kind = max(1, -(-n_negatives // 15))
    negatives = [[_tri(_similarity(b, rng))] for b in _benign(per_kind, NEGATIVE_SEED)[:n_negatives]]
    codebook = [[_tri(b)] for b in _benign(codebook_per_kind, CODEBOOK_SEED)]
    data = {"proxies": [[_tri(m)] for m in proxies], "queries": queries, "codebook": codebook, "negatives": negatives}
    for k, f in files.items():
        _save(f, data[k])
    print(f"generated the meshes in {time.perf_counter() - t0:.0f} s (cached in {cache})", file=sys.stderr)
    return data


def unpack_queries(group: list[np.ndarray]) -> dict[str, list[np.ndarray]]:
    counts = group[0].reshape(-1).astype(int)
    names = sorted(["rotated+scaled", "noise 0.5%", "kept 70%", "kept 50%", "split 2", "split 4", "fused plate",
                    "32 decoys"])  # fmt: skip
    out, at = {}, 1
    for name, c in zip(names, counts, strict=True):
        out[name] = group[at : at + c]
        at += c
    return out


def _default_corpus() -> Path:
    """$MESHSCAN_CORPUS/public, else the first ../shared/corpus/public above the checkout."""
    import os

    if os.environ.get("MESHSCAN_CORPUS"):
        return Path(os.environ["MESHSCAN_CORPUS"]) / "public"
    for up in REPO.parents:
        if (up / "shared" / "corpus" / "public" / "MANIFEST.tsv").is_file():
            return up / "shared" / "corpus" / "public"
    return REPO.parent / "shared" / "corpus" / "public"


def corpus_meshes(root: Path | None) -> list[tuple[str, list[np.ndarray]]]:
    """Every readable mesh of the public corpus, as its bodies."""
    if root is None:
        return []
    import scanner

    out = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() not in (".tsv", ".md", ".mtl")):
        try:
            mesh = scanner.load(path)
        except Exception:  # noqa: BLE001 - unreadable corpus files are simply not negatives
            continue
        if mesh.triangle_count < 4:
            continue
        out.append((str(path.relative_to(root)), [b.corners32 for b in mesh.bodies() if b.triangle_count >= 4]))
    return out


def _describe_all(groups, fn) -> tuple[list, float]:
    out, t0, n = [], time.perf_counter(), 0
    for g in groups:
        out.append([fn(t) for t in g])
        n += len(g)
    return out, (time.perf_counter() - t0) / max(n, 1) * 1000


def _own(matches: list, signature_id: str) -> float:
    """Coverage of the query's own signature in units of that signature's threshold (>= 1: found)."""
    return max([m.coverage / m.threshold for m in matches if m.signature_id == signature_id], default=0.0)


def _worst(matches: list) -> float:
    """The closest any signature comes to matching a negative, in units of its threshold."""
    return max([m.coverage / m.threshold for m in matches], default=0.0)


def cost(sizes: tuple[int, ...] = (5_000, 1_000_000)) -> dict[int, tuple[float, float]]:
    """Describe time (ms) of a query and of a signature for meshes of about these triangle counts
    (a proxy subdivided until it has them; the sampling is bounded, so the cost is in the patches)."""
    from scanner.features.local import describe_local, describe_signature

    base = _proxies(1, PROXY_SEED)[0]
    out = {}
    for n in sizes:
        m = base.copy()
        while len(m.faces) < n:
            m = m.subdivide()
        tri = _tri(m)
        describe_local(tri[: len(tri) // 4])  # warm caches and the allocator
        t0 = time.perf_counter()
        describe_local(tri)
        t1 = time.perf_counter()
        describe_signature(tri)
        out[len(tri)] = ((t1 - t0) * 1000, (time.perf_counter() - t1) * 1000)
    return out


def measure(
    data: dict, corpus: list, hamming: int, benign_hamming: int, min_distinctive: int, corpus_only: bool = False
) -> dict:
    """Coverage of every query against its own signature and of every negative against all."""
    from scanner.features.local import LocalIndex, benign_codebook, describe_local, describe_signature

    book_desc, _ = _describe_all(data["codebook"], describe_local)
    book = benign_codebook([d for g in book_desc for d in g])
    index = LocalIndex(benign=book, hamming=hamming, benign_hamming=benign_hamming, min_distinctive=min_distinctive)
    sig_desc, sig_ms = _describe_all(data["proxies"], describe_signature)
    distinctive = [index.add(f"proxy-{i}", g[0]) for i, g in enumerate(sig_desc)]
    index.build()
    index.calibrate(book_desc)
    rows: dict[str, list[float]] = {f: [] for f in FAMILIES}
    q_ms = []
    for i, group in enumerate([] if corpus_only else data["queries"]):
        fam = unpack_queries(group)
        for name, pieces in fam.items():
            t0 = time.perf_counter()
            descs = [describe_local(t) for t in pieces]
            q_ms.append((time.perf_counter() - t0) * 1000 / len(pieces))
            if name.startswith("split"):
                rows[f"{name} (piece)"] += [_own(index.query(d), f"proxy-{i}") for d in descs]
                rows[f"{name} (union)"].append(_own(index.query(descs), f"proxy-{i}"))
            else:
                rows[name].append(_own(index.query(descs), f"proxy-{i}"))
    neg_desc, neg_ms = _describe_all([] if corpus_only else data["negatives"], describe_local)
    negatives = [_worst(index.query(g)) for g in neg_desc]
    corpus_cov = []
    for _, bodies in corpus:
        descs = []
        for b in bodies:
            try:
                descs.append(describe_local(b))
            except ValueError:
                continue
        corpus_cov.append(_worst(index.query(descs)))
    sig_bytes = [sum(v.nbytes for v in d.signature_part().values()) for g in sig_desc for d in g]
    return {
        "rows": rows, "negatives": np.array(negatives), "corpus": np.array(corpus_cov), "distinctive": distinctive,
        "matchable": sum(n >= min_distinctive for n in distinctive), "sig_ms": sig_ms,
        "query_ms": float(np.mean(q_ms or [0.0])), "neg_ms": neg_ms,
        "sig_bytes": float(np.mean(sig_bytes)), "book": len(book),
    }  # fmt: skip


def report(res: dict, corpus_names: list[str]) -> None:
    """Recall = coverage at or above the signature's own threshold (``cov/thr`` >= 1)."""
    print(f"{'query family':<22}{'n':>5}{'recall':>9}{'median cov/thr':>16}")
    for fam in FAMILIES:
        v = np.array(res["rows"][fam])
        if not len(v):
            continue
        print(f"{fam:<22}{len(v):>5}{(v >= 1).mean():>9.0%}{np.median(v):>16.2f}")
    neg, cor = np.asarray(res["negatives"]), np.asarray(res["corpus"])
    if len(neg):
        false = int((neg >= 1).sum())
        print(f"{'benign negatives':<22}{len(neg):>5}  false matches {false} (max cov/thr {neg.max():.2f})")
    if len(cor):
        fm = [n for n, c in zip(corpus_names, cor, strict=True) if c >= 1]
        print(f"{'public corpus':<22}{len(cor):>5}  false matches {len(fm)} (max cov/thr {cor.max():.2f}) {fm}")
    print(f"signatures matchable: {res['matchable']}/{len(res['distinctive'])} (distinctive patches: "
          f"median {int(np.median(res['distinctive']))}); benign codebook {res['book']} codes")  # fmt: skip
    print(f"cost: signature {res['sig_ms']:.0f} ms, query {res['query_ms']:.0f} ms per surface "
          f"(negatives {res['neg_ms']:.0f} ms); {res['sig_bytes'] / 1024:.1f} KiB per signature")  # fmt: skip


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--proxies", type=int, default=20)
    ap.add_argument("--negatives", type=int, default=300)
    ap.add_argument("--codebook-per-kind", type=int, default=8)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/meshscan-local-bench"))
    ap.add_argument("--corpus", type=Path, default=_default_corpus())
    ap.add_argument("--no-corpus", action="store_true")
    ap.add_argument("--corpus-only", action="store_true", help="only the public-corpus negatives")
    ap.add_argument("--hamming", type=int, default=1)
    ap.add_argument("--benign-hamming", type=int, default=0)
    ap.add_argument("--min-distinctive", type=int, default=12)
    ap.add_argument("--generate-only", action="store_true")
    args = ap.parse_args()
    data = dataset(args.cache, args.proxies, args.negatives, args.codebook_per_kind)
    if args.generate_only:
        sys.exit(0)
    corpus = [] if args.no_corpus or not args.corpus.is_dir() else corpus_meshes(args.corpus)
    res = measure(data, corpus, args.hamming, args.benign_hamming, args.min_distinctive, args.corpus_only)
    (args.cache / "last-result.json").write_text(
        json.dumps({k: np.asarray(v).tolist() if isinstance(v, np.ndarray) else v for k, v in res.items()})
    )
    print(f"== hamming {args.hamming}, benign hamming {args.benign_hamming}, min distinctive {args.min_distinctive}")
    report(res, [n for n, _ in corpus])
    for n, (q_ms, s_ms) in ({} if args.corpus_only else cost()).items():
        print(f"describe {n:>9,} triangles: query {q_ms:.0f} ms, signature {s_ms:.0f} ms")
