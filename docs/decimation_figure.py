"""Draw what fast-simplification's default setting does to a densified proxy, beside the same
tool at a shape-keeping setting: the pictures under the README's "Evasions, measured".

    python docs/decimation_figure.py

Writes docs/decimation/<proxy>-<variant>.png (meshscan's own preview renderer,
:func:`scanner.preview.render_preview`: front, side and top views) for three of the 24 bench
proxies (seed 0) that the "decimation, densified, to 50%" row misses: as enrolled, densified
then decimated by :func:`fixtures.evasions.decimate` (aggressiveness 7, the tool's default and
trimesh's), and by :func:`fixtures.evasions.decimate_to_budget` (aggressiveness 5, to the same
50%). Synthetic proxies only (abstract boxes, cylinders and tubes). Needs the fixtures extra.
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path

import numpy as np

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(REPO))

SHOWN = ("proxy-barrel-s0-000", "proxy-frame_or_receiver-s0-001", "proxy-other_component-s0-003")


def main() -> int:
    import scanner
    from fixtures.evasions import as_trimesh, decimate, decimate_to_budget, densify
    from fixtures.generate import PROXY_CATEGORIES, generate
    from scanner.preview import render_preview

    with tempfile.TemporaryDirectory() as tmp:
        rows = generate(Path(tmp), math.ceil(24 / len(PROXY_CATEGORIES)), 0, benign_per_kind=0)
        parts = {Path(rel).stem: as_trimesh(scanner.load(Path(tmp) / rel)) for rel, _, _ in rows}
    out = DOCS / "decimation"
    out.mkdir(exist_ok=True)
    for name in SHOWN:
        dense = densify(parts[name])
        variants = {"enrolled": parts[name], "default": decimate(dense, 0.5), "kept": decimate_to_budget(dense, 0.5)}
        for variant, tm in variants.items():
            png = render_preview(np.asarray(tm.vertices), np.asarray(tm.faces), units="units")
            (out / f"{name}-{variant}.png").write_bytes(png)
            print(f"{name} {variant}: {len(tm.faces)} triangles (densified: {len(dense.faces)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
