"""3MF: objects, components, build transforms, production-extension parts, hostile XML."""

from __future__ import annotations

import numpy as np
import pytest
from _builders import mesh_object_xml, model_xml, soup, tetra, threemf_bytes, unit_cube, write, zip_bytes

import scanner
from scanner.config import Limits
from scanner.errors import UnreadableInput

TET_V, TET_F = tetra()
CUBE_V, CUBE_F = unit_cube()

# 3MF transforms are "m00 m01 m02 m10 m11 m12 m20 m21 m22 m30 m31 m32" acting on row vectors:
# (x, y, z, 1) @ M. This one turns 90 degrees about +z: (x, y, z) -> (-y, x, z).
ROT_Z90 = "0 1 0 -1 0 0 0 0 1 0 0 0"


def translate(x: float, y: float, z: float) -> str:
    return f"1 0 0 0 1 0 0 0 1 {x} {y} {z}"


def reason_of(path, limits: Limits | None = None) -> str:
    with pytest.raises(UnreadableInput) as info:
        scanner.load(path, limits)
    return info.value.reason


def corner_set(mesh) -> set[tuple[float, float, float]]:
    return {tuple(float(c) for c in p) for p in mesh.triangles.reshape(-1, 3)}


def test_single_object(tmp_path):
    model = model_xml(mesh_object_xml(1, CUBE_V, CUBE_F), '<item objectid="1"/>')
    mesh = scanner.load(write(tmp_path, "cube.3mf", threemf_bytes(model)))
    assert mesh.format == "3mf"
    assert mesh.triangle_count == 12
    assert mesh.geometry_hash == scanner.Mesh(vertices=soup(CUBE_V, CUBE_F).reshape(-1, 3)).geometry_hash
    assert mesh.volume == pytest.approx(1.0)


def test_several_objects_and_build_translations(tmp_path):
    resources = mesh_object_xml(1, TET_V, TET_F, "a") + mesh_object_xml(2, CUBE_V, CUBE_F, "b")
    build = f'<item objectid="1" transform="{translate(10, 20, 30)}"/><item objectid="2"/>'
    mesh = scanner.load(write(tmp_path, "two.3mf", threemf_bytes(model_xml(resources, build))))
    assert mesh.triangle_count == 16
    assert mesh.body_count == 2
    expected = {(10.0, 20.0, 30.0), (11.0, 20.0, 30.0), (10.0, 21.0, 30.0), (10.0, 20.0, 31.0)}
    expected |= {tuple(map(float, p)) for p in CUBE_V}
    assert corner_set(mesh) == expected


def test_same_object_built_twice_is_two_bodies(tmp_path):
    build = f'<item objectid="1"/><item objectid="1" transform="{translate(5, 0, 0)}"/>'
    model = model_xml(mesh_object_xml(1, TET_V, TET_F), build)
    mesh = scanner.load(write(tmp_path, "twice.3mf", threemf_bytes(model)))
    assert mesh.triangle_count == 8
    assert mesh.body_count == 2


def test_rotation(tmp_path):
    model = model_xml(mesh_object_xml(1, TET_V, TET_F), f'<item objectid="1" transform="{ROT_Z90}"/>')
    mesh = scanner.load(write(tmp_path, "rot.3mf", threemf_bytes(model)))
    assert corner_set(mesh) == {(0.0, 0.0, 0.0), (0.0, 1.0, 0.0), (-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)}


def test_components_compose_transforms_inner_first(tmp_path):
    """A component moved +1 in x inside an object that the build turns 90 degrees about z:
    the corner (1, 0, 0) goes to (2, 0, 0), then to (0, 2, 0)."""
    resources = mesh_object_xml(1, TET_V, TET_F)
    resources += f'<object id="2" type="model"><components><component objectid="1" transform="{translate(1, 0, 0)}"/>'
    resources += '<component objectid="1"/></components></object>'
    model = model_xml(resources, f'<item objectid="2" transform="{ROT_Z90}"/>')
    mesh = scanner.load(write(tmp_path, "comp.3mf", threemf_bytes(model)))
    assert mesh.triangle_count == 8
    moved = {(0.0, 1.0, 0.0), (0.0, 2.0, 0.0), (-1.0, 1.0, 0.0), (0.0, 1.0, 1.0)}
    in_place = {(0.0, 0.0, 0.0), (0.0, 1.0, 0.0), (-1.0, 0.0, 0.0), (0.0, 0.0, 1.0)}
    assert corner_set(mesh) == moved | in_place


