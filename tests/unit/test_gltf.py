"""glTF/GLB: meshes and node transforms from binary and embedded buffers; external references
are never fetched, and hostile documents give a reason code, never a traceback."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import trimesh
from _builders import binary_stl, soup, unit_cube

from fixtures.formats import glb_bytes, gltf_embedded, gltf_parts
from scanner.config import Limits
from scanner.formats import BytesBlob, LoadContext, read_blob

CUBE_V, CUBE_F = unit_cube()


def one(data: bytes, limits: Limits | None = None):
    [result] = read_blob(BytesBlob("upload", data), LoadContext(limits or Limits()))
    return result


def corners(mesh) -> np.ndarray:
    return np.asarray(mesh.vertices)[np.asarray(mesh.faces)]


def test_glb_reads_the_cube_exactly() -> None:
    r = one(glb_bytes(*gltf_parts(CUBE_V, CUBE_F)))
    assert (r.format, r.mesh.triangle_count) == ("glb", 12)
    assert np.array_equal(corners(r.mesh), CUBE_V[CUBE_F])


def test_embedded_gltf_reads_the_same_triangles() -> None:
    r = one(gltf_embedded(*gltf_parts(CUBE_V, CUBE_F)))
    assert r.format == "gltf" and np.array_equal(corners(r.mesh), CUBE_V[CUBE_F])


def test_node_matrix_is_applied() -> None:
    m = trimesh.transformations.rotation_matrix(np.pi / 2, [0, 0, 1])
    m[:3, 3] = [5, 0, 0]
    r = one(glb_bytes(*gltf_parts(CUBE_V, CUBE_F, m)))
    assert np.allclose(np.asarray(r.mesh.vertices).min(axis=0), [4, 0, 0], atol=1e-6)


def test_trimesh_scene_with_several_meshes_and_trs_nodes() -> None:
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.creation.box(), transform=trimesh.transformations.translation_matrix([5, 0, 0]))
    scene.add_geometry(trimesh.creation.icosphere(1), transform=trimesh.transformations.rotation_matrix(0.4, [1, 0, 0]))
    r = one(scene.export(file_type="glb"))
    assert r.mesh.triangle_count == 12 + 80 and len(np.unique(r.mesh.groups)) == 2
    ours = np.sort(np.round(np.asarray(r.mesh.vertices)[np.unique(np.asarray(r.mesh.faces))], 5), axis=0)
    theirs = np.sort(np.round(scene.to_geometry().vertices, 5), axis=0)
    assert np.allclose(ours, theirs, atol=1e-5)


def test_binary_stl_whose_header_says_gltf_is_still_stl() -> None:
    r = one(binary_stl(soup(CUBE_V, CUBE_F), header=b"glTF" + bytes(76)))
    assert (r.format, r.mesh.triangle_count) == ("stl-binary", 12)


def _doc() -> tuple[dict, bytes]:
    return gltf_parts(CUBE_V, CUBE_F)


def _edit(fn) -> bytes:
    doc, binary = _doc()
    fn(doc)
    return glb_bytes(doc, binary)


def _cycle(doc: dict) -> None:
    doc["nodes"] = [{"children": [1]}, {"children": [0], "mesh": 0}]


HOSTILE = {
    "truncated": (glb_bytes(*_doc())[:-40], "truncated"),
    "short-header": (b"glTF\x02\x00\x00", "truncated"),
    "lying-length": (glb_bytes(*_doc(), declared_length=1 << 30), "truncated"),
    "version-1": (b"glTF" + (1).to_bytes(4, "little") + glb_bytes(*_doc())[8:], "unsupported-format"),
    "bad-json": (b"glTF" + struct.pack("<IIII", 2, 28, 8, 0x4E4F534A) + b'{"asset"', "corrupt"),
    "deep-json": (b'{"asset":{"version":"2.0"},"meshes":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "corrupt"),
    "bad-index": (_edit(lambda d: None)[:-4] + (99).to_bytes(4, "little"), "bad-index"),
    "huge-count": (_edit(lambda d: d["accessors"][1].update(count=3 * 10**9)), "limit:triangles"),
    "count-past-view": (_edit(lambda d: d["accessors"][0].update(count=9)), "truncated"),
    "view-past-buffer": (_edit(lambda d: d["bufferViews"][1].update(byteLength=10**6)), "truncated"),
    "buffer-lies": (_edit(lambda d: d["buffers"][0].update(byteLength=10**6)), "truncated"),
    "negative-offset": (_edit(lambda d: d["bufferViews"][0].update(byteOffset=-8)), "corrupt"),
    "missing-accessor": (_edit(lambda d: d["meshes"][0]["primitives"][0].update(indices=7)), "bad-index"),
    "string-index": (_edit(lambda d: d["meshes"][0]["primitives"][0].update(indices="1")), "corrupt"),
    "node-cycle": (_edit(_cycle), "limit:depth"),
    "nan-matrix": (_edit(lambda d: d["nodes"][0].update(matrix=[float("nan")] * 16)), "corrupt"),
    "bad-matrix": (_edit(lambda d: d["nodes"][0].update(matrix=[1, 2])), "corrupt"),
    "external-uri": (_edit(lambda d: d["buffers"][0].update(uri="part.bin")), "unsupported-format"),
    "url": (_edit(lambda d: d["buffers"][0].update(uri="https://example.invalid/x.bin")), "unsupported-format"),
    "draco": (_edit(lambda d: d.update(extensionsRequired=["KHR_draco_mesh_compression"])), "unsupported-format"),
    "sparse": (_edit(lambda d: d["accessors"][0].update(sparse={"count": 1})), "corrupt"),
    "no-triangles": (_edit(lambda d: d["meshes"][0]["primitives"][0].update(mode=1)), "empty"),
    "scene-missing": (_edit(lambda d: d.update(scene=5)), "bad-index"),
    "no-bin-chunk": (glb_bytes(_doc()[0], None), "corrupt"),
}


@pytest.mark.parametrize(("data", "reason"), HOSTILE.values(), ids=list(HOSTILE))
def test_hostile_gltf_gives_a_reason_code(data: bytes, reason: str) -> None:
    r = one(data)
    assert r.mesh is None and r.error.reason == reason, r.error


def test_non_finite_positions() -> None:
    v = CUBE_V.copy()
    v[3] = [np.inf, 0, 0]
    assert one(glb_bytes(*gltf_parts(v, CUBE_F))).error.reason == "non-finite"


def test_instances_are_counted_before_they_are_copied() -> None:
    doc, binary = _doc()
    doc["nodes"] = [{"mesh": 0, "translation": [i, 0, 0]} for i in range(50)]
    doc["scenes"] = [{"nodes": list(range(50))}]
    assert one(glb_bytes(doc, binary), Limits(max_triangles=100)).error.reason == "limit:triangles"
    assert one(glb_bytes(doc, binary)).mesh.triangle_count == 600


def test_strips_and_fans() -> None:
    doc, binary = _doc()
    quad = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype="<f4").tobytes()
    doc["accessors"][0].update(count=4)
    doc["bufferViews"] = [{"buffer": 0, "byteLength": 48}]
    doc["buffers"] = [{"byteLength": 48}]
    del doc["meshes"][0]["primitives"][0]["indices"]
    for mode in (5, 6):
        doc["meshes"][0]["primitives"][0]["mode"] = mode
        assert one(glb_bytes(doc, quad)).mesh.triangle_count == 2
    assert json.loads(json.dumps(doc))  # still a plain document
