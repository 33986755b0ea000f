"""Describing a large mesh on two threads gives the serial values, bit for bit (issue 18, item 3).

:meth:`scanner.shape.Shape.prefetch` splits a scan's describe between the scan's thread and
a helper thread (:mod:`scanner.parallel`). These tests run it on meshes of every kind the
descriptor has rows for (one body, many bodies, loose triangles, walls, repeats and slivers)
with the size cut-off lowered to 0, and compare every value a scan reads with a fresh serial
computation; then they check that the helper really runs work, that every failure leaves the
lazy serial reads to compute (or raise) as before, and when a process may use the helper.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import trimesh

import scanner.classify.shape as shape_mod
import scanner.engines.worker as worker_mod
from scanner import parallel
from scanner.errors import LIMIT_BODIES, UnreadableInput
from scanner.features import LOOSE_ROW, WALLS_ROW
from scanner.mesh import Mesh
from scanner.shape import Shape


def _box(lo: tuple[float, float, float], hi: tuple[float, float, float], subdivide: int = 3) -> np.ndarray:
    m = trimesh.creation.box(bounds=[lo, hi])
    for _ in range(subdivide):
        m = m.subdivide()
    return np.asarray(m.vertices)[m.faces]


def _sphere(sub: int, scale: tuple[float, float, float], at: tuple[float, float, float]) -> np.ndarray:
    s = trimesh.creation.icosphere(subdivisions=sub)
    v = s.vertices * (1 + 0.2 * np.sin(3 * s.vertices[:, :1])) * scale + at
    return v[s.faces]


def _meshes() -> dict[str, Mesh]:
    rng = np.random.default_rng(11)
    blob = _sphere(5, (1.0, 2.0, 0.7), (0, 0, 0))
    # two boxes stacked on a shared plane (walls), spheres, loose triangles, repeats, slivers
    parts = [
        _box((0, 0, 0), (4, 3, 2)),
        _box((0, 0, 2), (4, 3, 5)),
        _sphere(4, (1.5, 1.0, 1.0), (9, 0, 0)),
        _sphere(3, (0.5, 0.5, 2.0), (-6, 1, 0)),
        _sphere(1, (0.3, 0.3, 0.3), (0, -7, 0)),
        rng.normal(size=(400, 3, 3)) * 3 + 12,
    ]
    tri = np.concatenate(parts)
    sliver = tri[:50].copy()
    sliver[:, 2] = sliver[:, 0] + 1e-9 * (sliver[:, 1] - sliver[:, 0])
    tri = np.concatenate([tri, tri[1000:1300], tri[2000:2100, ::-1], sliver])
    soup = tri[rng.permutation(len(tri))].astype(np.float32)
    s = trimesh.creation.icosphere(subdivisions=4)
    return {
        "one body": Mesh(vertices=blob.astype(np.float32).reshape(-1, 3)),
        "bodies, loose, walls, repeats": Mesh(vertices=soup.reshape(-1, 3)),
        "indexed": Mesh(vertices=np.asarray(s.vertices, dtype=np.float32), faces=np.asarray(s.faces)),
    }


def _everything(shape: Shape) -> list[np.ndarray]:
    d = shape.descriptor
    pc = shape.patch_codes
    out = [shape.rows[0], np.asarray(shape.rows[1]), np.asarray(d.body_shares), pc.codes, pc.sizes, pc.weights]
    out += [shape.classifier_row, np.asarray([b.body for b in shape.body_rows])]
    out += [b.row for b in shape.body_rows] + [np.asarray([b.share for b in shape.body_rows])]
    s = shape.surface
    out += [s.body_labels(), s.welded_faces, s.welded_vertices, s.sorted_edges[0], s.sorted_edges[1], s.corner_keys]
    return out + [np.frombuffer(d.geometry_hash.encode(), np.uint8)]


def _serial(mesh: Mesh) -> list[np.ndarray]:
    copy = Mesh(vertices=mesh.vertices.copy(), faces=None if mesh.faces is None else mesh.faces.copy())
    saved = parallel._enabled
    parallel.configure(False)
    try:
        return _everything(Shape.of(copy, 1000))
    finally:
        parallel.configure(saved)


@pytest.fixture
def two_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "MIN_TRIANGLES", 0)
    monkeypatch.setattr(parallel, "_enabled", True)


@pytest.mark.parametrize("name", list(_meshes()))
def test_prefetch_gives_the_serial_values_bit_for_bit(name: str, two_threads: None) -> None:
    mesh = _meshes()[name]
    expected = _serial(mesh)
    shape = Shape.of(mesh, 1000)
    assert shape.prefetch(descriptor=True, patches=True, classifier=True)
    assert {"descriptor", "patch_codes", "classifier_row", "whole"} <= set(shape.__dict__)
    got = _everything(shape)
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


def test_the_test_meshes_have_every_kind_of_row(two_threads: None) -> None:
    ids = Shape.of(_meshes()["bodies, loose, walls, repeats"], 1000).rows[1]
    assert len([i for i in ids if i >= 0]) >= 4 and LOOSE_ROW in ids and WALLS_ROW in ids
    mesh = _meshes()["bodies, loose, walls, repeats"]
    assert not mesh.surface_mask.all()  # repeats and slivers dropped: the surface is a new mesh


def test_only_the_parts_asked_for_are_computed(two_threads: None) -> None:
    shape = Shape.of(_meshes()["one body"], 1000)
    assert shape.prefetch(descriptor=False, patches=False, classifier=True)
    assert "classifier_row" in shape.__dict__ and "descriptor" not in shape.__dict__
    assert "patch_codes" not in shape.__dict__
    np.testing.assert_array_equal(shape.classifier_row, _serial(_meshes()["one body"])[6])
    assert not shape.prefetch(descriptor=False, patches=False, classifier=True)  # nothing left to do


def test_the_helper_thread_does_part_of_the_work(two_threads: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The weld (and the rest of the helper's share) runs on the helper thread when the
    helper is free: a prefetch whose work all stayed on the caller's thread would pass the
    value tests and gain nothing."""
    seen: dict[str, str] = {}
    features = shape_mod.shape_features

    def spy(mesh: Mesh) -> np.ndarray:
        seen["finish"] = threading.current_thread().name
        return features(mesh)

    monkeypatch.setattr(shape_mod, "shape_features", spy)
    parallel.both(lambda: None, lambda: None)  # the helper is started and idle
    for _ in range(5):  # a loaded machine may not schedule the helper in time: the caller takes the work back
        seen.clear()
        shape = Shape.of(_meshes()["one body"], 1000)
        shape.surface._welded  # noqa: B018 - the helper's first share done already: it goes straight on
        assert shape.prefetch()
        if seen["finish"] == "meshscan-helper":
            break
    assert seen["finish"] == "meshscan-helper"


