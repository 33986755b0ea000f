"""Writers for small test meshes in every format meshscan reads, built from plain arrays.

Geometry here is deliberately abstract (boxes, tetrahedra, random triangles). Coordinates are
written with ``repr(float(...))``, the shortest text that round-trips the float64 value
exactly, so a float32 value survives any text format bit for bit.
"""

from __future__ import annotations

import gzip
import io
import struct
import tracemalloc
import zipfile
from collections.abc import Iterable

import numpy as np

# ----------------------------------------------------------------------------- geometry


def unit_cube(offset: Iterable[float] = (0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """The unit cube [0, 1]^3 (+ offset) as 8 vertices and 12 outward-wound triangles."""
    v = np.array(
        [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]],
        dtype=np.float64,
    ) + np.asarray(offset, dtype=np.float64)
    f = np.array(
        [
            [0, 2, 1], [0, 3, 2],  # bottom z=0, normal -z
            [4, 5, 6], [4, 6, 7],  # top z=1, normal +z
            [0, 1, 5], [0, 5, 4],  # front y=0, normal -y
            [2, 3, 7], [2, 7, 6],  # back y=1, normal +y
            [1, 2, 6], [1, 6, 5],  # right x=1, normal +x
            [0, 4, 7], [0, 7, 3],  # left x=0, normal -x
        ],
        dtype=np.int64,
    )  # fmt: skip
    return v, f


def tetra(offset: Iterable[float] = (0.0, 0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """A right tetrahedron with corners at the origin and the unit axes (+ offset)."""
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float64)
    v = v + np.asarray(offset, dtype=np.float64)
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], dtype=np.int64)
    return v, f


