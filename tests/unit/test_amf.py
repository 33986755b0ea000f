"""AMF: plain and zipped XML, units, constellations; hostile documents give a reason code."""

from __future__ import annotations

import numpy as np
import pytest
from _builders import unit_cube

from fixtures.formats import amf_bytes, zipped_amf
from scanner.config import Limits
from scanner.formats import BytesBlob, LoadContext, read_blob

CUBE_V, CUBE_F = unit_cube()


def read(data: bytes, limits: Limits | None = None) -> list:
    return list(read_blob(BytesBlob("upload", data), LoadContext(limits or Limits())))


def one(data: bytes, limits: Limits | None = None):
    [result] = read(data, limits)
    return result


def test_plain_amf_reads_the_cube_exactly() -> None:
    r = one(amf_bytes(CUBE_V, CUBE_F))
    assert r.format == "amf" and r.error is None
    assert r.mesh.triangle_count == 12
    assert np.array_equal(np.asarray(r.mesh.vertices)[np.asarray(r.mesh.faces)], CUBE_V[CUBE_F])


def test_units_are_scaled_to_millimetres() -> None:
    r = one(amf_bytes(CUBE_V, CUBE_F, unit="inch"))
    assert np.allclose(np.ptp(np.asarray(r.mesh.vertices), axis=0), 25.4)


def test_constellation_places_each_instance_as_a_body() -> None:
    r = one(amf_bytes(CUBE_V, CUBE_F, instances=[(0, 0, 0, 0), (10, 0, 0, 90)]))
    assert r.mesh.triangle_count == 24
    verts = np.asarray(r.mesh.vertices)
    second = verts[np.unique(np.asarray(r.mesh.faces)[np.asarray(r.mesh.groups) == 1])]
    # turned 90 degrees about z (x -> y, y -> -x), then moved 10 along x
    assert np.allclose(second.min(axis=0), [9, 0, 0]) and np.allclose(second.max(axis=0), [10, 1, 1])
    assert len(np.unique(r.mesh.groups)) == 2


def test_zipped_amf_is_read_as_its_member() -> None:
    [r] = read(zipped_amf("part.amf", amf_bytes(CUBE_V, CUBE_F)))
    assert (r.member, r.format, r.mesh.triangle_count) == ("part.amf", "amf", 12)


BAD_INDEX_AMF = amf_bytes(CUBE_V, np.vstack([CUBE_F, [[0, 1, 99]]]))
HOSTILE = {
    "truncated": (amf_bytes(CUBE_V, CUBE_F)[:300], "corrupt"),
    "bad-index": (BAD_INDEX_AMF, "bad-index"),
    "negative-index": (amf_bytes(CUBE_V, np.vstack([CUBE_F, [[0, 1, -1]]])), "bad-index"),
    "nan": (amf_bytes(np.vstack([CUBE_V[:-1], [[np.nan, 0, 0]]]), CUBE_F), "non-finite"),
    "huge": (amf_bytes(np.full((8, 3), 1e39), CUBE_F), "non-finite"),
    "text-coordinate": (amf_bytes(CUBE_V, CUBE_F).replace(b"<x>1.0</x>", b"<x>one</x>", 1), "corrupt"),
    "no-triangles": (b'<?xml version="1.0"?><amf><object id="0"/></amf>', "empty"),
    "missing-object": (
        b'<amf><constellation id="1"><instance objectid="7"><deltax>0</deltax></instance></constellation></amf>',
        "corrupt",
    ),
    "cyclic-constellations": (
        b'<amf><object id="0"/><constellation id="1"><instance objectid="2"/></constellation>'
        b'<constellation id="2"><instance objectid="1"/></constellation>'
        b'<constellation id="3"><instance objectid="1"/></constellation></amf>',
        "limit:depth",
    ),
    "entity-bomb": (
        b'<?xml version="1.0"?><!DOCTYPE amf [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;">]>'
        b"<amf><object id='0'>&b;</object></amf>",
        "corrupt",
    ),
    "external-entity": (
        b'<?xml version="1.0"?><!DOCTYPE amf [<!ENTITY x SYSTEM "file:///etc/passwd">]><amf>&x;</amf>',
        "corrupt",
    ),
    "deep-nesting": (b"<amf>" + b"<a>" * 50_000 + b"</a>" * 50_000 + b"</amf>", "empty"),
    "bad-angle": (
        amf_bytes(CUBE_V, CUBE_F, instances=[(0, 0, 0, 0)]).replace(b"<rz>0</rz>", b"<rz>nan</rz>"),
        "corrupt",
    ),
}


@pytest.mark.parametrize(("data", "reason"), HOSTILE.values(), ids=list(HOSTILE))
def test_hostile_amf_gives_a_reason_code(data: bytes, reason: str) -> None:
    r = one(data)
    assert r.mesh is None and r.error.reason == reason, r.error


def test_counts_are_checked_against_the_limits_before_arrays_are_built() -> None:
    r = one(amf_bytes(CUBE_V, CUBE_F, instances=[(float(i), 0, 0, 0) for i in range(10)]), Limits(max_triangles=100))
    assert r.error.reason == "limit:triangles"
    assert one(amf_bytes(CUBE_V, CUBE_F), Limits(max_vertices=7)).error.reason == "limit:vertices"
    assert one(amf_bytes(CUBE_V, CUBE_F), Limits(max_xml_bytes=100)).error.reason == "limit:xml"
