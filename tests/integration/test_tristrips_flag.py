"""A known part written as PLY triangle strips (the layout of the classic Stanford scans) still
flags against the shipped demo library, through the real command, classifier off; and a
hostile strip file is reported with its reason code, not a traceback."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.strips import ply_tristrips
from tests.integration.test_new_formats_flag import ENROLLED, moved, scan


@pytest.mark.timeout(600)
def test_proxies_written_as_tristrips_flag(tmp_path):
    assert len(ENROLLED) == 6
    for i, path in enumerate(ENROLLED):
        tm = moved(path)
        binary, records = i % 2 == 0, 1 + i % 3
        (tmp_path / f"{path.stem}.ply").write_bytes(ply_tristrips(tm.vertices, tm.faces, binary, records))
    bad = ply_tristrips(*(lambda t: (t.vertices, t.faces))(moved(ENROLLED[0])), True, 1)
    at = bad.rindex(np.array([-1], "<i4").tobytes())
    (tmp_path / "z-bad.ply").write_bytes(bad[:at] + np.array([-7], "<i4").tobytes() + bad[at + 4 :])
    code, records, err = scan(*sorted(tmp_path.iterdir()))
    assert len(records) == 7, err
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in records}
    broken = by_name.pop("z-bad.ply")
    assert broken["verdict"] == "unscannable" and broken["reason"] == "bad-index", broken
    assert "Traceback" not in err
    missed = [(name, r["verdict"], r["explanation"]) for name, r in by_name.items() if r["verdict"] != "flag"]
    assert not missed, missed
    assert {r["format"] for r in by_name.values()} == {"ply"}
    assert code == 1
