"""glTF 2.0: binary GLB (a JSON chunk and one BIN chunk) and JSON ``.gltf`` with embedded
(``data:`` base64) buffers.

Read: the default scene's node tree (``matrix`` or translation/rotation/scale, composed down
the tree), then every mesh it does not place, as it is; every mesh primitive of mode
triangles, strip or fan (points and lines are not a surface and are skipped), ``POSITION``
and ``indices`` accessors of any component type and byte stride. Each placed mesh is its own
group (body). Materials, textures, normals, skins and morph targets are ignored.

Refused with a reason, never fetched or guessed: a buffer given by an external URI (a file
name beside the ``.gltf``, or a URL: meshscan reads the bytes it was handed, nothing else)
and compressed-mesh extensions (Draco, meshopt) are ``unsupported-format``; an accessor or
view reaching outside its buffer, an index outside the positions, a node tree nested deeper
than ``MAX_NODE_DEPTH`` (or a cycle) and sparse accessors are ``corrupt``/``bad-index``/
``limit:depth``. Every count is checked against the limits before arrays are built, and the
triangles of every instance are counted before they are copied.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from typing import Any

import numpy as np

from scanner.errors import (
    BAD_INDEX,
    CORRUPT,
    EMPTY,
    LIMIT_DEPTH,
    LIMIT_XML,
    TRUNCATED,
    UNSUPPORTED_FORMAT,
    UnreadableInput,
)
from scanner.formats._probe import Probe
from scanner.formats.base import Format, LoadContext, Sniffer, build_mesh
from scanner.formats.blob import Blob
from scanner.mesh import Mesh

GLB_MAGIC = b"glTF"
_JSON_CHUNK, _BIN_CHUNK = 0x4E4F534A, 0x004E4942
MAX_NODE_DEPTH = 32
_COMPONENTS = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
_COMPRESSED = ("KHR_draco_mesh_compression", "EXT_meshopt_compression", "KHR_meshopt_compression")
_TRIANGLES, _STRIP, _FAN = 4, 5, 6


def _corrupt(detail: str) -> UnreadableInput:
    return UnreadableInput(CORRUPT, f"glTF: {detail}")


def _split_glb(data: bytes) -> tuple[bytes, bytes | None]:
    """The JSON chunk and the BIN chunk (if any) of a GLB, every length checked."""
    if len(data) < 20:
        raise UnreadableInput(TRUNCATED, "GLB shorter than its header")
    _, version, length = struct.unpack_from("<4sII", data)
    if version != 2:
        raise UnreadableInput(UNSUPPORTED_FORMAT, f"glTF binary version {version} (only 2 is read)")
    if length > len(data):
        raise UnreadableInput(TRUNCATED, f"GLB declares {length} bytes, {len(data)} present")
    chunks: dict[int, bytes] = {}
    at = 12
    while at + 8 <= length:
        size, kind = struct.unpack_from("<II", data, at)
        if at + 8 + size > length:
            raise UnreadableInput(TRUNCATED, "a GLB chunk runs past the end of the file")
        chunks.setdefault(kind, data[at + 8 : at + 8 + size])
        at += 8 + size + (-size % 4)
    if _JSON_CHUNK not in chunks:
        raise _corrupt("GLB without a JSON chunk")
    return chunks[_JSON_CHUNK], chunks.get(_BIN_CHUNK)


def _document(blob: Blob, ctx: LoadContext) -> tuple[dict[str, Any], bytes | None]:
    data = blob.read()
    raw, binary = _split_glb(data) if data.startswith(GLB_MAGIC) else (data, None)
    if len(raw) > ctx.limits.max_xml_bytes:
        raise UnreadableInput(LIMIT_XML, f"glTF JSON is {len(raw)} bytes")
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested thousands deep
        raise _corrupt(f"JSON: {type(exc).__name__}: {str(exc)[:80]}") from None
    if not isinstance(doc, dict):
        raise _corrupt("the document is not a JSON object")
    used = set(doc.get("extensionsRequired") or []) | set(doc.get("extensionsUsed") or [])
    compressed = sorted(used & set(_COMPRESSED))
    if compressed:
        raise UnreadableInput(UNSUPPORTED_FORMAT, f"glTF with compressed meshes ({', '.join(compressed)})")
    return doc, binary


class _Reader:
    """Buffers, views and accessors of one document, each decoded once and bounds-checked."""

    def __init__(self, doc: dict[str, Any], binary: bytes | None, ctx: LoadContext) -> None:
        self.doc, self.binary, self.ctx = doc, binary, ctx
        self._buffers: dict[int, bytes] = {}

    def _item(self, kind: str, index: Any) -> dict[str, Any]:
        items = self.doc.get(kind)
        if not isinstance(index, int) or isinstance(index, bool) or not isinstance(items, list):
            raise _corrupt(f"{kind} reference {index!r}")
        if not 0 <= index < len(items) or not isinstance(items[index], dict):
            raise UnreadableInput(BAD_INDEX, f"glTF {kind}[{index}] does not exist")
        return items[index]

    def buffer(self, index: int) -> bytes:
        if index not in self._buffers:
            buf = self._item("buffers", index)
            uri = buf.get("uri")
            if uri is None:
                if self.binary is None:
                    raise _corrupt(f"buffer {index} has no URI and there is no GLB binary chunk")
                data = self.binary
            elif isinstance(uri, str) and uri.startswith("data:") and ";base64," in uri[:200]:
                try:
                    data = base64.b64decode(uri.split(",", 1)[1], validate=True)
                except (binascii.Error, ValueError):
                    raise _corrupt(f"buffer {index}: bad base64 data URI") from None
            else:
                shown = uri[:60] if isinstance(uri, str) else repr(uri)[:60]
                raise UnreadableInput(
                    UNSUPPORTED_FORMAT, f"glTF buffer {index} is an external reference ({shown!r}); it is not fetched"
                )
            declared = buf.get("byteLength")
            if not isinstance(declared, int) or declared < 0 or declared > len(data):
                raise UnreadableInput(
                    TRUNCATED, f"glTF buffer {index} declares {declared!r} bytes, {len(data)} present"
                )
            self._buffers[index] = data[:declared]
        return self._buffers[index]

    def accessor(self, index: int, widths: tuple[str, ...]) -> np.ndarray:
        """The accessor's values as a (count, width) array (a copy, native byte order)."""
        acc = self._item("accessors", index)
        if "sparse" in acc:
            raise _corrupt(f"accessor {index} is sparse (not read)")
        kind, ctype, count = acc.get("type"), acc.get("componentType"), acc.get("count")
        if kind not in widths or ctype not in _COMPONENTS or not isinstance(count, int) or count < 0:
            raise _corrupt(f"accessor {index}: type {kind!r}, componentType {ctype!r}, count {count!r}")
        self.ctx.check_vertices(count) if kind == "VEC3" else self.ctx.check_triangles(count // 3)
        dtype = np.dtype(_COMPONENTS[ctype]).newbyteorder("<")
        width = _WIDTH[kind]
        if "bufferView" not in acc:  # all zeros, by the specification
            return np.zeros((count, width), dtype=dtype.newbyteorder("="))
        view = self._item("bufferViews", acc["bufferView"])
        data = self.buffer(view.get("buffer"))
        start, length = view.get("byteOffset", 0), view.get("byteLength")
        offset, stride = acc.get("byteOffset", 0), view.get("byteStride") or dtype.itemsize * width
        numbers = (start, length, offset, stride)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers) or stride == 0:
            raise _corrupt(f"accessor {index}: bad offsets or lengths {numbers!r}")
        if start + length > len(data):
            raise UnreadableInput(TRUNCATED, f"glTF bufferView {acc['bufferView']} runs past its buffer")
        if count and offset + stride * (count - 1) + dtype.itemsize * width > length:
            raise UnreadableInput(TRUNCATED, f"glTF accessor {index} runs past its bufferView")
        if not count:
            return np.zeros((0, width), dtype=dtype.newbyteorder("="))
        arr = np.ndarray((count, width), dtype, data, start + offset, (stride, dtype.itemsize))
        return arr.astype(dtype.newbyteorder("="))

    def primitive(self, prim: Any) -> tuple[np.ndarray, np.ndarray] | None:
        """A primitive's positions and triangles, or None for points and lines."""
        if not isinstance(prim, dict) or not isinstance(prim.get("attributes"), dict):
            raise _corrupt("a mesh primitive without attributes")
        mode = prim.get("mode", _TRIANGLES)
        if mode not in (_TRIANGLES, _STRIP, _FAN):
            return None
        if any(name in (prim.get("extensions") or {}) for name in _COMPRESSED):
            raise UnreadableInput(UNSUPPORTED_FORMAT, "glTF primitive with a compressed mesh extension")
        if "POSITION" not in prim["attributes"]:
            return None
        verts = self.accessor(prim["attributes"]["POSITION"], ("VEC3",)).astype(np.float64)
        if "indices" in prim:
            idx = self.accessor(prim["indices"], ("SCALAR",)).ravel().astype(np.int64)
        else:
            idx = np.arange(len(verts), dtype=np.int64)
        tris = _triangles(idx, mode)
        if len(tris) and tris.max() >= len(verts):
            raise UnreadableInput(BAD_INDEX, f"glTF index {int(tris.max())} outside 0..{len(verts) - 1}")
        return verts, tris