def soup(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F, 3, 3) corner coordinates."""
    return np.asarray(vertices)[np.asarray(faces)]


def num(x: float) -> str:
    """Exact text for a float (float32 values are exactly representable as float64)."""
    return repr(float(x))


# ----------------------------------------------------------------------------- STL


def binary_stl(tris: np.ndarray, header: bytes = b"meshscan test", count: int | None = None) -> bytes:
    tris = np.asarray(tris, dtype=np.float32).reshape(-1, 3, 3)
    n = len(tris) if count is None else count
    rec = np.zeros(len(tris), dtype=[("normal", "<f4", (3,)), ("corners", "<f4", (9,)), ("attr", "<u2")])
    rec["corners"] = tris.reshape(-1, 9)
    return header.ljust(80, b" ")[:80] + struct.pack("<I", n) + rec.tobytes()


def ascii_stl(
    tris: np.ndarray,
    name: str = "test",
    sep: str = " ",
    eol: str = "\n",
    upper: bool = False,
    endsolid: bool = True,
) -> bytes:
    def kw(word: str) -> str:
        return word.upper() if upper else word

    lines = [f"{kw('solid')} {name}"]
    for t in np.asarray(tris).reshape(-1, 3, 3):
        lines.append(f"{sep}{kw('facet')}{sep}{kw('normal')}{sep}0{sep}0{sep}0")
        lines.append(f"{sep}{sep}{kw('outer')}{sep}{kw('loop')}")
        for p in t:
            lines.append(f"{sep}{sep}{sep}{kw('vertex')}{sep}" + sep.join(num(c) for c in p))
        lines.append(f"{sep}{sep}{kw('endloop')}")
        lines.append(f"{sep}{kw('endfacet')}")
    if endsolid:
        lines.append(f"{kw('endsolid')} {name}")
    return (eol.join(lines) + eol).encode()


# ----------------------------------------------------------------------------- OBJ, OFF


def obj_text(vertices: np.ndarray, faces: np.ndarray, one_based: bool = True) -> bytes:
    base = 1 if one_based else 0
    out = ["# test OBJ"]
    out += ["v " + " ".join(num(c) for c in p) for p in np.asarray(vertices)]
    out += ["f " + " ".join(str(int(i) + base) for i in f) for f in np.asarray(faces)]
    return ("\n".join(out) + "\n").encode()


def off_text(vertices: np.ndarray, faces: np.ndarray, counts_on_header: bool = False) -> bytes:
    vertices, faces = np.asarray(vertices), np.asarray(faces)
    counts = f"{len(vertices)} {len(faces)} 0"
    out = [f"OFF {counts}"] if counts_on_header else ["OFF", counts]
    out += [" ".join(num(c) for c in p) for p in vertices]
    out += [f"{len(f)} " + " ".join(str(int(i)) for i in f) for f in faces]
    return ("\n".join(out) + "\n").encode()


# ----------------------------------------------------------------------------- PLY


def ply_ascii(vertices: np.ndarray, faces: np.ndarray) -> bytes:
    vertices, faces = np.asarray(vertices), np.asarray(faces)
    head = [
        "ply",
        "format ascii 1.0",
        "comment meshscan test",
        f"element vertex {len(vertices)}",
        "property float x",
        "property float y",
        "property float z",
        f"element face {len(faces)}",
        "property list uchar int vertex_indices",
        "end_header",
    ]
    body = [" ".join(num(c) for c in p) for p in vertices]
    body += [f"{len(f)} " + " ".join(str(int(i)) for i in f) for f in faces]
    return ("\n".join(head + body) + "\n").encode()


def ply_binary(vertices: np.ndarray, faces: np.ndarray, order: str = "<") -> bytes:
    """Binary PLY with float32 x, y, z and ``list uchar int vertex_indices`` (all triangles)."""
    vertices, faces = np.asarray(vertices), np.asarray(faces)
    name = "binary_little_endian" if order == "<" else "binary_big_endian"
    head = (
        f"ply\nformat {name} 1.0\nelement vertex {len(vertices)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    ).encode()
    v = np.asarray(vertices, dtype=order + "f4").tobytes()
    fdt = np.dtype([("n", "u1"), ("idx", order + "i4", (3,))])
    rec = np.zeros(len(faces), dtype=fdt)
    rec["n"] = 3
    rec["idx"] = faces
    return head + v + rec.tobytes()


# ----------------------------------------------------------------------------- archives


def zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=compression)
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def set_zip_flag_bits(data: bytes, member: str, bits: int) -> bytes:
    """OR ``bits`` into a member's general-purpose flags, in its local header and in the
    central directory (as an encrypting archiver would set bit 0x1)."""
    out = bytearray(data)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(member)
    local = info.header_offset
    assert out[local : local + 4] == b"PK\x03\x04"
    (flags,) = struct.unpack_from("<H", out, local + 6)
    struct.pack_into("<H", out, local + 6, flags | bits)
    pos = out.find(b"PK\x01\x02")
    patched = 0
    while pos >= 0:
        (name_len,) = struct.unpack_from("<H", out, pos + 28)
        if bytes(out[pos + 46 : pos + 46 + name_len]).decode() == member:
            (flags,) = struct.unpack_from("<H", out, pos + 8)
            struct.pack_into("<H", out, pos + 8, flags | bits)
            patched += 1
        pos = out.find(b"PK\x01\x02", pos + 4)
    assert patched == 1
    return bytes(out)


# ----------------------------------------------------------------------------- 3MF

CORE_NS = "http://schemas.microsoft.com/3dmanufacturing/core/2015/02"
PROD_NS = "http://schemas.microsoft.com/3dmanufacturing/production/2015/06"

CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="model" ContentType="application/vnd.ms-package.3dmanufacturing-3dmodel+xml"/>'
    "</Types>"
)
ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Target="/3D/3dmodel.model" Id="rel0" '
    'Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/>'
    "</Relationships>"
)


def mesh_object_xml(oid: int, vertices: np.ndarray, faces: np.ndarray, name: str | None = None) -> str:
    vs = "".join(f'<vertex x="{num(x)}" y="{num(y)}" z="{num(z)}"/>' for x, y, z in np.asarray(vertices))
    ts = "".join(f'<triangle v1="{a}" v2="{b}" v3="{c}"/>' for a, b, c in np.asarray(faces))
    label = f' name="{name}"' if name else ""
    return (
        f'<object id="{oid}" type="model"{label}><mesh><vertices>{vs}</vertices>'
        f"<triangles>{ts}</triangles></mesh></object>"
    )


def model_xml(resources: str, build: str, prolog: str = "") -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        + prolog
        + f'<model unit="millimeter" xml:lang="en-US" xmlns="{CORE_NS}" xmlns:p="{PROD_NS}">'
        + f"<resources>{resources}</resources><build>{build}</build></model>"
    )


def threemf_bytes(model: str | bytes, extra_parts: dict[str, str | bytes] | None = None) -> bytes:
    def enc(x: str | bytes) -> bytes:
        return x.encode() if isinstance(x, str) else x

    members = {
        "[Content_Types].xml": enc(CONTENT_TYPES),
        "_rels/.rels": enc(ROOT_RELS),
        "3D/3dmodel.model": enc(model),
    }
    for name, data in (extra_parts or {}).items():
        members[name] = enc(data)
    return zip_bytes(members)


def peak_bytes(fn) -> int:
    """Peak bytes allocated (as traced by tracemalloc, which numpy reports to) while ``fn()``
    runs; exceptions from ``fn`` are swallowed. Catches huge allocations even where the OS
    would hand them out lazily."""
    tracemalloc.start()
    try:
        try:
            fn()
        except Exception:  # noqa: BLE001 - the caller checks the error separately
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def write(tmp_path, name: str, data: bytes):
    """Write ``data`` to ``tmp_path / name`` and return the path."""
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