def test_nested_components(tmp_path):
    resources = mesh_object_xml(1, TET_V, TET_F)
    resources += f'<object id="2"><components><component objectid="1" transform="{translate(0, 0, 3)}"/>'
    resources += "</components></object>"
    resources += f'<object id="3"><components><component objectid="2" transform="{translate(0, 5, 0)}"/>'
    resources += "</components></object>"
    model = model_xml(resources, f'<item objectid="3" transform="{translate(7, 0, 0)}"/>')
    mesh = scanner.load(write(tmp_path, "nest.3mf", threemf_bytes(model)))
    assert mesh.bounds[0].tolist() == [7.0, 5.0, 3.0]


def production_package(root_path_attr: str = "/3D/Objects/part.model") -> bytes:
    part = model_xml(mesh_object_xml(1, TET_V, TET_F, "external tet"), "")
    root = model_xml(
        f'<object id="5" type="model"><components><component p:path="{root_path_attr}" objectid="1" '
        f'transform="{translate(0, 0, 2)}"/></components></object>',
        '<item objectid="5"/>',
    )
    rels = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Target="/3D/Objects/part.model" Id="r1" '
        'Type="http://schemas.microsoft.com/3dmanufacturing/2013/01/3dmodel"/></Relationships>'
    )
    return threemf_bytes(root, {"3D/Objects/part.model": part, "3D/_rels/3dmodel.model.rels": rels})


def test_production_extension_component_in_another_part(tmp_path):
    mesh = scanner.load(write(tmp_path, "prod.3mf", production_package()))
    assert mesh.triangle_count == 4
    assert corner_set(mesh) == {(0.0, 0.0, 2.0), (1.0, 0.0, 2.0), (0.0, 1.0, 2.0), (0.0, 0.0, 3.0)}


def test_production_extension_build_item_in_another_part(tmp_path):
    part = model_xml(mesh_object_xml(7, TET_V, TET_F), "")
    root = model_xml(
        mesh_object_xml(1, CUBE_V, CUBE_F),
        f'<item objectid="1"/><item p:path="/3D/Objects/tet.model" objectid="7" transform="{translate(0, 0, 5)}"/>',
    )
    mesh = scanner.load(write(tmp_path, "p.3mf", threemf_bytes(root, {"3D/Objects/tet.model": part})))
    assert mesh.triangle_count == 16
    assert mesh.body_count == 2
    assert mesh.bounds.tolist() == [[0.0, 0.0, 0.0], [1.0, 1.0, 6.0]]


def test_missing_external_part_is_corrupt(tmp_path):
    assert reason_of(write(tmp_path, "p.3mf", production_package("/3D/Objects/gone.model"))) == "corrupt"


def test_3mf_named_stl_is_read_as_3mf(tmp_path):
    model = model_xml(mesh_object_xml(1, TET_V, TET_F), '<item objectid="1"/>')
    assert scanner.load(write(tmp_path, "x.stl", threemf_bytes(model))).format == "3mf"


def test_3mf_inside_a_zip(tmp_path):
    model = model_xml(mesh_object_xml(1, TET_V, TET_F), '<item objectid="1"/>')
    data = zip_bytes({"models/tet.3mf": threemf_bytes(model)})
    [result] = list(scanner.iter_meshes(write(tmp_path, "x.zip", data)))
    assert result.error is None
    assert result.member == "models/tet.3mf"
    assert result.mesh.triangle_count == 4


def test_no_build_items_reads_top_level_objects_once(tmp_path):
    """Without a build, objects that are only components of others are not counted twice."""
    resources = mesh_object_xml(1, TET_V, TET_F)
    resources += f'<object id="2"><components><component objectid="1" transform="{translate(3, 0, 0)}"/>'
    resources += "</components></object>"
    model = model_xml(resources, "")
    mesh = scanner.load(write(tmp_path, "nobuild.3mf", threemf_bytes(model)))
    assert mesh.triangle_count == 4
    assert mesh.bounds[0].tolist() == [3.0, 0.0, 0.0]


# ----------------------------------------------------------------------------- broken


def test_bad_xml_is_corrupt(tmp_path):
    model = model_xml(mesh_object_xml(1, TET_V, TET_F), '<item objectid="1"/>').replace("</mesh>", "</mesj>")
    assert reason_of(write(tmp_path, "bad.3mf", threemf_bytes(model))) == "corrupt"


def test_bad_coordinate_is_corrupt(tmp_path):
    model = model_xml(mesh_object_xml(1, TET_V, TET_F), '<item objectid="1"/>').replace('x="1.0"', 'x="one"')
    assert reason_of(write(tmp_path, "bad.3mf", threemf_bytes(model))) == "corrupt"


def test_missing_coordinate_is_corrupt(tmp_path):
    model = model_xml(mesh_object_xml(1, TET_V, TET_F), '<item objectid="1"/>').replace(' z="1.0"', "")
    assert reason_of(write(tmp_path, "bad.3mf", threemf_bytes(model))) == "corrupt"