def _triangles(idx: np.ndarray, mode: int) -> np.ndarray:
    if mode == _TRIANGLES:
        return idx[: len(idx) // 3 * 3].reshape(-1, 3)
    if len(idx) < 3:
        return np.zeros((0, 3), dtype=np.int64)
    i = np.arange(len(idx) - 2)
    if mode == _FAN:
        return np.stack([np.full(len(i), idx[0]), idx[i + 1], idx[i + 2]], axis=1)
    even = (i % 2 == 0)[:, None]  # a strip flips every other triangle to keep the winding
    a, b, c = idx[i], idx[i + 1], idx[i + 2]
    return np.where(even, np.stack([a, b, c], axis=1), np.stack([b, a, c], axis=1))


def _node_matrix(node: dict[str, Any]) -> np.ndarray:
    try:
        if "matrix" in node:
            m = np.asarray(node["matrix"], dtype=np.float64)
            if m.shape != (16,):
                raise ValueError("matrix")
            m = m.reshape(4, 4).T  # column-major
        else:
            t = np.asarray(node.get("translation", [0, 0, 0]), dtype=np.float64).reshape(3)
            x, y, z, w = np.asarray(node.get("rotation", [0, 0, 0, 1]), dtype=np.float64).reshape(4)
            s = np.asarray(node.get("scale", [1, 1, 1]), dtype=np.float64).reshape(3)
            r = np.array([
                [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
            ])  # fmt: skip
            m = np.eye(4)
            m[:3, :3] = r * s
            m[:3, 3] = t
    except (ValueError, TypeError):
        raise _corrupt("a node transform that is not 16 (or 3/4/3) numbers") from None
    if not np.isfinite(m).all():
        raise _corrupt("a node transform with NaN or infinity")
    return m


class _Scene:
    """Meshes placed by walking the node tree; every instance counted before it is copied."""

    def __init__(self, reader: _Reader) -> None:
        self.reader = reader
        self.meshes: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}
        self.placed: list[tuple[str, np.ndarray, np.ndarray]] = []
        self.triangles = 0

    def mesh(self, index: int) -> list[tuple[np.ndarray, np.ndarray]]:
        if index not in self.meshes:
            mesh = self.reader._item("meshes", index)
            prims = mesh.get("primitives")
            if not isinstance(prims, list):
                raise _corrupt(f"mesh {index} without primitives")
            self.meshes[index] = [p for p in map(self.reader.primitive, prims) if p is not None]
        return self.meshes[index]

    def place(self, index: int, name: str, matrix: np.ndarray) -> None:
        for verts, tris in self.mesh(index):
            if not len(tris):
                continue
            self.triangles += len(tris)
            self.reader.ctx.check_triangles(self.triangles)
            with np.errstate(all="ignore"):  # NaN/inf stay so and are refused by build_mesh
                placed = verts @ matrix[:3, :3].T + matrix[:3, 3]
            self.placed.append((name, placed, tris))

    def node(self, index: int, parent: np.ndarray, depth: int) -> None:
        if depth > MAX_NODE_DEPTH:
            raise UnreadableInput(LIMIT_DEPTH, f"glTF nodes nested deeper than {MAX_NODE_DEPTH} (or a cycle)")
        node = self.reader._item("nodes", index)
        matrix = parent @ _node_matrix(node)
        if "mesh" in node:
            self.place(node["mesh"], str(node.get("name") or f"node {index}")[:80], matrix)
        children = node.get("children") or []
        if not isinstance(children, list):
            raise _corrupt(f"node {index} children are not a list")
        for child in children:
            self.node(child, matrix, depth + 1)


def _roots(doc: dict[str, Any]) -> list[Any] | None:
    """The default scene's root nodes (the first scene's without a default), or None."""
    scenes = doc.get("scenes")
    if not isinstance(scenes, list) or not scenes:
        return None
    pick = doc.get("scene", 0)
    scene = scenes[pick] if isinstance(pick, int) and 0 <= pick < len(scenes) else None
    if not isinstance(scene, dict):
        raise UnreadableInput(BAD_INDEX, f"glTF scene {pick!r} does not exist")
    nodes = scene.get("nodes") or []
    if not isinstance(nodes, list):
        raise _corrupt("scene nodes are not a list")
    return nodes


def load_gltf(blob: Blob, ctx: LoadContext) -> Mesh:
    """Read a GLB or a self-contained glTF; every placed mesh is a group."""
    doc, binary = _document(blob, ctx)
    scene = _Scene(_Reader(doc, binary, ctx))
    for index in _roots(doc) or []:
        scene.node(index, np.eye(4), 0)
    meshes = doc.get("meshes")
    for index in range(len(meshes) if isinstance(meshes, list) else 0):
        # a mesh no node of the default scene places (no scene at all, as the specification
        # allows; another scene's; no node's) is read as it is: trimesh loads every mesh, so
        # a default scene of a decoy must not leave the part beside it unread
        if index not in scene.meshes:
            scene.place(index, f"mesh {index}", np.eye(4))
    if not scene.placed:
        raise UnreadableInput(EMPTY, "glTF with no triangles in its scene")
    offset, verts, tris, groups = 0, [], [], []
    for index, (_, v, t) in enumerate(scene.placed):
        verts.append(v)
        tris.append(t + offset)
        groups.append(np.full(len(t), index, dtype=np.int32))
        offset += len(v)
    names = [name for name, _, _ in scene.placed]
    fmt = "glb" if binary is not None or blob.head(4) == GLB_MAGIC else "gltf"
    return build_mesh(np.concatenate(verts), np.concatenate(tris), blob, fmt, ctx, np.concatenate(groups), names)


def _sniff_glb(p: Probe) -> str | None:
    """The GLB magic - unless the size says binary STL (whose 80-byte header may say
    anything, ``glTF`` too): a file that is both is left to the STL sniffer."""
    head = p.head
    if not head.startswith(GLB_MAGIC):
        return None
    if len(head) >= 84 and 84 + 50 * struct.unpack_from("<I", head, 80)[0] == p.blob.size:
        return None
    return "glb"


FORMATS = (
    Format(
        "glb",
        "glTF, GLB",
        53,
        "glTF 2.0, binary or JSON with embedded (`data:`) buffers: the default scene's node tree with its "
        "transforms, triangle/strip/fan primitives; each placed mesh is a body. External buffer URIs are "
        "never fetched and Draco/meshopt-compressed meshes are not decoded: both `unsupported-format`",
        loader=load_gltf,
    ),
    Format("gltf", "glTF, GLB", 54, loader=load_gltf),
)
SNIFFERS = (Sniffer(114, _sniff_glb, frozenset({"glb"})),)