def test_both_runs_the_second_call_on_the_helper() -> None:
    started = threading.Event()

    def second() -> str:
        started.set()
        return threading.current_thread().name

    def first() -> str:
        assert started.wait(30)  # only the helper can set it while this runs
        return threading.current_thread().name

    a, b = parallel.both(first, second)
    assert a == threading.current_thread().name and b == "meshscan-helper"


def test_both_takes_back_work_the_helper_has_not_started() -> None:
    gate = threading.Event()
    busy = parallel._Task(lambda: gate.wait(30))
    helper = parallel._the_helper()
    assert helper is not None
    helper.put(busy)  # the helper is stuck on another task
    while not busy.claimed:
        time.sleep(0.001)
    try:
        a, b = parallel.both(lambda: 1, lambda: threading.current_thread().name)
        assert (a, b) == (1, threading.current_thread().name)
        assert parallel.shared_map(lambda x: x * x, range(20)) == [x * x for x in range(20)]
    finally:
        gate.set()


def test_errors_come_back_to_the_caller() -> None:
    def boom() -> None:
        raise MemoryError("helper")

    with pytest.raises(MemoryError, match="helper"):
        parallel.both(lambda: 1, boom)
    ran = []
    with pytest.raises(ValueError, match="first"):
        parallel.both(lambda: (_ for _ in ()).throw(ValueError("first")), lambda: ran.append(1))

    def item(x: int) -> int:
        if x == 7:
            raise KeyError(x)
        return x

    with pytest.raises(KeyError):
        parallel.shared_map(item, range(50))
    assert parallel.shared_map(item, range(7)) == list(range(7))
    # the helper still works after errors
    assert parallel.both(lambda: 2, lambda: threading.current_thread().name)[0] == 2


