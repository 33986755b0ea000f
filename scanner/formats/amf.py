"""AMF (Additive Manufacturing File Format, ISO/ASTM 52915): XML, plain or - as PrusaSlicer
and Slic3r write it - zip-compressed (a zip holding one ``.amf`` member, which the zip
reader hands here like any member).

Read: every ``object``'s meshes (their ``vertices`` and every ``volume``'s triangles), the
``unit`` attribute (scaled to millimetres, as slicers do), and ``constellation`` instances
(``deltax/y/z`` and ``rx/ry/rz`` in degrees, nested constellations too). An object no
constellation places is placed as written (PrusaSlicer gives it a default instance). Each
placed object is its own group (body).
Curved-triangle ``edge``/``normal`` hints, materials, colours and metadata are ignored.

The XML is parsed by defusedxml with DTDs, entities and external references refused (as for
3MF), after a size check against ``max_xml_bytes``; counts are checked against the triangle
and vertex limits before arrays are built.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from scanner.errors import BAD_INDEX, CORRUPT, EMPTY, LIMIT_DEPTH, LIMIT_XML, UnreadableInput
from scanner.formats._probe import Probe
from scanner.formats._text import parse_numbers
from scanner.formats.base import Format, LoadContext, Sniffer, build_mesh
from scanner.formats.blob import Blob
from scanner.mesh import Mesh

UNITS_MM = {"millimeter": 1.0, "millimetre": 1.0, "inch": 25.4, "feet": 304.8, "meter": 1000.0, "metre": 1000.0,
            "micron": 0.001}  # fmt: skip
MAX_CONSTELLATION_DEPTH = 16


def _local(tag: str) -> str:
    """An element's name without its namespace (AMF files may or may not declare one)."""
    return tag.rsplit("}", 1)[-1].lower()


def _children(el: Element, name: str) -> list[Element]:
    return [c for c in el if _local(c.tag) == name]


def _child_text(el: Element, name: str, default: str | None = None) -> str | None:
    for c in el:
        if _local(c.tag) == name:
            return (c.text or "").strip()
    return default


