"""Calibration of the piece-row confirmation: every plane-cut piece hit that stands before it.

    python bench/piece_hits.py true  --seed 0 --out hits-true-0.jsonl [--proxies 24]
    python bench/piece_hits.py benign --proxies 200 --benign 500 --out hits-benign.jsonl
    python bench/piece_hits.py corpus --proxies 1000 --out hits-corpus.jsonl
    python bench/piece_hits.py summary hits-*.jsonl

Why: a hit on a signature's plane-cut piece (:mod:`scanner.features.pieces`) is what finds a
partial, split, fused or sliced copy, and it is also where every remaining benign false pair
of ``bench/evasion.py`` was. To choose a confirmation by measurement, this records, with the
confirmation switched off (``scanner.matching.Matcher._confirm_pieces`` replaced by a recorder),
each piece hit that passes every other test of the matcher, with the statistics a rule could
read: distance / threshold, the other upload rows' agreement with the same signature, the
piece's neighbours among the signature's own rows, the margin to other designs and to the
generic references. ``true`` runs the evasion families that need pieces on ``--proxies``
enrolled proxies (a hit on the proxy's own signature is a true one); ``benign`` scans generated
benign look-alikes (every hit is false); ``corpus`` scans the public corpus against generated
proxy signatures (every hit is false). Libraries are cached under ``--cache`` by size and seed
(enrolment does not read the matcher).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import scanner  # noqa: E402
from bench.evasion import _library, _round_robin  # noqa: E402
from bench.robustness import locate_corpus  # noqa: E402
from fixtures.evasions import EVASIONS, as_trimesh  # noqa: E402
from fixtures.generate import BENIGN_KINDS, PROXY_CATEGORIES, generate  # noqa: E402
from scanner.features.affine import AFFINE_ROW  # noqa: E402
from scanner.features.pieces import piece_share  # noqa: E402
from scanner.features.reference import nearest_generic_distance  # noqa: E402
from scanner.library import SignatureLibrary  # noqa: E402
from scanner.matching import SAME_DESIGN, Matcher  # noqa: E402
from scanner.pipeline import ScanContext, scan_one  # noqa: E402
from scanner.verdict import FLAG  # noqa: E402

PIECE_FAMILIES = "split|partial|fused|G-code|decimation"
CURRENT: dict = {}
RECORDS: list[dict] = []
CAUGHT: dict[str, list[int]] = {}
"""Per evasion family (``true``) or benign set: [uploads flagged, uploads] - with the rule as
installed (``--rule-on``: the shipped confirmation; else none)."""


def _evidence(matcher: Matcher, vectors: np.ndarray, hit, shares) -> dict:
    """Every statistic a confirmation could read, by brute force (measurement only)."""
    index = matcher.descriptors
    q = np.asarray(vectors, dtype=np.float64)
    own = np.flatnonzero((index.signatures == hit.signature) & (index.bodies != AFFINE_ROW))  # plain rows only
    rows = index.vectors[own].astype(np.float64)
    dist = np.sqrt(((q[:, None, :] - rows[None, :, :]) ** 2).sum(axis=2))  # upload rows x signature rows
    thr = index.thresholds[own].astype(np.float64)
    here = dist[hit.query_row]
    d = hit.distance
    others = [i for i in range(len(q)) if i != hit.query_row]
    apart = np.sqrt(((q - q[hit.query_row]) ** 2).sum(axis=1)) > SAME_DESIGN  # another surface than the hit row's
    usable = thr > 0
    agree = (dist[np.ix_(apart, usable)] / thr[usable]).min() if apart.any() and usable.any() else math.inf
    other_rel = float(min(((dist[i] / np.maximum(thr, 1e-9)).min() for i in others), default=math.inf))
    other_abs = float(min((dist[i].min() for i in others), default=math.inf))
    bodies = index.bodies[own]
    whole = here[bodies == -1]
    not_this = own != hit.row
    pieces_near = [(float(here[j]), int(bodies[j])) for j in np.argsort(here) if not_this[j]][:5]
    every = index.vectors.astype(np.float64)
    rival_mask = (index.signatures != hit.signature) & (index.bodies != AFFINE_ROW)
    rival = np.sqrt(((every[rival_mask] - q[hit.query_row]) ** 2).sum(axis=1)).min() if rival_mask.any() else math.inf
    generic = float(nearest_generic_distance(q[[hit.query_row]])[0])
    return {
        "d": d,
        "t": float(hit.threshold),
        "ratio": d / max(float(hit.threshold), 1e-9),
        "kept": piece_share(hit.body),
        "query_row": int(hit.query_row),
        "rows": len(q),
        "upload_share": None if shares is None else float(shares[hit.query_row]),
        "other_rel": other_rel,
        "other_abs": other_abs,
        "agree": float(agree),
        "whole": float(whole.min()) if len(whole) else None,
        "second": pieces_near[0][0] if pieces_near else None,
        "near5": pieces_near,
        "within_1p5": int(((here <= 1.5 * d) & not_this).sum()),
        "within_thr": int(((here <= thr) & not_this).sum()),
        "rival": float(rival) / max(d, 1e-9),
        "generic": generic / max(d, 1e-9),
        "signature": matcher.library.signatures[hit.signature].id,
    }


def _local(matcher: Matcher, signature: int) -> dict:
    """The upload's patch votes for ``signature`` at any strength (the ``local`` kind needs
    ``MIN_MATCHED`` codes and ``MIN_SHARE`` of the surface), and whether ``local`` alone would
    flag the upload on any signature."""
    shape = CURRENT.get("_shape")
    if shape is None or not len(matcher.patches):
        return {"local_matched": 0, "local_share": 0.0, "local_flags": False}
    codes = shape.patch_codes
    weak = [h for h in matcher.patches.query(codes, min_matched=1, min_share=0.0) if h.signature == signature]
    return {
        "local_matched": max((h.matched for h in weak), default=0),
        "local_share": max((float(h.share) for h in weak), default=0.0),
        "local_flags": bool(matcher.patches.query(codes)),
    }


def _install(rule_on: bool = False) -> None:
    """The confirmation off (``rule_on``: kept); each piece hit it is asked about, recorded."""
    from functools import cached_property

    from scanner.policy import Case

    confirm = Matcher._confirm_pieces

    def record(self: Matcher, vectors: np.ndarray, hits: list, patches) -> list:
        for h in hits:
            if piece_share(h.body) is not None:
                found = _evidence(self, vectors, h, CURRENT.get("_shares")) | _local(self, h.signature)
                RECORDS.append({k: v for k, v in CURRENT.items() if not k.startswith("_")} | found)
        return confirm(self, vectors, hits, patches) if rule_on else hits

    near = Case.near.func

    def remembering(case: Case) -> list:
        CURRENT["_shape"] = case.shape
        CURRENT["_shares"] = case.shape.descriptor.row_shares()
        return near(case)

    Matcher._confirm_pieces = record  # type: ignore[method-assign]
    Case.near = cached_property(remembering)  # type: ignore[assignment]
    Case.near.__set_name__(Case, "near")


def _proxy_library(cache: Path, n: int, seed: int, work: Path, offset: int = 0):
    """``n`` proxies of ``seed + offset`` (files written under ``work``), their library enrolled
    once and kept in ``cache``; returns (files, library, signature ids per file)."""
    rows = generate(work / "proxies", math.ceil(n / len(PROXY_CATEGORIES)), seed + offset, benign_per_kind=0)
    chosen = _round_robin(rows, PROXY_CATEGORIES, n)
    files = [(work / "proxies" / r, c) for r, c, _ in chosen]
    folder = cache / f"proxies-{n}-seed{seed + offset}"
    ids_file = folder / "ids.json"
    if ids_file.exists():
        return files, SignatureLibrary.load(folder), json.loads(ids_file.read_text())
    lib, ids = _library(folder, files, "bench-proxy", jobs=1)
    ids_file.write_text(json.dumps(ids))
    return files, lib, ids


def run_true(args: argparse.Namespace, work: Path) -> None:
    files, lib, ids = _proxy_library(args.cache, args.proxies, args.seed, work)
    context = ScanContext(library=lib, model=None)
    pattern = re.compile(args.families, re.I)
    chosen = [e for e in EVASIONS if pattern.search(e.key)]
    uploads = work / "uploads"
    uploads.mkdir()
    for p, ((path, _), sig_ids) in enumerate(zip(files, ids, strict=True)):
        if len(sig_ids) != 1:
            continue
        mesh = as_trimesh(scanner.load(path))
        for ev in chosen:
            upload = ev.apply(mesh, seed=args.seed * 100_003 + p, stem=f"p{p:03d}")
            target = upload.write(uploads)
            CURRENT.clear()
            CURRENT.update(set="true", seed=args.seed, family=ev.key, upload=f"p{p:03d}", own=sig_ids[0])
            start = len(RECORDS)
            verdicts = scan_one(target, context)
            _settle(verdicts, start, sig_ids[0])
            tally = CAUGHT.setdefault(ev.key, [0, 0])
            tally[0] += any(v.verdict == FLAG for v in verdicts)
            tally[1] += 1
            Path(target).unlink()


def _settle(verdicts: list, start: int, own: str | None) -> None:
    """Mark the records of one upload with what it got (with the confirmation off)."""
    flagged = any(v.verdict == FLAG for v in verdicts)
    kinds = sorted({(m.kind, m.signature_share is not None) for v in verdicts for m in v.matches})
    for r in RECORDS[start:]:
        r["flagged"] = flagged
        r["match_kinds"] = kinds
        r["true"] = own is not None and r["signature"] == own


def run_benign(args: argparse.Namespace, work: Path) -> None:
    _, lib, _ = _proxy_library(args.cache, args.proxies, args.seed, work)
    per_kind = math.ceil(args.benign / len(BENIGN_KINDS))
    rows = generate(work / "benign", 0, args.seed + 7919, benign_per_kind=per_kind)
    chosen = _round_robin(rows, BENIGN_KINDS, args.benign)
    context = ScanContext(library=lib, model=None)
    for rel, _, group in chosen:
        CURRENT.clear()
        CURRENT.update(set=f"benign-{args.proxies}x{args.benign}", family=group.split("-")[1], upload=rel, own=None)
        start = len(RECORDS)
        verdicts = scan_one(work / "benign" / rel, context)
        _settle(verdicts, start, None)
        tally = CAUGHT.setdefault(f"benign pairs of {len(lib)} signatures", [0, 0])
        tally[0] += len({m.signature_id for v in verdicts if v.verdict == FLAG for m in v.matches})
        tally[1] += len(lib)


def run_corpus(args: argparse.Namespace, work: Path) -> None:
    corpus = locate_corpus(args.real_corpus)
    if corpus is None:
        raise SystemExit("no corpus found (--real-corpus DIR)")
    _, lib, _ = _proxy_library(args.cache, args.proxies, args.seed, work, offset=args.offset)
    context = ScanContext(library=lib, model=None)
    for path in sorted(p for p in corpus.rglob("*") if p.is_file()):
        CURRENT.clear()
        CURRENT.update(set=f"corpus-{args.proxies}", family="corpus", upload=str(path.relative_to(corpus)), own=None)
        start = len(RECORDS)
        try:
            _settle(scan_one(path, context), start, None)
        except Exception as exc:  # noqa: BLE001 - measurement: a reader's failure is not a hit
            print(f"  {path.name}: {exc}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("true", "benign", "corpus"))
    ap.add_argument("--proxies", type=int, default=24)
    ap.add_argument("--benign", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--families", default=PIECE_FAMILIES)
    ap.add_argument("--real-corpus")
    ap.add_argument("--offset", type=int, default=17, help="corpus: the proxy library's seed is --seed + this")
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "meshscan-piece-hits")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rule-on", action="store_true", help="keep the shipped confirmation (count what still flags)")
    args = ap.parse_args(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    _install(args.rule_on)
    with tempfile.TemporaryDirectory(prefix="meshscan-piece-hits-") as tmp:
        {"true": run_true, "benign": run_benign, "corpus": run_corpus}[args.what](args, Path(tmp))
    args.out.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    print(f"{len(RECORDS)} piece hits -> {args.out}")
    for key, (flagged, total) in CAUGHT.items():
        print(f"  {key}: {flagged} / {total} flagged" + (" (rule on)" if args.rule_on else " (rule off)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
