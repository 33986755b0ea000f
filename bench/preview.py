"""Preview rendering speed: meshscan's numpy renderer vs matplotlib and a Pillow painter (issue 20, item 1).

    python bench/preview.py                 # 10k, 100k and 1M triangles, best of 3
    python bench/preview.py --quick         # 10k and 100k only, one run (a few seconds)
    python bench/preview.py --repeat 5 --sizes 1000000

Input: one synthetic, abstract closed shape (a torus whose tube radius is perturbed by smooth
seeded noise, triangulated as a regular grid: ``bench/load.py``'s generator) at each size.
Every tool renders the same three views (front, side, iso) into a PNG of about 480 x 160 px
and the time covers the whole call, from the arrays to the PNG bytes.

Tools (rows):
    meshscan     ``scanner.preview.render_preview`` (past ``MAX_TRIANGLES`` it samples triangles
                 in proportion to area; ``meshscan-full`` draws them all)
    matplotlib   mplot3d: one ``Poly3DCollection`` per view with Lambert-shaded face colours,
                 three subplots, ``savefig`` (Agg) to PNG at 480 x 160 px
    pillow       a painter's algorithm: faces projected, sorted back to front, each filled with
                 ``ImageDraw.polygon`` in its shade (the obvious dependency-light alternative)

trimesh's own renderer (``Scene.save_image``) needs an OpenGL context through pyglet, which a
headless worker does not have: it is not a peer here (the row says so when pyglet is absent).

Columns: best-of-``--repeat`` wall seconds, the CPU seconds of that process over the same
call (steadier than wall time on a shared machine), and the ratio of CPU seconds to
meshscan's on the same mesh (> 1: slower than meshscan; every tool here runs on one core).
One BLAS thread, as in a scan worker. A peer is not run again at a size when its first run
takes longer than ``--give-up`` seconds, nor at larger sizes. The machine is shared and
timings are noisy; compare ratios within a run.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as in a scan worker; before numpy's BLAS starts

import numpy as np  # noqa: E402

from bench.load import lumpy_torus  # noqa: E402
from scanner.preview import MAX_TRIANGLES, VIEWS, render_preview  # noqa: E402

W, H = 480, 160


def meshscan(v: np.ndarray, f: np.ndarray) -> bytes:
    png = render_preview(v, f)
    assert png is not None
    return png


def meshscan_full(v: np.ndarray, f: np.ndarray) -> bytes:
    png = render_preview(v, f, max_triangles=len(f))
    assert png is not None
    return png


def _shades(tris: np.ndarray, eye: np.ndarray) -> np.ndarray:
    n = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    light = np.array([-0.4, -0.6, 0.7]) + eye
    return 0.35 + 0.65 * np.abs(n @ (light / np.linalg.norm(light)))


def matplotlib_mplot3d(v: np.ndarray, f: np.ndarray) -> bytes:
    # the peer being measured, not meshscan's own plotting (which stays in scanner/report)
    import matplotlib  # noqa: TID251

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: TID251
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    tris = v[f]
    fig = plt.figure(figsize=(W / 100, H / 100), dpi=100)
    for i, (elev, azim) in enumerate(((0, -90), (0, 0), (30, -45))):
        ax = fig.add_subplot(1, 3, i + 1, projection="3d")
        eye = np.array([math.cos(math.radians(azim)), math.sin(math.radians(azim)), math.sin(math.radians(elev))])
        shade = _shades(tris, eye)[:, None] * np.array([0.59, 0.66, 0.75])
        ax.add_collection3d(Poly3DCollection(tris, facecolors=shade, edgecolors="none"))
        lo, hi = v.min(axis=0), v.max(axis=0)
        ax.set_xlim(lo[0], hi[0]), ax.set_ylim(lo[1], hi[1]), ax.set_zlim(lo[2], hi[2])
        ax.view_init(elev=elev, azim=azim)
        ax.set_axis_off()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out.getvalue()


def pillow_painter(v: np.ndarray, f: np.ndarray) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (W, H), (247, 247, 245))
    draw = ImageDraw.Draw(img)
    tris = v[f]
    for i, (_, direction) in enumerate(VIEWS):
        fwd = np.asarray(direction, dtype=float) / np.linalg.norm(direction)
        right = np.cross(fwd, [0, 0, 1.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, fwd)
        x, y, z = tris @ right, tris @ up, tris @ fwd
        scale = min((W / 3 - 12) / np.ptp(x), (H - 12) / np.ptp(y))
        px = (x - x.min()) * scale + 6 + i * W / 3
        py = H - 6 - (y - y.min()) * scale
        shade = (_shades(tris, -fwd)[:, None] * np.array([150, 168, 190])).astype(int)
        for t in np.argsort(-z.mean(axis=1)):  # back to front
            draw.polygon(list(zip(px[t], py[t], strict=True)), fill=tuple(shade[t]))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def trimesh_scene(v: np.ndarray, f: np.ndarray) -> bytes:
    import trimesh

    return trimesh.Trimesh(v, f, process=False).scene().save_image(resolution=(W // 3, H))


TOOLS: dict[str, Callable[[np.ndarray, np.ndarray], bytes]] = {
    "meshscan": meshscan,
    "meshscan-full": meshscan_full,
    "matplotlib": matplotlib_mplot3d,
    "pillow": pillow_painter,
    "trimesh": trimesh_scene,
}


def best_of(fn: Callable[[], object], repeat: int, give_up: float) -> tuple[float, float]:
    """Best wall seconds and best CPU seconds over the runs."""
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        if wall[0] > give_up:
            break
    return min(wall), min(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000", help="triangle counts, comma-separated")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--give-up", type=float, default=60.0, help="skip a peer's larger sizes past this")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    sizes = [10_000, 100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    repeat = 1 if args.quick else args.repeat
    print(f"meshscan preview: {W} x {H} px, 3 views; MAX_TRIANGLES = {MAX_TRIANGLES:,}; best of {repeat}")
    print(f"{'mesh':>14}  {'tool':<14} {'wall s':>8} {'cpu s':>8}  {'x meshscan':>10}")
    print("-" * 62)
    slow: set[str] = set()
    for n in sizes:
        v, f = lumpy_torus(n)
        v = v.astype(np.float64)
        base = None
        for name, tool in TOOLS.items():
            label = f"{len(f):,} tri"
            if name in slow:
                print(f"{label:>14}  {name:<14} skipped (past --give-up at a smaller size)")
                continue
            try:
                seconds, cpu = best_of(lambda tool=tool, v=v, f=f: tool(v, f), repeat, args.give_up)
            except ImportError as exc:
                print(f"{label:>14}  {name:<14} {'n/a':>8} {'':>8}  ({exc.name or exc} not installed)")
                continue
            if base is None:
                base = cpu
            if seconds > args.give_up:
                slow.add(name)
            print(f"{label:>14}  {name:<14} {seconds:>8.3f} {cpu:>8.3f}  {cpu / base:>10.1f}")
        print()


if __name__ == "__main__":
    main()