def _parse(blob: Blob, ctx: LoadContext) -> Element:
    if blob.size > ctx.limits.max_xml_bytes:
        raise UnreadableInput(LIMIT_XML, f"AMF XML is {blob.size} bytes")
    try:
        return fromstring(blob.read(), forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise UnreadableInput(CORRUPT, f"AMF: {type(exc).__name__}: {exc}") from None


def _object_mesh(obj: Element, ctx: LoadContext) -> tuple[np.ndarray, np.ndarray]:
    """One object's vertices and the triangles of all its volumes, over every ``mesh`` of it
    in order: PrusaSlicer collects an object's vertices across its meshes and indexes every
    volume's triangles into them, so a second mesh is geometry too (reading the first alone
    let a decoy mesh hide the part after it)."""
    meshes = _children(obj, "mesh")
    vertex_els = [v for mesh in meshes for vs in _children(mesh, "vertices") for v in _children(vs, "vertex")]
    tri_els = [t for mesh in meshes for vol in _children(mesh, "volume") for t in _children(vol, "triangle")]
    ctx.check_vertices(len(vertex_els))
    ctx.check_triangles(len(tri_els))
    coords = []
    for v in vertex_els:
        c = next(iter(_children(v, "coordinates")), None)
        if c is None:
            raise UnreadableInput(CORRUPT, "AMF vertex without coordinates")
        coords.append(" ".join(_child_text(c, axis) or "" for axis in ("x", "y", "z")))
    idx = [" ".join(_child_text(t, k) or "" for k in ("v1", "v2", "v3")) for t in tri_els]
    verts = parse_numbers(" ".join(coords).encode(), np.float64, "AMF coordinate")
    tris = parse_numbers(" ".join(idx).encode(), np.int64, "AMF triangle index")
    if len(verts) != 3 * len(vertex_els) or len(tris) != 3 * len(tri_els):
        raise UnreadableInput(CORRUPT, "AMF vertex or triangle lacks a coordinate or index")
    verts, tris = verts.reshape(-1, 3), tris.reshape(-1, 3)
    if len(tris) and (tris.min() < 0 or tris.max() >= len(verts)):
        raise UnreadableInput(BAD_INDEX, "AMF triangle index outside its object's vertices")
    return verts, tris


def _instance_matrix(inst: Element) -> np.ndarray:
    """``deltax/y/z`` and ``rx/ry/rz`` (degrees; x first, then y, then z) as a 4x4 matrix."""
    try:
        d = [float(_child_text(inst, f"delta{a}", "0") or 0) for a in "xyz"]
        r = np.radians([float(_child_text(inst, f"r{a}", "0") or 0) for a in "xyz"])
    except ValueError:
        raise UnreadableInput(CORRUPT, "AMF instance with a non-numeric offset or angle") from None
    if not np.isfinite(d).all() or not np.isfinite(r).all():
        raise UnreadableInput(CORRUPT, "AMF instance with a non-finite offset or angle")
    cx, cy, cz = np.cos(r)
    sx, sy, sz = np.sin(r)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = rz @ ry @ rx
    m[:3, 3] = d
    return m


class _Placer:
    """Objects placed by constellations (which may contain constellations), counted as placed."""

    def __init__(self, root: Element, ctx: LoadContext) -> None:
        self.ctx = ctx
        self.objects = {o.get("id", ""): o for o in _children(root, "object")}
        self.constellations = {c.get("id", ""): c for c in _children(root, "constellation")}
        self.meshes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.placed: list[tuple[str, np.ndarray, np.ndarray]] = []
        self.triangles = 0

    def place_object(self, oid: str, matrix: np.ndarray) -> None:
        if oid not in self.meshes:
            if oid not in self.objects:
                raise UnreadableInput(CORRUPT, f"AMF instance of missing object {oid!r}")
            self.meshes[oid] = _object_mesh(self.objects[oid], self.ctx)
        verts, tris = self.meshes[oid]
        if not len(tris):
            return
        self.triangles += len(tris)
        self.ctx.check_triangles(self.triangles)  # before the copy: instances multiply triangles
        with np.errstate(all="ignore"):  # NaN/inf stay so and are refused by build_mesh
            placed = verts @ matrix[:3, :3].T + matrix[:3, 3]
        self.placed.append((oid, placed, tris))

    def place_constellation(self, cid: str, matrix: np.ndarray, depth: int) -> None:
        if depth > MAX_CONSTELLATION_DEPTH:
            raise UnreadableInput(LIMIT_DEPTH, "AMF constellations nested too deep (or in a cycle)")
        for inst in _children(self.constellations[cid], "instance"):
            target = inst.get("objectid", "")
            m = matrix @ _instance_matrix(inst)
            if target in self.constellations:
                self.place_constellation(target, m, depth + 1)
            else:
                self.place_object(target, m)


def load_amf(blob: Blob, ctx: LoadContext) -> Mesh:
    """Read an AMF document; every placed object is a group."""
    root = _parse(blob, ctx)
    if _local(root.tag) != "amf":
        raise UnreadableInput(CORRUPT, f"AMF root element is <{_local(root.tag)}>")
    scale = UNITS_MM.get((root.get("unit") or "millimeter").strip().lower(), 1.0)
    placer = _Placer(root, ctx)
    used = {i.get("objectid", "") for c in placer.constellations.values() for i in _children(c, "instance")}
    tops = [cid for cid in placer.constellations if cid not in used]
    for cid in tops:
        placer.place_constellation(cid, np.eye(4), 0)
    placed = {oid for oid, _, _ in placer.placed}
    for oid in placer.objects:  # objects no constellation places: PrusaSlicer gives each a
        if oid not in placed:  # default instance, so a decoy constellation hides nothing
            placer.place_object(oid, np.eye(4))
    if not placer.placed:
        raise UnreadableInput(EMPTY, "AMF with no triangles")
    offset, verts, tris, groups = 0, [], [], []
    for index, (_, v, t) in enumerate(placer.placed):
        verts.append(v * scale)
        tris.append(t + offset)
        groups.append(np.full(len(t), index, dtype=np.int32))
        offset += len(v)
    names = [f"object {oid}" for oid, _, _ in placer.placed]
    return build_mesh(np.concatenate(verts), np.concatenate(tris), blob, "amf", ctx, np.concatenate(groups), names)


def _sniff(p: Probe) -> str | None:
    return "amf" if p.xml_root == b"amf" else None


FORMATS = (
    Format(
        "amf",
        "AMF",
        52,
        "plain XML or zip-compressed (PrusaSlicer); every object's volumes, `unit` scaled to mm, "
        "constellation instances with offsets and rotations (nested too); each placed object is a body. "
        "Parsed with DTDs and entities refused, like 3MF",
        loader=load_amf,
    ),
)
SNIFFERS = (Sniffer(742, _sniff, frozenset({"amf"})),)
