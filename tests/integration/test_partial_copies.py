"""Part of a known file (issue 11, "partial" and "split"): a copy of which only a plane-cut
piece was kept, or whose halves travel as separate files, still flags - through the
signature's enrolled pieces (scanner.features.pieces) - and says which share was found.

The uploads are cut from enrolled demo proxies (synthetic box/cylinder/tube compositions) by
the same capped plane cut an uploader would use (manifold3d), rotated and rescaled so no hash
matches, and scanned by the real command against the shipped demo library, classifier off.
The cuts lie on the enrolment lattice (a direction and share the library holds): the test is
of the mechanism end to end; recall for cuts at random directions is measured by
bench/evasion.py ("partial", "split" rows), not asserted here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from scanner.features.pieces import directions
from tests.integration.test_composition_evasions import DEMO, ENROLLED, scan


def cut(name: str, direction: int, kept: float) -> tuple[trimesh.Trimesh, trimesh.Trimesh]:
    """The enrolled proxy cut across lattice direction ``direction`` so that ``kept`` of its
    surface lies on the positive side: (that piece, the rest), both capped solids, then
    rotated and rescaled together."""
    import manifold3d

    from scanner.loading import load

    mesh = load(DEMO / name).surface()
    v, f = mesh.welded_vertices, mesh.welded_faces
    solid = manifold3d.Manifold(manifold3d.Mesh(vert_properties=np.asarray(v, dtype=np.float32),
                                                tri_verts=np.asarray(f, dtype=np.uint32)))  # fmt: skip
    tri = np.asarray(v, dtype=np.float64)[f]
    areas = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    normal = directions()[direction]
    height = tri.mean(axis=1) @ normal
    order = np.argsort(height, kind="stable")
    at = float(height[order[np.searchsorted(np.cumsum(areas[order]), (1 - kept) * areas.sum())]])
    out = []
    for piece in (solid.trim_by_plane(tuple(normal.tolist()), at), solid.trim_by_plane(tuple((-normal).tolist()), -at)):
        m = piece.to_mesh()
        tm = trimesh.Trimesh(np.asarray(m.vert_properties)[:, :3], np.asarray(m.tri_verts))
        tm.apply_transform(trimesh.transformations.rotation_matrix(0.7, [1.0, 0.4, -0.3]))
        tm.apply_scale(3.5)
        out.append(tm)
    return out[0], out[1]


def test_a_copy_with_only_part_kept_flags_and_says_how_much(tmp_path: Path) -> None:
    files = []
    for i, name in enumerate(ENROLLED):
        kept, _ = cut(name, direction=5 + 9 * i, kept=0.7)
        path = tmp_path / f"{Path(name).stem}-70.stl"
        kept.export(path)
        files.append(str(path))
    code, records, err = scan(*files)
    assert [r["verdict"] for r in records] == ["flag"] * len(files), (err, [r["explanation"] for r in records])
    for r in records:
        best = r["matches"][0]
        assert best["kind"] == "near-duplicate" and best["signature_share"] == 0.7
        assert "70% of known file" in r["explanation"] and "plane-cut piece" in r["explanation"]
    assert code == 1


def test_a_copy_cut_in_two_spaced_apart_in_one_file_flags(tmp_path: Path) -> None:
    """The halves moved apart (no walls to drop, the whole file is nothing known): a half
    body matches the signature's half piece."""
    half, rest = cut(ENROLLED[0], direction=11, kept=0.5)
    rest.apply_translation(2.0 * half.scale * np.asarray([1.0, 0.0, 0.0]))
    path = tmp_path / "spaced.stl"
    trimesh.util.concatenate([half, rest]).export(path)
    code, records, err = scan(str(path))
    assert records[0]["verdict"] == "flag", (err, records[0]["explanation"])
    assert any(m["signature_share"] == 0.5 and m["body"] is not None for m in records[0]["matches"])
    assert code == 1


def test_a_never_enrolled_design_is_not_found_in_the_pieces(tmp_path: Path) -> None:
    """Pieces must not turn look-alikes into matches: the demo proxies that were never
    enrolled (other designs of the same categories) and the benign look-alikes stay unmatched."""
    unseen = sorted(p for p in DEMO.iterdir() if p.name.startswith("proxy-") and "-000." not in p.name)
    benign = sorted(p for p in DEMO.iterdir() if p.name.startswith("benign-"))
    code, records, err = scan(*map(str, unseen + benign))
    flagged = [(r["path"], r["explanation"]) for r in records if r["verdict"] != "clear"]
    assert flagged == [], err
    assert code == 0