def test_bad_transform_is_corrupt(tmp_path):
    model = model_xml(mesh_object_xml(1, TET_V, TET_F), '<item objectid="1" transform="1 0 0"/>')
    assert reason_of(write(tmp_path, "bad.3mf", threemf_bytes(model))) == "corrupt"


def test_missing_object_is_corrupt(tmp_path):
    model = model_xml(mesh_object_xml(1, TET_V, TET_F), '<item objectid="9"/>')
    assert reason_of(write(tmp_path, "bad.3mf", threemf_bytes(model))) == "corrupt"


def test_component_cycle_is_refused(tmp_path):
    resources = '<object id="1"><components><component objectid="2"/></components></object>'
    resources += '<object id="2"><components><component objectid="1"/></components></object>'
    model = model_xml(resources, '<item objectid="1"/>')
    assert reason_of(write(tmp_path, "cycle.3mf", threemf_bytes(model))) in ("limit:depth", "corrupt")


@pytest.mark.parametrize("bad_index", [4, 100, -1])
def test_index_out_of_range_is_bad_index(tmp_path, bad_index):
    faces = TET_F.copy()
    faces[2, 0] = bad_index
    model = model_xml(mesh_object_xml(1, TET_V, faces), '<item objectid="1"/>')
    assert reason_of(write(tmp_path, "bad.3mf", threemf_bytes(model))) == "bad-index"


def test_nan_is_non_finite(tmp_path):
    model = model_xml(mesh_object_xml(1, TET_V, TET_F), '<item objectid="1"/>').replace('y="1.0"', 'y="NaN"')
    assert reason_of(write(tmp_path, "nan.3mf", threemf_bytes(model))) == "non-finite"


def test_no_triangles_is_empty(tmp_path):
    model = model_xml(mesh_object_xml(1, TET_V, np.zeros((0, 3), dtype=int)), '<item objectid="1"/>')
    assert reason_of(write(tmp_path, "empty.3mf", threemf_bytes(model))) == "empty"


BILLION_LAUGHS = (
    '<!DOCTYPE model [<!ENTITY lol "lol"><!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">'
    '<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">'
    '<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">'
    '<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">'
    '<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">'
    '<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">'
    '<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>\n'
)


def test_billion_laughs_is_refused_not_expanded(tmp_path):
    model = model_xml(mesh_object_xml(1, TET_V, TET_F, name="&lol9;"), '<item objectid="1"/>', prolog=BILLION_LAUGHS)
    assert reason_of(write(tmp_path, "lol.3mf", threemf_bytes(model))) == "corrupt"


def test_external_entity_is_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("1.0")
    prolog = f'<!DOCTYPE model [<!ENTITY ext SYSTEM "file://{secret}">]>\n'
    model = model_xml(mesh_object_xml(1, TET_V, TET_F), '<item objectid="1"/>', prolog=prolog)
    model = model.replace('x="1.0"', 'x="&ext;"')
    assert reason_of(write(tmp_path, "ext.3mf", threemf_bytes(model))) == "corrupt"


def test_doctype_in_relationships_is_refused(tmp_path):
    model = model_xml(mesh_object_xml(1, TET_V, TET_F), '<item objectid="1"/>')
    data = threemf_bytes(model)
    rels = '<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY a "b">]><Relationships/>'
    data = zip_bytes(
        {
            "[Content_Types].xml": b"<Types/>",
            "_rels/.rels": rels.encode(),
            "3D/3dmodel.model": model.encode(),
        }
    )
    assert reason_of(write(tmp_path, "rels.3mf", data)) == "corrupt"


def test_xml_limit(tmp_path):
    model = model_xml(mesh_object_xml(1, CUBE_V, CUBE_F), '<item objectid="1"/>')
    path = write(tmp_path, "cube.3mf", threemf_bytes(model))
    assert reason_of(path, Limits(max_xml_bytes=200)) == "limit:xml"
    assert scanner.load(path, Limits(max_xml_bytes=len(model) + 1)).triangle_count == 12


def test_triangle_and_vertex_limits(tmp_path):
    model = model_xml(mesh_object_xml(1, CUBE_V, CUBE_F), '<item objectid="1"/>')
    path = write(tmp_path, "cube.3mf", threemf_bytes(model))
    assert reason_of(path, Limits(max_triangles=11)) == "limit:triangles"
    assert reason_of(path, Limits(max_vertices=7)) == "limit:vertices"


def test_instances_count_against_the_triangle_limit(tmp_path):
    """One small object built many times is many triangles."""
    build = "".join(f'<item objectid="1" transform="{translate(3 * i, 0, 0)}"/>' for i in range(10))
    model = model_xml(mesh_object_xml(1, CUBE_V, CUBE_F), build)
    path = write(tmp_path, "many.3mf", threemf_bytes(model))
    assert scanner.load(path).triangle_count == 120
    assert reason_of(path, Limits(max_triangles=100)) == "limit:triangles"
