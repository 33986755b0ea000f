"""Calibrating the stretch-tolerant (affine-normalised) signal on data, never on test files.

    python bench/stretch.py [--per-class 10] [--benign-per-kind 6] [--seed 101] [--corpus DIR]

For generated proxies (``fixtures/generate.py``, seeds other than ``bench/evasion.py``'s 0),
their stretched copies (x0.8, x1.05, x1.2, x1.25 along a random axis; plus a random rotation),
generated benign look-alikes (another seed) and the real public corpus, it prints the three
quantities the matcher's affine rule reads (:mod:`scanner.features.affine`):

- ``dw``: distance between whitened rows;
- ``dp``: distance between plain whole-file rows;
- ``spread``: the least stretch (log factor) that explains the two plain inertia ratios;

as quantiles for true (stretched copy, own signature) pairs, and as the count of false pairs
(benign x proxy, corpus x corpus with twins dropped) that a candidate rule
``dw <= A and dp <= B and spread <= C`` accepts, for a grid of (A, B, C).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import scanner  # noqa: E402
from bench.robustness import locate_corpus  # noqa: E402
from fixtures.evasions import random_rotation  # noqa: E402
from fixtures.generate import generate  # noqa: E402
from scanner.features import describe  # noqa: E402
from scanner.features.affine import affine_distance, affine_row, stretch_spread  # noqa: E402
from scanner.features.version import DESCRIPTOR_SIZE  # noqa: E402
from scanner.mesh import Mesh  # noqa: E402

FACTORS = (1.0, 0.8, 1.05, 1.2, 1.25)
INERTIA = slice(DESCRIPTOR_SIZE - 2, DESCRIPTOR_SIZE)


def rows_of(mesh: Mesh) -> tuple[np.ndarray, np.ndarray]:
    """(plain whole-file row, affine row) of a mesh."""
    plain = describe(mesh).rows()[0][0].astype(np.float64)
    surf = mesh.surface()
    return plain, affine_row(surf.corners32, surf.corner_keys, DESCRIPTOR_SIZE).astype(np.float64)


def stretched(mesh: Mesh, factor: float, rng: np.random.Generator) -> Mesh:
    tri = mesh.surface().corners32.astype(np.float64).reshape(-1, 3)
    s = np.ones(3)
    s[int(rng.integers(0, 3))] = factor
    return Mesh(vertices=(tri * s) @ random_rotation(rng).T)


def load_set(folder: Path, rows: list[tuple[str, str, str]]) -> list[tuple[str, Mesh]]:
    return [(group, scanner.load(folder / rel)) for rel, _cat, group in rows]


def pair_stats(q_plain, q_aff, s_plain, s_aff) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dw, dp, spread for every (query, signature) pair: arrays (Q, S)."""
    dw = affine_distance(q_aff[:, None, :], s_aff[None, :, :])
    dp = np.sqrt(((q_plain[:, None, :] - s_plain[None, :, :]) ** 2).sum(axis=-1))
    spread = stretch_spread(s_plain[None, :, INERTIA], q_plain[:, None, INERTIA])
    return dw, dp, spread


def quantiles(name: str, x: np.ndarray) -> None:
    q = np.quantile(x, [0.5, 0.9, 0.95, 1.0]) if len(x) else [np.nan] * 4
    print(f"  {name:8s} median {q[0]:.4f}  p90 {q[1]:.4f}  p95 {q[2]:.4f}  max {q[3]:.4f}")


KEYS = (1.0, 1.05, 1.2, 1.25, 0.8, "corpus 1.2")
GRID = ((0.015, 0.018, 0.02, 0.022, 0.025), (0.2, 0.25, 0.3), (0.25, 0.3))
"""The rule's candidate (A, B, C) values: whitened threshold, plain band, stretch band."""