def test_no_helper_thread_means_serial_work(two_threads: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A helper that cannot be started (``can't start new thread`` under a cap) leaves
    everything to the caller: the same values, no error."""
    monkeypatch.setattr(parallel, "_helper", None)

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)
    mesh = _meshes()["bodies, loose, walls, repeats"]
    expected = _serial(mesh)
    shape = Shape.of(mesh, 1000)
    assert shape.prefetch()
    for a, b in zip(_everything(shape), expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_failure_in_the_helper_leaves_the_lazy_reads_to_compute(
    two_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory running out in the helper's share (two stages' temporaries at once): the
    prefetch keeps what it finished, and the scan's reads compute the rest serially."""
    calls = []

    def fail_once(mesh: Mesh) -> np.ndarray:
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError("two stages at once")
        return features(mesh)

    mesh = _meshes()["bodies, loose, walls, repeats"]
    expected = _serial(mesh)
    features = shape_mod.shape_features
    monkeypatch.setattr(shape_mod, "shape_features", fail_once)
    shape = Shape.of(mesh, 1000)
    assert not shape.prefetch()
    assert "classifier_row" not in shape.__dict__
    for a, b in zip(_everything(shape), expected, strict=True):
        np.testing.assert_array_equal(a, b)


def test_too_many_bodies_fails_as_serially(two_threads: None) -> None:
    shape = Shape.of(_meshes()["bodies, loose, walls, repeats"], 2)
    assert not shape.prefetch()
    with pytest.raises(UnreadableInput) as err:
        shape.descriptor  # noqa: B018
    assert err.value.reason == LIMIT_BODIES


def test_small_meshes_and_busy_machines_stay_serial(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "_enabled", True)
    assert not Shape.of(_meshes()["one body"], 1000).prefetch()  # 20k triangles, below the cut-off
    monkeypatch.setattr(parallel, "MIN_TRIANGLES", 0)
    monkeypatch.setattr(parallel, "_enabled", False)
    assert not Shape.of(_meshes()["one body"], 1000).prefetch()


def test_scan_workers_use_the_helper_only_beside_an_idle_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert parallel.spare_cores(1) and not parallel.spare_cores(2) and not parallel.spare_cores(3)
    monkeypatch.setattr(parallel, "_enabled", None)
    assert parallel.enabled()  # the API in a 2-core process: one scan, one idle core

    class Conn:
        def close(self) -> None:
            pass

        def send_bytes(self, data: bytes) -> None:
            pass

    seen = []
    monkeypatch.setattr(worker_mod, "serve_tasks", lambda *a: seen.append(parallel.enabled()))
    for attr in ("one_blas_thread", "keep_freed_memory", "cap_memory"):
        monkeypatch.setattr(worker_mod, attr, lambda *a, **k: None)
    monkeypatch.setattr(worker_mod.signal, "signal", lambda *a: None)
    for workers, expected in ((1, True), (2, False), (None, False)):
        worker_mod.pipe_worker(Conn(), Conn(), None, None, workers=workers)  # type: ignore[arg-type]
        assert seen.pop() is expected
