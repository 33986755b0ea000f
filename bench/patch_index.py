"""Local patch lookups at library scale: open and query cost of the patch index.

    python bench/patch_index.py [--signatures 100000 1000000] [--codes 500 100] [--query-codes 10000]

Writes synthetic patch columns the way a saved library holds them (codes sorted, with sizes,
shares and signature positions; ``scanner.library.ARRAYS`` group ``patches``) for each
(signatures, codes per signature) pair, memory-maps them in a fresh process as
``SignatureLibrary.load`` does, builds :class:`scanner.patch_index.PatchIndex` and times a
query of ``--query-codes`` distinct codes (a 5k-triangle upload has about 10,000: one ring and
one fold code per triangle) that contains 60 codes of one signature (so the vote finds it).
Peer columns in the same run: numpy's ``searchsorted`` of the same needles on the same map
(the lookup floor) and reading the code column once (what a sortedness check or a count at
open would cost). One core; CPU time is the figure that matters on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

CHILD = r"""
import json, sys, time, resource
import numpy as np
from scanner.features.patches import PatchCodes
from scanner.patch_index import PatchIndex
root, signatures, needles = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
t0, c0 = time.perf_counter(), time.process_time()
cols = [np.load(f"{root}/{k}.npy", mmap_mode="r") for k in ("codes", "sizes", "shares", "sigs")]
index = PatchIndex(*cols, signatures=signatures, ordered=True)
open_s, open_cpu = time.perf_counter() - t0, time.process_time() - c0
q = np.load(f"{root}/query.npy")
query = PatchCodes(q["code"], q["size"], np.ones(len(q)))
index.query(query)  # pages in what the query touches
runs = []
for _ in range(5):
    c = time.process_time()
    hits = index.query(query)
    runs.append(time.process_time() - c)
floor = []
for _ in range(5):
    c = time.process_time()
    np.searchsorted(cols[0], np.sort(q["code"]))
    floor.append(time.process_time() - c)
c = time.process_time()
int(np.asarray(cols[0]).max())
scan_cpu = time.process_time() - c
found = [h.signature for h in hits]
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"open_s": open_s, "open_cpu": open_cpu, "query_ms": 1000 * min(runs), "floor_ms": 1000 * min(floor),
                  "scan_s": scan_cpu, "found": found, "rss_mib": rss}))
"""


def write_columns(root: Path, signatures: int, per: int, needles: int, seed: int = 0) -> int:
    """Sorted synthetic columns in chunks (never the whole set in RAM twice); returns entries."""
    rng = np.random.default_rng(seed)
    n = signatures * per
    codes = rng.integers(0, 2**63, size=n, dtype=np.int64).astype(np.uint64) << np.uint64(1)
    codes |= rng.integers(0, 2, size=n).astype(np.uint64)  # kind bit
    sigs = np.repeat(np.arange(signatures, dtype=np.int64), per)
    target = int(rng.integers(signatures))
    mine = codes[(sigs == target) & ((codes & np.uint64(1)) == 0)][:60]  # ring codes: counted together
    order = np.argsort(codes, kind="stable")
    np.save(root / "codes.npy", codes[order])
    np.save(root / "sigs.npy", sigs[order])
    del codes, sigs, order
    np.save(root / "sizes.npy", np.full(n, 10, dtype=np.int16))
    np.save(root / "shares.npy", np.full(n, 1.0 / per, dtype=np.float32))
    query = np.zeros(needles, dtype=[("code", "<u8"), ("size", "<i2")])
    query["code"][: needles - len(mine)] = rng.integers(0, 2**63, size=needles - len(mine), dtype=np.int64)
    query["code"][needles - len(mine) :] = mine
    query["size"] = 10
    np.save(root / "query.npy", query)
    (root / "target").write_text(str(target))
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--signatures", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument(
        "--codes", type=int, nargs="+", default=[500, 100], help="codes per signature, one per --signatures"
    )
    ap.add_argument("--query-codes", type=int, default=10_000)
    args = ap.parse_args()
    print(
        "| signatures | codes each | entries | columns GiB | open s (CPU) | query ms CPU | searchsorted floor ms "
        "| read code column s | found | RSS MiB |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for signatures, per in zip(args.signatures, args.codes, strict=True):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            n = write_columns(root, signatures, per, args.query_codes)
            size = sum(p.stat().st_size for p in root.glob("*.npy")) / 2**30
            proc = subprocess.run([sys.executable, "-c", CHILD, tmp, str(signatures), str(args.query_codes)],
                                  capture_output=True, text=True, check=True)  # fmt: skip
            r = json.loads(proc.stdout)
            ok = r["found"] == [int((root / "target").read_text())]
            print(f"| {signatures:,} | {per} | {n:,} | {size:.2f} | {r['open_s']:.3f} ({r['open_cpu']:.3f}) | "
                  f"{r['query_ms']:.1f} | {r['floor_ms']:.1f} | {r['scan_s']:.2f} | {'yes' if ok else 'NO'} | "
                  f"{r['rss_mib']:.0f} |")  # fmt: skip
    print(f"query: {args.query_codes:,} distinct codes, 60 of them one signature's (found = the vote returns it and "
          "only it); target (issue 11 item 7): open <= 1 s, <= 10 ms a query per upload")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