def print_grid(true: dict, false_b: tuple, false_c: tuple | None, false_cp: tuple | None = None) -> None:
    """Recall and false pairs of every candidate rule ``dw <= A and dp <= B and spread <= C``."""
    print("\nrule dw<=A & dp<=B & spread<=C: recall " + " / ".join(f"x{k}" for k in KEYS if k in true)
          + " ; false benign pairs ; false corpus pairs ; false (corpus, proxy) pairs")  # fmt: skip

    def passes(t: tuple, a: float, b: float, c: float) -> np.ndarray:
        return (t[0] <= a) & (t[1] <= b) & (t[2] <= c)

    for a in GRID[0]:
        for b in GRID[1]:
            for c in GRID[2]:
                rec = [float(np.mean(passes(true[k], a, b, c))) for k in KEYS if k in true]
                fb = int(passes(false_b, a, b, c).sum())
                fc = "-" if false_c is None else int(passes(false_c, a, b, c).sum())
                fcp = "-" if false_cp is None else int(passes(false_cp, a, b, c).sum())
                rates = " / ".join(f"{r:.0%}" for r in rec)
                print(f"  A={a:.3f} B={b:.2f} C={c:.2f}: {rates} ; {fb} ; {fc} ; {fcp}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--benign-per-kind", type=int, default=6)
    ap.add_argument("--seed", type=int, default=101)
    ap.add_argument("--corpus", help="public corpus folder (default: ../shared/corpus/public if present)")
    ap.add_argument("--out", type=Path, help="write the raw arrays here (.npz, no pickle)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="meshscan-stretch-") as tmp:
        work = Path(tmp)
        proxies = load_set(work / "p", generate(work / "p", args.per_class, args.seed, benign_per_kind=0))
        benign = load_set(work / "b", generate(work / "b", 0, args.seed + 7919, benign_per_kind=args.benign_per_kind))
    s = [rows_of(m) for _, m in proxies]
    s_plain, s_aff = np.stack([a for a, _ in s]), np.stack([b for _, b in s])
    print(f"{len(proxies)} proxies (seed {args.seed}), {len(benign)} benign (seed {args.seed + 7919})")
    true: dict[float | str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for f in FACTORS:
        q = [rows_of(stretched(m, f, rng)) for _, m in proxies]
        qp, qa = np.stack([a for a, _ in q]), np.stack([b for _, b in q])
        dw, dp, sp = pair_stats(qp, qa, s_plain, s_aff)
        idx = np.arange(len(proxies))
        true[f] = (dw[idx, idx], dp[idx, idx], sp[idx, idx])
        print(f"stretch x{f:g} one axis, own signature:")
        for name, x in zip(("dw", "dp", "spread"), true[f], strict=True):
            quantiles(name, x)
    b = [rows_of(m) for _, m in benign]
    b_plain, b_aff = np.stack([a for a, _ in b]), np.stack([x for _, x in b])
    false_b = pair_stats(b_plain, b_aff, s_plain, s_aff)
    print(f"benign x proxy pairs: {false_b[0].size}")
    for name, x in zip(("dw", "dp", "spread"), false_b, strict=True):
        print(f"  {name:8s} p0.1 {np.quantile(x, 0.001):.4f}  p1 {np.quantile(x, 0.01):.4f}  min {x.min():.4f}")
    corpus = locate_corpus(args.corpus)
    false_c = false_cp = None
    if corpus is not None:
        c_rows, c_tris = [], []
        for path in sorted(corpus.rglob("*")):
            if not path.is_file() or path.name in ("MANIFEST.tsv", "README.md"):
                continue
            try:
                mesh = scanner.load(path)
                if mesh.triangle_count >= 100:
                    c_rows.append(rows_of(mesh))
                    c_tris.append(mesh.surface().corners32.astype(np.float64).reshape(-1, 3))
            except (scanner.UnreadableInput, ValueError):
                continue
        c_plain, c_aff = np.stack([a for a, _ in c_rows]), np.stack([x for _, x in c_rows])
        dw, dp, sp = pair_stats(c_plain, c_aff, c_plain, c_aff)
        upper = np.triu(np.ones_like(dw, dtype=bool), 1) & (dp > 0.025)  # plain twins dropped
        false_c = (dw[upper], dp[upper], sp[upper])
        q = [rows_of(stretched(Mesh(vertices=t), 1.2, rng)) for t in c_tris]
        qp, qa = np.stack([a for a, _ in q]), np.stack([x for _, x in q])
        dw, dp, sp = pair_stats(qp, qa, c_plain, c_aff)
        idx = np.arange(len(c_rows))
        true["corpus 1.2"] = (dw[idx, idx], dp[idx, idx], sp[idx, idx])
        print("corpus meshes stretched x1.2 one axis, own row:")
        for name, x in zip(("dw", "dp", "spread"), true["corpus 1.2"], strict=True):
            quantiles(name, x)
        print(f"corpus pairs (distinct, plain distance > 0.025): {upper.sum()} from {len(c_rows)} meshes")
        false_cp = pair_stats(c_plain, c_aff, s_plain, s_aff)
        print(f"corpus x proxy pairs: {false_cp[0].size}")
        for name, x in zip(("dw", "dp", "spread"), false_cp, strict=True):
            print(f"  {name:8s} p0.1 {np.quantile(x, 0.001):.4f}  p1 {np.quantile(x, 0.01):.4f}  min {x.min():.4f}")
        for name, x in zip(("dw", "dp", "spread"), false_c, strict=True):
            print(f"  {name:8s} p0.1 {np.quantile(x, 0.001):.4f}  p1 {np.quantile(x, 0.01):.4f}  min {x.min():.4f}")
    print_grid(true, false_b, false_c, false_cp)
    if args.out:
        arrays = {f"true_{f}_{k}": v for f, t in true.items() for k, v in zip(("dw", "dp", "sp"), t, strict=True)}
        arrays |= {f"benign_{k}": v for k, v in zip(("dw", "dp", "sp"), false_b, strict=True)}
        if false_c is not None:
            arrays |= {f"corpus_{k}": v for k, v in zip(("dw", "dp", "sp"), false_c, strict=True)}
            arrays |= {f"corpus_proxy_{k}": v for k, v in zip(("dw", "dp", "sp"), false_cp, strict=True)}
        np.savez(args.out, **arrays)
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
