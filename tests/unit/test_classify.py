"""The component classifier: shape features, calibrated model, safe persistence, explanations."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

import scanner
from scanner.classify.explain import assess, explanation, reasons
from scanner.classify.features import feature_groups, feature_row, feature_version
from scanner.classify.model import BENIGN, ComponentModel, ModelError, ThresholdInfo
from scanner.classify.shape import FEATURE_NAMES, FEATURES, shape_features
from scanner.classify.train import LabelledSet, compute_features, pick_threshold, read_labels
from scanner.config import load_settings
from scanner.errors import ConfigError
from scanner.mesh import Mesh
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"


def mesh_of(tm: trimesh.Trimesh) -> Mesh:
    return Mesh(vertices=np.asarray(tm.vertices, dtype=np.float64), faces=np.asarray(tm.faces))


def features(tm: trimesh.Trimesh) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, shape_features(mesh_of(tm)), strict=True))


# ----------------------------------------------------------------------------- shape features
def test_shape_features_read_like_their_names() -> None:
    tube = features(trimesh.creation.annulus(r_min=0.5, r_max=1.0, height=20.0, sections=32))
    assert tube["elongation"] > 8 and tube["holes"] == 1 and tube["bodies"] == 1
    assert 0.45 < tube["bore_length"] < 0.55  # bore / outer diameter
    assert tube["coaxial_round"] > 0.8 and tube["curved_share"] > 0.8
    rod = features(trimesh.creation.cylinder(radius=1.0, height=20.0, sections=32))
    assert rod["bore_length"] == 0 and rod["holes"] == 0 and rod["solidity"] > 0.95
    box = features(trimesh.creation.box(extents=(1, 2, 3)))
    assert box["curved_share"] == 0 and box["solidity"] == pytest.approx(1.0) and box["box_fill"] == pytest.approx(1)
    washer = features(trimesh.creation.annulus(r_min=0.5, r_max=2.0, height=0.3, sections=48))
    assert washer["bore_thickness"] > 0.2 and washer["flatness"] > 5
    two = trimesh.util.concatenate([trimesh.creation.box(), trimesh.creation.box().apply_translation((5, 0, 0))])
    assert features(two)["bodies"] == 2
    collared = trimesh.boolean.union(
        [trimesh.creation.annulus(0.5, 1.0, 20.0), trimesh.creation.annulus(0.9, 1.6, 2.0)], engine="manifold"
    )
    assert features(collared)["profile_steps"] > 0.3 > tube["profile_steps"]


def test_shape_features_are_invariant_to_pose_scale_mirror_and_order() -> None:
    mesh = scanner.load(DEMO / "proxy-barrel-s1-001.stl")
    base = shape_features(mesh)
    rng = np.random.default_rng(5)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))  # a rotation or a mirror
    tri = mesh.triangles.astype(np.float64) @ q.T * 7.5 + 3.0
    tri = tri[rng.permutation(len(tri))][:, ::-1]  # triangle order and winding
    moved = shape_features(Mesh(vertices=tri.reshape(-1, 3)))
    np.testing.assert_allclose(moved, base, rtol=2e-3, atol=2e-3)


SF3_ROWS: dict[str, tuple[str, float]] = {  # (sha256 of the row without solidity, solidity)
    "proxy-barrel-s1-000.stl": ("c96d2c8526c7f3c676c827ec9e2ac88589f2c73512f1547c37b534271e471fb0", 0.7058765312890741),
    "benign-bracket-s1-001.stl": (
        "64ff55ad7b68550e044dc40700bd2469d6c1701e37bd93f9ced9db366b5085d0",
        0.1698532012749427,
    ),
    "benign-cup-s1-000.stl": ("b7aea0f3ad647c14490bb0417bd330a8c7950399ac91aeb2ede68ea70f5dc17f", 0.218839211387954),
}
"""What ``SHAPE_VERSION`` sf3 computes for three demo parts (see the test)."""


@pytest.mark.parametrize("name", sorted(SF3_ROWS))
def test_shape_features_are_the_ones_the_model_was_trained_on(name: str) -> None:
    """Bit for bit: a faster implementation must give the same numbers. The barrel has a bore
    along its length, the bracket a hole across its thickness, so both line casts count. A
    deliberate change bumps the version and these.

    These are the rows since the surface moments became sums in input order (issue 18, twelfth
    pass). Before, the moments were a BLAS product, which OpenBLAS sums in an order it picks by
    CPU, and the barrel's two minor moments are nearly equal, so its minor axes - and the
    extreme points the hull is built from - turned with the last bits: its solidity was 0.70588
    on the machine that wrote the first references and 0.70665 on an AVX2 AMD EPYC, and this
    test held each machine's rows. The model's rows were computed then; the features moved by at
    most 1.1e-3 relative (the barrel's solidity; every other feature of the 63 demo parts under
    6e-5, the descriptor not at all), what a scan on another machine moved them by before.

    One exception, to rounding: solidity divides by the convex hull's volume, which Qhull gave
    and a small hull in C gives where it is built (``scanner/_shape_kernels.c``, ``hull_volume``:
    7 us against Qhull's 100-300 us a file); the two sum the same hull's volume in another order,
    so the last bits may differ (measured: under 1e-14 relative). The other features are held bit
    for bit (the digest, with solidity left out); solidity to 1e-12, where a model score printed
    to four decimals cannot move."""
    from scanner.classify.shape import FEATURE_NAMES, SHAPE_VERSION
    from scanner.loading import load

    row = shape_features(load(DEMO / name).surface())
    assert SHAPE_VERSION == "sf3" and row.dtype == np.float64
    at = FEATURE_NAMES.index("solidity")
    digest, solidity = SF3_ROWS[name]
    assert hashlib.sha256(np.delete(row, at).tobytes()).hexdigest() == digest, f"{name}: the row is not sf3's"
    assert row[at] == pytest.approx(solidity, rel=1e-12, abs=0.0)


def test_every_feature_has_words() -> None:
    for f in FEATURES:
        for template in (f.high, f.low):
            assert template.format(v=1.25)
    names = [g.name for g in feature_groups()]
    assert len(names) == len(set(names)) and set(FEATURE_NAMES) <= set(names)


# ----------------------------------------------------------------------------- model
@pytest.fixture(scope="module")
def demo_rows() -> tuple[np.ndarray, LabelledSet]:
    x, kept, skipped = compute_features(read_labels(DEMO / "labels.csv"))
    assert not skipped
    return x, kept


@pytest.fixture(scope="module")
def model(demo_rows) -> ComponentModel:
    x, data = demo_rows
    return ComponentModel({"calibration_folds": 3}).fit(x, data.labels, data.groups)


def test_fast_path_agrees_with_scikit_learn(model: ComponentModel, demo_rows) -> None:
    x, _ = demo_rows
    assert model._fast is not None
    np.testing.assert_allclose(model.predict_proba(x), model.estimator_.predict_proba(x), atol=1e-9)
    p = model.predict_proba(x)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)


def test_save_load_refits_without_unpickling(tmp_path: Path, model: ComponentModel, demo_rows) -> None:
    x, _ = demo_rows
    model.save(tmp_path / "m", ThresholdInfo(0.6, "test"), name="t")
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    forest = ["forest_nodes.npy", "forest_scaler.npy", "forest_sigmoid.npy"]  # the verified forest cache
    assert files == sorted(["features.npy", "model.json", "probe_proba.npy", "probes.npy", *forest])
    for npy in (tmp_path / "m").glob("*.npy"):
        np.load(npy, allow_pickle=False)  # plain arrays only
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["feature_version"] == feature_version() and meta["descriptor_version"] in meta["feature_version"]
    assert len(meta["training_sha256"]) == 64 and meta["sklearn_version"]
    loaded = ComponentModel.load(tmp_path / "m")
    assert loaded.version == model.version and loaded.review_threshold == 0.6
    np.testing.assert_allclose(loaded.predict_proba(x), model.predict_proba(x), atol=1e-12)


def _saved(tmp_path: Path, model: ComponentModel) -> Path:
    root = tmp_path / "m"
    model.save(root, ThresholdInfo(0.5, "test"))
    return root


def test_tampered_rows_are_refused(tmp_path: Path, model: ComponentModel) -> None:
    root = _saved(tmp_path, model)
    x = np.load(root / "features.npy")
    x[0, 0] += 1.0
    np.save(root / "features.npy", x)
    with pytest.raises(ModelError, match="training_sha256"):
        ComponentModel.load(root)


def test_a_refit_that_does_not_reproduce_its_probes_is_refused(tmp_path: Path, model: ComponentModel) -> None:
    root = _saved(tmp_path, model)
    p = np.load(root / "probe_proba.npy")
    np.save(root / "probe_proba.npy", p[:, ::-1].copy())
    with pytest.raises(ModelError, match="does not reproduce its probe scores"):
        ComponentModel.load(root)


def test_model_of_other_features_is_refused(tmp_path: Path, model: ComponentModel) -> None:
    root = _saved(tmp_path, model)
    meta = json.loads((root / "model.json").read_text())
    meta["feature_version"] = "sf0+ms0:old"
    (root / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="retrain"):
        ComponentModel.load(root)


def test_pickle_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "model.json").write_bytes(b"\x80\x04\x95 not json")
    with pytest.raises(ModelError):
        ComponentModel.load(tmp_path / "m")


# ----------------------------------------------------------------------------- explanations
def test_explanations_name_the_features_and_differ_per_file(model: ComponentModel, demo_rows) -> None:
    x, data = demo_rows
    texts = []
    for row, label in zip(x, data.labels, strict=True):
        if label == BENIGN:
            continue
        a = assess(model, row)
        why = reasons(model, row)
        assert 3 <= len(why) <= 4 and why == reasons(model, row)  # deterministic
        assert reasons(model, row, a.category)  # or for one category
        assert {r.group for r in why[:3]} <= set(FEATURE_NAMES)  # shape features, in words, first
        texts.append(explanation(a, why, 0.5))
    assert len(set(texts)) == len(texts)
    assert all("mostly because: " in t and "review threshold 0.50" in t for t in texts)


def test_scores_cover_every_class(model: ComponentModel, demo_rows) -> None:
    a = assess(model, demo_rows[0][0])
    assert set(a.scores) == set(model.classes_) and abs(sum(a.scores.values()) - 1) < 1e-3
    assert a.category != BENIGN
    assert a.category_probability == pytest.approx(max(v for c, v in a.scores.items() if c != BENIGN), abs=1e-4)
    assert abs(a.probability - (1 - a.scores[BENIGN])) < 1e-3


# ----------------------------------------------------------------------------- training inputs, settings
def test_pick_threshold_meets_its_target() -> None:
    scores = np.linspace(0, 1, 101)
    t = pick_threshold(scores, 0.05)
    assert np.mean(scores >= t) <= 0.05 and np.mean(scores >= t - 0.01) > 0.05


def test_labels_file_errors_are_clear(tmp_path: Path) -> None:
    bad = tmp_path / "labels.csv"
    bad.write_text("file,label\na.stl,barrel\n")
    with pytest.raises(ModelError, match="path,category"):
        read_labels(bad)
    bad.write_text("path,category\na.stl,spoon\n")
    with pytest.raises(ModelError, match="unknown category 'spoon'"):
        read_labels(bad)
    good = tmp_path / "ok.csv"
    good.write_text("path,category,group\nsub/a.stl,barrel,d1\nb.stl,benign,\n")
    data = read_labels(good)
    assert data.paths == [str(tmp_path / "sub" / "a.stl"), str(tmp_path / "b.stl")]
    assert data.groups == ["d1", "b.stl"]


def test_classify_settings(tmp_path: Path) -> None:
    assert load_settings().classify.review_threshold is None
    cfg = tmp_path / "c.toml"
    cfg.write_text("[classify]\nreview_threshold = 0.7\n")
    assert load_settings(cfg).classify.review_threshold == 0.7
    assert load_settings(cfg, {"classify.review_threshold": 0.9}).classify.review_threshold == 0.9
    cfg.write_text("[classify]\nreview_threshold = 1.5\n")
    with pytest.raises(ConfigError, match="probability"):
        load_settings(cfg)


def test_feature_row_reuses_a_given_descriptor() -> None:
    mesh = scanner.load(DEMO / "proxy-barrel-s1-001.stl")
    from scanner.features import describe

    whole = describe(mesh).whole
    np.testing.assert_array_equal(feature_row(mesh, whole), feature_row(mesh))


# ----------------------------------------------------------------------------- generator
def test_generator_groups_variants_and_is_deterministic(tmp_path: Path) -> None:
    from fixtures.generate import generate

    rows = generate(tmp_path / "a", 1, seed=77, variants=2)
    again = generate(tmp_path / "b", 1, seed=77, variants=2)
    assert [r[0] for r in rows] == [r[0] for r in again]
    for rel, _, _ in rows:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    with open(tmp_path / "a" / "labels.csv", newline="") as fh:
        table = list(csv.reader(fh))
    assert table[0] == ["path", "category", "group"]
    groups: dict[str, set[str]] = {}
    for _path, category, group in table[1:]:
        groups.setdefault(group, set()).add(category)
    assert all(len(v) == 1 for v in groups.values())
    assert len(table) - 1 == 2 * len(groups)  # two variants per design
    assert len({r[0] for r in rows}) == len(rows)
    assert {".stl", ".obj", ".3mf"} <= {Path(r[0]).suffix for r in rows}


def test_hashed_groups_fold_by_first_appearance_not_by_salt() -> None:
    """Salted hashes sort differently under every salt; the folds must not follow."""
    from scanner.classify.model import group_splits, is_hashed
    from scanner.classify.train import salted_groups

    names = [f"case-{i // 3}" for i in range(30)] + [f"case-x{i}" for i in range(7)]
    a, map_a = salted_groups(names, salt=b"a" * 32)
    b, map_b = salted_groups(names, salt=b"b" * 32)
    assert is_hashed(a) and is_hashed(b) and not is_hashed(names)
    assert map_a.keys() == map_b.keys() == set(names) and not set(map_a.values()) & set(map_b.values())
    assert salted_groups(names, salt=b"a" * 32)[0] == a  # deterministic for one salt
    fa, fb = group_splits(np.asarray(a), 3), group_splits(np.asarray(b), 3)
    assert [t.tolist() for _, t in fa] == [t.tolist() for _, t in fb]
    for _, test in fa:  # a design never straddles folds
        inside = {names[i] for i in test}
        assert all(names[i] not in inside for i in set(range(len(names))) - set(test.tolist()))


def test_curved_edges_are_told_by_cosine_as_by_angle() -> None:
    """The band of cosines (:func:`curved_cosines`) holds exactly the cosines whose angle in
    degrees, by the C library's ``acos``, is strictly between the two limits: every double
    within 3,000 of each end of the band (and of 0 and 1), and a million random cosines, which
    ``np.arccos`` decides the same way away from the ends on any CPU."""
    import math

    from scanner.classify.shape import CURVED_MAX_DEG, CURVED_MIN_DEG, curved_cosines

    low, high = curved_cosines()
    assert 0.0 < low < high < 1.0
    near = []
    for end in (low, high, 0.0, 1.0):
        for toward in (-1.0, 2.0):
            x = end
            for _ in range(3000):
                near.append(x)
                x = float(np.nextafter(x, toward))
    near = [c for c in near if 0.0 <= c <= 1.0]
    by_angle = [CURVED_MIN_DEG < math.degrees(math.acos(c)) < CURVED_MAX_DEG for c in near]
    assert [low <= c <= high for c in near] == by_angle
    assert any(by_angle) and not all(by_angle)
    rng = np.random.default_rng(0)
    c = rng.random(1_000_000)
    c = c[(np.abs(c - low) > 1e-9) & (np.abs(c - high) > 1e-9)]
    angle = np.degrees(np.arccos(c))
    np.testing.assert_array_equal((c >= low) & (c <= high), (angle > CURVED_MIN_DEG) & (angle < CURVED_MAX_DEG))
