"""bench/evasion_misses.py: the per-copy diagnosis of an evasion row that misses.

Why: the decimated-densified rows miss for a reason the recall table cannot show (the copies
are damaged, and every row of the signature is outside its threshold); the script's pieces
must read the rows and the surface correctly for that diagnosis to stand.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import trimesh

import scanner
from bench.evasion_misses import band_table, deployed_verdict, intact_share, nearest_ratio, row_kind
from scanner.features.pieces import piece_row
from scanner.verdict import CLEAR, FLAG, REVIEW, Verdict


def test_row_kinds_are_named():
    assert row_kind(-1) == "whole"
    assert row_kind(-6) == "dec50"
    assert row_kind(piece_row(0.85)) == "piece85"
    assert row_kind(2) == "body"


def _load(tm: trimesh.Trimesh, path) -> scanner.Mesh:  # noqa: ANN001 - a pathlib.Path
    tm.export(path)
    return scanner.load(path)


def test_intact_share_tells_a_re_tessellated_copy_from_a_damaged_one(tmp_path):
    box = trimesh.creation.box(extents=(4.0, 2.0, 1.0))
    enrolled = _load(box, tmp_path / "box.stl")
    v, f = trimesh.remesh.subdivide(box.vertices, box.faces)  # the same surface, 4x the triangles
    assert intact_share(enrolled, _load(trimesh.Trimesh(v, f), tmp_path / "fine.stl")) == 1.0
    flattened = trimesh.creation.box(extents=(4.0, 2.0, 0.5))  # the top half gone, a lid moved down
    flattened.apply_translation((0.0, 0.0, -0.25))
    kept = intact_share(enrolled, _load(flattened, tmp_path / "flat.stl"))
    assert 0.3 < kept < 0.8  # the bottom and the lower half of the sides stay, the top does not


def test_deployed_verdict_reads_the_most_severe_member_and_its_score():
    clear = Verdict("a.zip", "a.stl", CLEAR, review_score=0.12, review_threshold=0.5)
    review = Verdict("a.zip", "b.stl", REVIEW, category="barrel", review_score=0.81, review_threshold=0.5)
    assert deployed_verdict([clear, review]) == "review (barrel, 0.81 >= 0.50)"
    assert deployed_verdict([clear]) == "clear (0.12)"
    assert deployed_verdict([clear, Verdict("a.zip", "c.stl", FLAG), review]) == "flag"


def test_nearest_ratio_is_over_each_rows_own_threshold_and_skips_exact_only_rows():
    library = SimpleNamespace(
        vectors=np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0]]),
        thresholds=np.array([0.0, 0.5, 2.0]),  # the first matches exact copies only
    )
    context = SimpleNamespace(library=library)
    upload = np.array([[0.0, 0.1], [0.0, 2.0]])  # beside the exact-only row; 1 from the third
    # the exact-only row is 0.1 away but left out; (0,0.1) is 1.005 from row 1 (2.01x) and 2.9 from
    # row 2 (1.45x); (0,2) is 1 from row 2 (0.5x)
    assert nearest_ratio(context, upload) == 0.5
    assert round(nearest_ratio(context, upload[:1]), 3) == 1.45


def test_band_table_counts_below_each_band_and_leaves_unread_files_out():
    lines = band_table({"misses": [0.9, 1.2, 1.6, 2.5], "benign": [1.4, None, 3.5]}, bands=(1.25, 2.0))
    assert lines[0] == "| band (x threshold) | misses | benign |"
    assert lines[2] == "| < 1.25x | 2 of 4 (50%) | 0 of 2 (0%) |"
    assert lines[3] == "| < 2x | 3 of 4 (75%) | 1 of 2 (50%) |"
