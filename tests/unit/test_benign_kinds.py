"""The generator's benign look-alike kinds: deterministic by seed, closed valid solids, and added
without changing the files of the kinds before them (the committed demo set depends on it)."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.generate import BENIGN, BENIGN_KINDS, generate

LOOKALIKES = ("clip", "hinge", "rail_mount", "slotted_bracket", "standoff", "chain_link", "knob", "vented_box",
              "pull_handle", "mount")  # fmt: skip


def test_every_kind_is_registered_in_order() -> None:
    assert tuple(BENIGN) == BENIGN_KINDS
    assert BENIGN_KINDS[-len(LOOKALIKES) :] == LOOKALIKES


@pytest.mark.parametrize("kind", LOOKALIKES)
def test_lookalike_is_deterministic_and_a_valid_solid(kind: str) -> None:
    for seed in (1, 2, 3):
        a = BENIGN[kind](np.random.default_rng(seed))
        b = BENIGN[kind](np.random.default_rng(seed))
        np.testing.assert_array_equal(a.vertices, b.vertices)
        np.testing.assert_array_equal(a.faces, b.faces)
        assert len(a.faces) > 12
        assert a.is_watertight and a.is_winding_consistent and a.is_volume, (kind, seed)
        assert a.volume > 0
    # random proportions: two seeds give two different shapes
    other = BENIGN[kind](np.random.default_rng(4))
    assert other.vertices.shape != a.vertices.shape or not np.allclose(other.vertices, a.vertices)


def test_leading_kinds_keep_their_files(tmp_path) -> None:
    """Only the 15 original kinds, as the demo set is made: byte-identical to the full run's files."""
    full = generate(tmp_path / "full", 1, seed=5)
    lead = generate(tmp_path / "lead", 1, seed=5, benign_kinds=BENIGN_KINDS[:15])
    assert len(full) == len(lead) + len(LOOKALIKES)
    for (rel, cat, group), again in zip(full, lead, strict=False):
        assert again == (rel, cat, group)
        assert (tmp_path / "full" / rel).read_bytes() == (tmp_path / "lead" / rel).read_bytes()
    assert {g.split("-s5")[0] for _, _, g in full[len(lead) :]} == {f"benign-{k}" for k in LOOKALIKES}


def test_benign_kinds_must_be_a_leading_part(tmp_path) -> None:
    with pytest.raises(ValueError, match="leading part"):
        generate(tmp_path, 1, seed=5, benign_kinds=("clip",))
