"""A known part inside a zstd stream or a 7z archive still flags against the shipped demo
library, through the real command (classifier off); an encrypted 7z is an error with its
reason, never clear. Needs the ``compress`` extra."""

from __future__ import annotations

import io

import pytest
import trimesh

from tests.integration.test_new_formats_flag import ENROLLED, moved, scan

py7zr = pytest.importorskip("py7zr")
zstd = pytest.importorskip("backports.zstd")


def seven_zip(members: dict[str, bytes], password: str | None = None) -> bytes:
    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w", password=password) as archive:
        for name, data in members.items():
            archive.writestr(data, name)
    return buf.getvalue()


@pytest.mark.timeout(600)
def test_proxies_in_zstd_and_7z_flag(tmp_path):
    stls = {path.stem: trimesh.exchange.stl.export_stl(moved(path)) for path in ENROLLED}
    for stem, stl in stls.items():
        (tmp_path / f"{stem}.stl.zst").write_bytes(zstd.compress(stl))
    (tmp_path / "bundle.7z").write_bytes(seven_zip({f"parts/{s}.stl": d for s, d in stls.items()}))
    (tmp_path / "z-locked.7z").write_bytes(seven_zip({"a.stl": next(iter(stls.values()))}, "pw"))
    code, records, err = scan(*sorted(tmp_path.iterdir()))
    locked = [r for r in records if r["path"].endswith("z-locked.7z")]
    assert [(r["verdict"], r["reason"]) for r in locked] == [("unscannable", "encrypted")], locked
    parts = [r for r in records if not r["path"].endswith("z-locked.7z")]
    assert len(parts) == 12, err
    missed = [(r["path"], r["member"], r["verdict"]) for r in parts if r["verdict"] != "flag"]
    assert not missed, missed
    assert sum(r["path"].endswith("bundle.7z") for r in parts) == 6
    assert code == 1  # a flag outranks the unscannable upload
