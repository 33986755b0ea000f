"""The same file gives the same numbers whichever CPU paths numpy and OpenBLAS take.

A scan's descriptor rows, whitened (stretch) row, local patch codes and classifier row are
computed here in fresh processes under OpenBLAS's kernels for this CPU and for two older ones
(``OPENBLAS_CORETYPE``), and with numpy's AVX2 loops switched off (``NPY_DISABLE_CPU_FEATURES``),
and must be the same bits in each: a platform's verdicts, scores and exchanged signatures should
not depend on which machine of a cluster read the file.

Why it can fail: until issue 18's thirteenth pass the surface moments were a BLAS product,
which OpenBLAS sums in an order it picks by CPU; a round part's principal axes turn with the
last bits of its moments, so the classifier rows of the 48 demo parts below gave three
different digests under these three kernel sets (and the public corpus's spring pin scored
0.0039 on one machine and 0.0041 on another). The other rows were the same under each already.
What this cannot reach is a CPU this one is not: numpy's AVX-512 code paths.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO

_DIGESTS = """
import glob, hashlib, json
from threadpoolctl import threadpool_info
from scanner.loading import load
from scanner.shape import Shape
parts = {k: hashlib.sha256() for k in ("rows", "affine", "patches", "classifier")}
for path in sorted(glob.glob("fixtures/demo/*.stl") + glob.glob("fixtures/demo/*.obj")):
    shape = Shape.of(load(path), 10000)
    parts["rows"].update(shape.rows[0].tobytes())
    parts["affine"].update(shape.affine.tobytes())
    codes = shape.patch_codes
    parts["patches"].update(codes.codes.tobytes() + codes.sizes.tobytes() + codes.weights.tobytes())
    parts["classifier"].update(shape.classifier_row.tobytes())
blas = sorted({p.get("architecture") for p in threadpool_info() if p.get("internal_api") == "openblas"})
print(json.dumps({"digests": {k: v.hexdigest() for k, v in parts.items()}, "blas": blas}))
"""

SETTINGS = [{}, {"OPENBLAS_CORETYPE": "Sandybridge"}, {"OPENBLAS_CORETYPE": "Prescott"},
            {"NPY_DISABLE_CPU_FEATURES": "X86_V3"}]  # fmt: skip
"""This CPU's paths; OpenBLAS's kernels for two older CPUs; numpy without its AVX2 loops."""


def _run(setting: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES")}
    out = subprocess.run([sys.executable, "-c", _DIGESTS], capture_output=True, text=True, cwd=REPO,
                         env={**env, **setting}, timeout=600, check=True)  # fmt: skip
    return json.loads(out.stdout)


def test_shape_numbers_do_not_depend_on_the_cpu_paths() -> None:
    runs = [_run(setting) for setting in SETTINGS]
    kernels_seen = {tuple(run["blas"]) for run in runs[:3]}  # two when this CPU is one of the older two
    assert len(kernels_seen) >= 2, f"OpenBLAS did not switch kernels: {sorted(kernels_seen)}"
    first = runs[0]["digests"]
    for setting, run in zip(SETTINGS, runs, strict=True):
        assert run["digests"] == first, f"under {setting or 'this CPU'}: {run['digests']} != {first}"
