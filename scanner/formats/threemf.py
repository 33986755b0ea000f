"""3MF: an OPC zip package whose model part(s) are XML.

Supported: several objects, ``components`` (with transforms, nested), build items with
transforms, and the production extension's ``p:path`` references to objects in other model
parts of the same package. Every build item instance becomes its own group (body), named
after its object. XML is parsed by defusedxml (no DTDs, no entity expansion, no external
entities); each part is size-capped before parsing.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from scanner.errors import BAD_INDEX, CORRUPT, EMPTY, LIMIT_DEPTH, LIMIT_XML, NOT_A_MODEL, UnreadableInput
from scanner.formats._hidden import read_hidden, zip_trailer
from scanner.formats._probe import Probe
from scanner.formats._text import parse_numbers
from scanner.formats.archive import (
    ZIP_MAGIC,
    check_unlisted_entries,
    is_empty_dir,
    open_zip,
    read_member_bytes,
    read_zip_member,
    zip_has_more_entries_than,
)
from scanner.formats.base import Format, LoadContext, MemberResult, Sniffer, build_mesh
from scanner.formats.blob import Blob
from scanner.mesh import Mesh

PROD = "{http://schemas.microsoft.com/3dmanufacturing/production/2015/06}"
RELS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
MODEL_REL = "http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"
MAX_COMPONENT_DEPTH = 16
BARE_PART = "3D/3dmodel.model"
"""The name a bare model XML is read under (its own part paths resolve against it)."""


@dataclass
class _Object:
    """One ``<object>``: its meshes (each its own vertex indexing) and its components."""

    meshes: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    components: list[tuple[str, str, np.ndarray]] = field(default_factory=list)


def _local(tag: str) -> str:
    """An element path step matching ``tag`` in any namespace or none (``{*}tag``): trimesh
    matches 3MF elements so, and PrusaSlicer compares unprefixed names without namespaces, so a
    model whose core elements sit in another namespace is still a model to them."""
    return f"{{*}}{tag}"


class _Tags:
    """The element tags of one parsed part, by local name (``{ns}vertex`` and ``vertex`` are
    both ``vertex``), to find elements in any namespace anywhere below another: PrusaSlicer
    dispatches on element names wherever they sit and trimesh iterates descendants, so a mesh
    or its vertices wrapped in an unknown element, or in another namespace, are still read by
    them. One pass over the tree collects the tags; each search is then ElementTree's own
    iteration by exact tag (a ``.//{*}vertex`` path is four times slower on a large mesh)."""

    def __init__(self, root: Element) -> None:
        self.by_name: dict[str, list[str]] = {}
        for tag in {e.tag for e in root.iter()}:
            if isinstance(tag, str):
                self.by_name.setdefault(tag.rpartition("}")[2], []).append(tag)

    def below(self, elem: Element, name: str) -> list[Element]:
        """Every element named ``name`` below ``elem``, in document order."""
        tags = self.by_name.get(name, [])
        if len(tags) == 1:
            return [e for e in elem.iter(tags[0]) if e is not elem]
        wanted = set(tags)
        return [e for e in elem.iter() if e.tag in wanted and e is not elem] if wanted else []


def _transform(text: str | None) -> np.ndarray:
    """3MF's 3x4 row-vector matrix as a 4x4 acting on column vectors."""
    m = np.eye(4)
    if text:
        try:
            v = np.array([float(x) for x in text.split()])
        except ValueError:
            raise UnreadableInput(CORRUPT, f"bad transform {text[:60]!r}") from None
        if v.shape != (12,) or not np.isfinite(v).all():
            raise UnreadableInput(CORRUPT, f"bad transform {text[:60]!r}")
        m[:3, :3] = v[:9].reshape(3, 3).T
        m[:3, 3] = v[9:]
    return m


class _Package:
    """The parts of a 3MF package: a zip's members, or one bare model XML (``part.model``)."""

    def __init__(self, ctx: LoadContext, names: dict[str, str], read: Callable[[str], bytes]) -> None:
        self.ctx = ctx
        self.names = names
        self._read = read
        self.parts: dict[str, dict[str, _Object]] = {}
        self.object_names: dict[tuple[str, str], str] = {}
        self._root_cache: dict[str, Element] = {}
        self.visited: set[tuple[str, str]] = set()
        """``(part, id)`` of every object instantiated."""
        self.read_entries: set[int] = set()
        """``id()`` of each zip entry parsed as a part: every other entry is scanned as an
        archive member. Entries, not names: a zip may hold two entries of one name (zipfile
        opens the last) or names equal but for case (one key here), and PrusaSlicer walks the
        entries, not the names - the entry not opened was skipped unread."""

    @classmethod
    def from_zip(cls, zf: zipfile.ZipFile, ctx: LoadContext) -> _Package:
        names = {_key(n): n for n in zf.namelist()}
        pkg = cls(ctx, names, lambda name: b"")

        def read(name: str) -> bytes:
            info = zf.getinfo(name)
            pkg.read_entries.add(id(info))
            if info.file_size > ctx.limits.max_xml_bytes:
                raise UnreadableInput(LIMIT_XML, f"{name} is {info.file_size} bytes")
            return read_zip_member(zf, info, ctx)

        pkg._read = read
        return pkg

    @classmethod
    def from_model_xml(cls, blob: Blob, ctx: LoadContext) -> _Package:
        if blob.size > ctx.limits.max_xml_bytes:
            raise UnreadableInput(LIMIT_XML, f"model XML is {blob.size} bytes")
        return cls(ctx, {BARE_PART.lower(): BARE_PART}, lambda name: blob.read())

    def _xml(self, path: str) -> Element:
        key = path.lstrip("/").lower()
        name = self.names.get(key)
        if name is None:
            raise UnreadableInput(CORRUPT, f"3MF part {path} is missing")
        data = self._read(name)
        if len(data) > self.ctx.limits.max_xml_bytes:
            raise UnreadableInput(LIMIT_XML, f"{path} is {len(data)} bytes")
        try:
            return fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
        except (ParseError, DefusedXmlException, ValueError) as exc:
            raise UnreadableInput(CORRUPT, f"{path}: {type(exc).__name__}: {exc}") from None

    def root_part(self) -> str:
        if "_rels/.rels" in self.names:
            for rel in self._xml("_rels/.rels").iter(f"{RELS}Relationship"):
                target = rel.get("Target", "")
                if target and (rel.get("Type") == MODEL_REL or target.lower().endswith(".model")):
                    return target.lstrip("/")
        models = sorted(name for lower, name in self.names.items() if lower.endswith(".model"))
        for name in models:
            if name.replace("\\", "/").lstrip("/").lower().startswith("3d/"):
                return name
        if models:
            return models[0]
        raise UnreadableInput(CORRUPT, "3MF package without a model part")

    def objects(self, part: str) -> dict[str, _Object]:
        key = part.lstrip("/").lower()
        if key not in self.parts:
            self.parts[key] = self._parse_objects(part)
        return self.parts[key]

    def _parse_objects(self, part: str) -> dict[str, _Object]:
        """Every ``<object>`` of a part, in any namespace: all its ``<mesh>`` elements and all
        its components. The schema allows one mesh *or* components, but readers differ on
        files that break it (PrusaSlicer keeps the last mesh, trimesh every mesh), so a
        second mesh or a mesh beside components is read, never dropped. An id declared twice
        is refused: one of the two objects would go unread."""
        root = self._xml(part)
        key = part.lstrip("/").lower()
        self._root_cache[key] = root
        out: dict[str, _Object] = {}
        tags = _Tags(root)
        for obj in tags.below(root, "object"):
            oid = obj.get("id", "")
            if oid in out:
                raise UnreadableInput(CORRUPT, f"3MF object id {oid[:20]!r} declared twice in {part}")
            self.object_names[(key, oid)] = obj.get("name") or f"object {oid}"
            entry = out[oid] = _Object()
            for mesh in tags.below(obj, "mesh"):
                entry.meshes.append(self._mesh(mesh, tags))
            for comps in tags.below(obj, "components"):
                for c in tags.below(comps, "component"):
                    path = c.get(f"{PROD}path") or part
                    entry.components.append((path, c.get("objectid", ""), _transform(c.get("transform"))))
        return out

    def _mesh(self, mesh: Element, tags: _Tags) -> tuple[np.ndarray, np.ndarray]:
        """One mesh's vertices and the triangles of every ``<triangles>`` element in it
        (PrusaSlicer keeps the last one, trimesh the first: both are read). Two ``<vertices>``
        elements are refused: readers disagree on which one the indices point into."""
        blocks = tags.below(mesh, "vertices")
        if len(blocks) > 1:
            raise UnreadableInput(CORRUPT, "a 3MF mesh with more than one vertices element")
        vlist = tags.below(blocks[0], "vertex") if blocks else []
        tlist = [t for ts in tags.below(mesh, "triangles") for t in tags.below(ts, "triangle")]
        self.ctx.check_vertices(len(vlist))
        self.ctx.check_triangles(len(tlist))
        try:
            vtext = " ".join(f"{v.get('x')} {v.get('y')} {v.get('z')}" for v in vlist).encode()
            ttext = " ".join(f"{t.get('v1')} {t.get('v2')} {t.get('v3')}" for t in tlist).encode()
        except TypeError:
            raise UnreadableInput(CORRUPT, "vertex or triangle lacks a coordinate") from None
        verts = parse_numbers(vtext, np.float64, "3MF coordinate").reshape(-1, 3)
        tris = parse_numbers(ttext, np.int64, "3MF triangle index").reshape(-1, 3)
        if len(tris) and (tris.min() < 0 or tris.max() >= len(verts)):
            raise UnreadableInput(BAD_INDEX, "3MF triangle index outside its object's vertices")
        return verts, tris

    def instantiate(self, part: str, oid: str, matrix: np.ndarray, depth: int, out: list) -> None:
        if depth > MAX_COMPONENT_DEPTH:
            raise UnreadableInput(LIMIT_DEPTH, "3MF components nested too deep (or in a cycle)")
        obj = self.objects(part).get(oid)
        if obj is None:
            raise UnreadableInput(CORRUPT, f"3MF build refers to missing object {oid} in {part}")
        self.visited.add((part.lstrip("/").lower(), oid))
        for verts, tris in obj.meshes:
            placed = verts @ matrix[:3, :3].T + matrix[:3, 3]
            out.append((placed, tris))
            if sum(len(t) for _, t in out) > self.ctx.limits.max_triangles:
                self.ctx.check_triangles(sum(len(t) for _, t in out))
        for cpart, coid, cm in obj.components:
            self.instantiate(cpart, coid, matrix @ cm, depth + 1, out)

    def unvisited(self) -> list[tuple[str, str]]:
        """Objects of the parts read that no build item reached, as ``(part, id)``: those no
        other object uses as a component first (each then reads its own components), then any
        left (components of a cycle: reading them reports the cycle). A build naming a decoy
        must not leave the part beside it unread; trimesh loads such objects too."""
        keys = list(self.parts)
        used = {
            (cpart.lstrip("/").lower(), coid)
            for key in keys
            for obj in self.parts[key].values()
            for cpart, coid, _ in obj.components
        }
        left = [(key, oid) for key in keys for oid in self.parts[key] if (key, oid) not in self.visited]
        return [k for k in left if k not in used] + [k for k in left if k in used]


def load_3mf_model(blob: Blob, ctx: LoadContext) -> Mesh:
    """A bare 3MF model part (the XML alone, as ``part.model``): read as a one-part package."""
    return _build(_Package.from_model_xml(blob, ctx), blob, ctx)


def _build(pkg: _Package, blob: Blob, ctx: LoadContext) -> Mesh:
    """Every build item, each its own body; then every object of the parts read that the
    build did not reach (with no build section, that is every object no component uses),
    each its own body in place (:meth:`_Package.unvisited`)."""
    root = pkg.root_part()
    pkg.objects(root)
    xml_root = pkg._root_cache[root.lstrip("/").lower()]
    build = xml_root.find(_local("build"))
    items = [] if build is None else build.findall(_local("item"))
    jobs = [(i.get(f"{PROD}path") or root, i.get("objectid", ""), _transform(i.get("transform"))) for i in items]
    pieces: list[tuple[np.ndarray, np.ndarray]] = []
    groups: list[np.ndarray] = []
    names: list[str] = []

    def place(part: str, oid: str, m: np.ndarray) -> None:
        placed: list = []
        pkg.instantiate(part, oid, m, 0, placed)
        for verts, tris in placed:
            pieces.append((verts, tris))
            groups.append(np.full(len(tris), len(names), dtype=np.int32))
        names.append(pkg.object_names.get((part.lstrip("/").lower(), oid), f"object {oid}"))

    for job in jobs:
        place(*job)
    while left := pkg.unvisited():  # again when an object read here opened another part
        for part, oid in left:
            if (part, oid) not in pkg.visited:
                place(part, oid, np.eye(4))
    if not pieces or sum(len(t) for _, t in pieces) == 0:
        raise UnreadableInput(EMPTY, "3MF with no triangles in its build")
    offset, all_v, all_t = 0, [], []
    for verts, tris in pieces:
        all_v.append(verts)
        all_t.append(tris + offset)
        offset += len(verts)
    return build_mesh(np.concatenate(all_v), np.concatenate(all_t), blob, "3mf", ctx, np.concatenate(groups), names)


def iter_3mf(blob: Blob, ctx: LoadContext) -> Iterator[MemberResult]:
    """The package's build (member ``None``), then every other member that is not one of its
    OPC parts, each read like an archive member.

    A 3MF is a zip: a part that is not a model part the build uses (``secret.stl`` beside
    ``3D/3dmodel.model``, an unreferenced ``3D/other.model``) is scanned, never ignored.
    Members recognised as not a model (thumbnails, slicer settings) belong to the package and
    are not listed. A broken build does not stop the other members being read.
    """
    try:
        with open_zip(blob, ctx.limits.max_members) as zf:
            check_unlisted_entries(blob, zf)
            pkg = _Package.from_zip(zf, ctx)
            empty_build = None
            try:
                yield MemberResult(None, "3mf", mesh=_build(pkg, blob, ctx))
            except UnreadableInput as err:
                if err.reason != EMPTY:
                    yield MemberResult(None, "3mf", error=err)
                empty_build = err
            read_any = False
            for result in _other_members(zf, pkg, ctx):
                read_any |= result.mesh is not None
                yield result
            if empty_build is not None and not read_any:
                yield MemberResult(None, "3mf", error=empty_build)
            comment = zf.comment
        hidden = ctx.nested()  # what unzip steps over (scanner/formats/_hidden.py)
        yield from read_hidden("#comment", comment, hidden)
        yield from read_hidden("#after-end", zip_trailer(blob), hidden)
    except UnreadableInput as err:
        yield MemberResult(None, "3mf", error=err)


def _other_members(zf: zipfile.ZipFile, pkg: _Package, ctx: LoadContext) -> Iterator[MemberResult]:
    """Every entry the build did not parse as a part, read like an archive member (XML such
    as ``[Content_Types].xml`` and ``.rels`` parts is recognised as not a model and dropped:
    skipping them by name let a mesh named ``part.rels`` go unread). A sliced project
    (``.gcode.3mf``, Bambu Studio, OrcaSlicer, PrusaSlicer) keeps its
    plates' G-code here (``Metadata/plate_1.gcode``): each is read as G-code, its own result,
    and its build may then be empty (an empty build is only reported when nothing else in the
    package held a model: there is nothing in it to read)."""
    others = [i for i in zf.infolist() if not is_empty_dir(i) and id(i) not in pkg.read_entries]
    if not others:
        return
    inner = ctx.nested()
    for info in others:
        inner.count_member()
        try:
            data = read_zip_member(zf, info, inner)
        except UnreadableInput as err:
            yield MemberResult(info.filename, "", error=err)
            continue
        for result in read_member_bytes(info.filename, data, inner):
            own = result.member == info.filename
            if own and result.error is not None and result.error.reason == NOT_A_MODEL:
                continue  # the package's own thumbnails, settings, metadata
            yield result


def _key(name: str) -> str:
    return name.replace("\\", "/").lstrip("/").lower()


def _sniff_package(p: Probe) -> str | None:
    """A zip holding a 3MF package, recognised by its structure: a ``3D/*.model`` part, a
    ``[Content_Types].xml`` beside any ``.model`` part, or a ``_rels/.rels`` pointing at a
    model. The content-types part is not required: uploaders (and trimesh) do without it.

    A zip listing more than ``max_members`` entries is not opened here (zipfile would parse
    its whole directory first): it is left to the zip reader, which refuses it with
    ``limit:members``; so is a zip zipfile cannot open (the zip reader says what is wrong).
    """
    if not p.head.startswith(ZIP_MAGIC):
        return None
    blob = p.blob
    if p.max_members is not None and zip_has_more_entries_than(blob, p.max_members):
        return None
    try:
        with blob.open() as fh, zipfile.ZipFile(fh) as zf:  # zipfile leaves fh open
            lower = {i.filename.lower().replace("\\", "/").lstrip("/"): i for i in zf.infolist()}
            if any(n.startswith("3d/") and n.endswith(".model") for n in lower):
                return "3mf"
            if "[content_types].xml" in lower and any(n.endswith(".model") for n in lower):
                return "3mf"
            rels = lower.get("_rels/.rels")
            if rels is not None and rels.file_size <= 1 << 20 and not rels.flag_bits & 0x1:
                with zf.open(rels) as stream:
                    data = stream.read(1 << 20)
                if b"3dmanufacturing/2013/01/3dmodel" in data or _MODEL_TARGET_RE.search(data):
                    return "3mf"
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError, NotImplementedError, RuntimeError):
        return None
    return None


_MODEL_TARGET_RE = re.compile(rb"Target\s*=\s*[\"'][^\"']*\.model[\"']", re.I)


def _sniff_model_xml(p: Probe) -> str | None:
    """A bare 3MF model part: XML whose root element is ``model``."""
    return "3mf-model" if p.xml_root == b"model" else None


_TITLE = "3MF"
FORMATS = (
    Format(
        "3mf",
        _TITLE,
        50,
        "several objects, components, build items with transforms, production-extension `p:path` parts. "
        "Recognised by structure: a zip with a `3D/*.model` part, or a `_rels/.rels` pointing at a model, "
        "is a 3MF with or without `[Content_Types].xml`; a bare 3MF model XML "
        '(`<model xmlns=".../3dmanufacturing/core/2015/02">`, e.g. `part.model`) is read as a one-part package. '
        "Every other member of the package that is not one of its parts (an STL beside the model, "
        "an unreferenced `.model` part) is scanned as an archive member",
        container=iter_3mf,
    ),
    Format("3mf-model", _TITLE, 51, loader=load_3mf_model),
)
SNIFFERS = (
    Sniffer(100, _sniff_package, frozenset({"3mf"})),
    Sniffer(740, _sniff_model_xml, frozenset({"3mf-model"})),
)
