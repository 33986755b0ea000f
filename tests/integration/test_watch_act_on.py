"""`--act-on` against a real `meshscan watch`: by default only flagged uploads are moved; a file
the classifier sends to review is reported (log, command action) and stays where its uploader
put it; `--act-on review` / `--act-on unscannable` move those too, and the old values are still
accepted, with a deprecation note."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_watch_daemon import (  # noqa: F401 - daemons, watch_library: fixtures
    DEMO,
    MESHSCAN,
    PROXIES,
    Daemon,
    daemons,
    verdict_lines,
    wait_for,
    watch_library,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux file-system semantics")

FLAGGED = PROXIES[0]
"""An exact copy of an enrolled proxy: flagged by signature."""
REVIEWED = DEMO / "proxy-barrel-s1-002.obj"
"""Not enrolled in the test library; the shipped classifier sends it to review."""
BROKEN = b"solid broken\n  facet normal 0 0 1\n    outer loop\n      vertex 0 0"
"""An ASCII STL cut off mid-facet: unscannable."""


def uploads(tmp_path: Path) -> Path:
    up = tmp_path / "up"
    up.mkdir(parents=True)
    shutil.copy(FLAGGED, up / ("f" + FLAGGED.suffix))
    shutil.copy(REVIEWED, up / "r.obj")
    (up / "u.stl").write_bytes(BROKEN)
    return up


def verdicts(log: Path) -> dict[str, str]:
    return {Path(r["path"]).name: r["verdict"] for r in verdict_lines(log)}


def once(tmp_path: Path, library: Path, *extra: str) -> tuple[subprocess.CompletedProcess, Path, Path]:
    up, q, log = uploads(tmp_path), tmp_path / "q", tmp_path / "v.jsonl"
    proc = subprocess.run([*MESHSCAN, "watch", str(up), "--once", "--quarantine", str(q), "--state",
                           str(tmp_path / "s.sqlite"), "--log", str(log), "--library", str(library), "--jobs", "1",
                           "--settle", "0", *extra], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert "Traceback" not in proc.stderr
    assert verdicts(log) == {"f" + FLAGGED.suffix: "flag", "r.obj": "review", "u.stl": "unscannable"}, proc.stderr
    return proc, up, q


def left(up: Path) -> list[str]:
    return sorted(p.name for p in up.iterdir())


def moved(q: Path) -> list[str]:
    return sorted(p.name for p in q.rglob("*") if p.is_file() and not p.name.endswith(".meshscan.json"))


def test_by_default_the_daemon_moves_flag_only_and_reports_review(
    tmp_path: Path,
    watch_library: Path,  # noqa: F811 - a fixture
    daemons: list,  # noqa: F811 - a fixture
) -> None:
    up, q, state, log = tmp_path / "up", tmp_path / "q", tmp_path / "s.sqlite", tmp_path / "v.jsonl"
    up.mkdir()
    seen = tmp_path / "seen.txt"
    script = f"import os; open('{seen}', 'a').write(os.environ['MESHSCAN_PATH'] + '\\n')"
    record = f'command:{sys.executable} -c "{script}"'
    d = Daemon(tmp_path, str(up), "--quarantine", str(q), "--action", "quarantine", "--action", record,
               "--state", str(state), "--log", str(log), "--library", str(watch_library), "--jobs", "1",
               "--settle", "0.5")  # fmt: skip
    daemons.append(d.start())
    d.wait_started()
    src = uploads(tmp_path / "src")
    for p in sorted(src.iterdir()):
        shutil.copy(p, up / p.name)
    wait_for(lambda: len(verdict_lines(log)) == 3, 120, "three verdicts", d.proc)
    wait_for(lambda: seen.exists() and len(seen.read_text().splitlines()) == 2, 60, "two command actions", d.proc)
    wait_for(lambda: moved(q) == ["f" + FLAGGED.suffix], 60, "the flagged upload's quarantine", d.proc)
    assert d.stop() == 0
    assert verdicts(log) == {"f" + FLAGGED.suffix: "flag", "r.obj": "review", "u.stl": "unscannable"}
    assert left(up) == ["r.obj", "u.stl"]  # review and unscannable stay with their uploader
    # review is still reported: the command ran for it (and for the flag), not for unscannable
    assert sorted(Path(p).name for p in seen.read_text().splitlines()) == ["f" + FLAGGED.suffix, "r.obj"]
    scanned = {Path(x["path"]).name: x for x in d.logs("scanned")}
    assert scanned["r.obj"]["verdict"] == "review" and scanned["r.obj"]["actions"] == ["command"]
    assert "actions" not in scanned["u.stl"]
    assert [Path(x["path"]).name for x in d.logs("quarantined")] == ["f" + FLAGGED.suffix]


def test_act_on_review_moves_review_but_not_unscannable(tmp_path: Path, watch_library: Path) -> None:  # noqa: F811
    proc, up, q = once(tmp_path, watch_library, "--act-on", "flag", "--act-on", "review")
    assert proc.returncode == 1
    assert moved(q) == sorted(["f" + FLAGGED.suffix, "r.obj"]) and left(up) == ["u.stl"]


def test_act_on_unscannable_moves_unscannable_but_not_review(tmp_path: Path, watch_library: Path) -> None:  # noqa: F811
    proc, up, q = once(tmp_path, watch_library, "--act-on", "flag", "--act-on", "unscannable")
    assert proc.returncode == 1
    assert moved(q) == sorted(["f" + FLAGGED.suffix, "u.stl"]) and left(up) == ["r.obj"]


def test_a_toml_list_sets_act_on(tmp_path: Path, watch_library: Path) -> None:  # noqa: F811
    cfg = tmp_path / "w.toml"
    cfg.write_text('[watch]\nact_on = ["review", "flag"]\n')
    proc, up, q = once(tmp_path, watch_library, "--config", str(cfg))
    assert moved(q) == sorted(["f" + FLAGGED.suffix, "r.obj"]) and left(up) == ["u.stl"]


def test_the_old_value_keeps_its_meaning_with_a_deprecation_note(tmp_path: Path, watch_library: Path) -> None:  # noqa: F811
    proc, up, q = once(tmp_path, watch_library, "--act-on", "flagged")
    assert "--act-on flagged is deprecated" in proc.stderr
    assert moved(q) == sorted(["f" + FLAGGED.suffix, "r.obj"]) and left(up) == ["u.stl"]
    sidecar = json.loads((q / "r.obj.meshscan.json").read_text())
    assert sidecar["state"] == "moved"


def test_an_unknown_act_on_value_is_refused(tmp_path: Path) -> None:
    (tmp_path / "up").mkdir()
    proc = subprocess.run([*MESHSCAN, "watch", str(tmp_path / "up"), "--once", "--act-on", "sometimes"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 3 and "'sometimes' is not one of" in proc.stderr and "Traceback" not in proc.stderr
