"""Uploads that only local patch matching finds: an enrolled demo proxy (a synthetic
box/cylinder/tube composition) fused to a plate, or split into pieces placed apart, then turned
and rescaled so that no exact hash helps and no descriptor row is near (the bench's own edits,
:mod:`fixtures.evasions`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
PROXY = DEMO / "proxy-barrel-s1-000.stl"
"""Enrolled in the shipped demo library."""


def local_copy(dest: Path, edit: str = "fused", source: Path = PROXY, seed: int = 1) -> Path:
    """Write ``source`` edited (``fused``: onto a plate; ``spaced4``: four pieces moved apart),
    turned and rescaled, as binary STL at ``dest``."""
    import scanner
    from fixtures import evasions as ev

    rng = np.random.default_rng(seed)
    part = ev.as_trimesh(scanner.load(source))
    if edit == "fused":
        mesh = ev.fused_plate(part)
    elif edit == "spaced4":
        gap = 0.15 * ev._diag(part)
        pieces = [ev._moved(p, np.asarray(p.vertices) + gap * away) for p, away in ev.split(part, rng, 4)]
        mesh = ev._concat(pieces)
    else:
        raise ValueError(edit)
    pose = np.eye(4)
    pose[:3, :3] = ev.random_rotation(rng) * 2.5
    mesh.apply_transform(pose)
    dest.write_bytes(ev.stl_binary(mesh))
    return dest
