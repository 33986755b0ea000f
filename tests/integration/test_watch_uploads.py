"""Uploaders against a real `meshscan watch`: an upload appended in several open/write/close
cycles (resumable uploaders, FTP resume) gets one verdict, for its whole content; one written
under a temporary name the defaults do not know (``part.stl.uploading``) and renamed into place
is scanned and quarantined once, under its final name, and the uploader's rename succeeds."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_watch_daemon import (  # noqa: F401 - daemons, watch_library: fixtures
    DEMO,
    PROXIES,
    Daemon,
    daemons,
    query,
    sha,
    verdict_lines,
    wait_for,
    watch_library,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="close events are inotify's")


def append_in_cycles(path: Path, data: bytes, cycles: int, pause: float) -> None:
    """Open, append one part, close; ``cycles`` times, ``pause`` seconds apart."""
    step = -(-len(data) // cycles)
    for i in range(0, len(data), step):
        with open(path, "ab") as fh:
            fh.write(data[i : i + step])
        time.sleep(pause)


def test_an_upload_appended_in_five_cycles_gets_one_verdict(
    tmp_path: Path,
    watch_library: Path,  # noqa: F811 - a fixture
    daemons: list,  # noqa: F811 - a fixture
) -> None:
    up, state, log = tmp_path / "up", tmp_path / "s.sqlite", tmp_path / "v.jsonl"
    up.mkdir()
    d = Daemon(
        tmp_path,
        str(up),
        "--state",
        str(state),
        "--log",
        str(log),
        "--library",
        str(watch_library),
        "--no-model",
        "--jobs",
        "1",
    )  # fmt: skip - the default quiet period (1 s)
    daemons.append(d.start())
    d.wait_started()
    data = (DEMO / "benign-bracket-s1-002.stl").read_bytes()
    append_in_cycles(up / "resumed.stl", data, 5, 0.4)
    wait_for(lambda: verdict_lines(log), 30, "the verdict", d.proc)
    time.sleep(2.0)  # nothing else comes
    lines = verdict_lines(log)
    assert [(r["sha256"], r["verdict"]) for r in lines] == [(sha(data), "clear")]  # one, whole: never `truncated`

    with open(up / "resumed.stl", "ab") as fh:  # a later change of content: a verdict of its own
        fh.write(b"\n")
    wait_for(lambda: len(verdict_lines(log)) == 2, 30, "the changed content's verdict", d.proc)
    assert verdict_lines(log)[1]["sha256"] == sha(data + b"\n")
    assert d.stop() == 0
    assert "Traceback" not in d.stderr()
    assert [x["path"] for x in d.logs("scanned")] == [str(up / "resumed.stl")] * 2


def test_an_unknown_temporary_suffix_is_not_scanned_mid_upload(
    tmp_path: Path,
    watch_library: Path,  # noqa: F811 - a fixture
    daemons: list,  # noqa: F811 - a fixture
) -> None:
    up, q, state, log = tmp_path / "up", tmp_path / "q", tmp_path / "s.sqlite", tmp_path / "v.jsonl"
    up.mkdir()
    d = Daemon(tmp_path, str(up), "--quarantine", str(q), "--state", str(state), "--log", str(log),
               "--library", str(watch_library), "--no-model", "--jobs", "1", "--temp-quiet", "5")  # fmt: skip
    daemons.append(d.start())
    d.wait_started()
    flagged = PROXIES[1].read_bytes()
    partial = up / "part.stl.uploading"
    append_in_cycles(partial, flagged, 3, 0.4)
    time.sleep(2.5)  # the upload is whole, but its uploader has not renamed it yet (longer than --quiet)
    os.rename(partial, up / "part.stl")  # would fail had the file been quarantined under its temporary name
    shutil.copy(PROXIES[2], up / "left.stl.uploading")  # abandoned under such a name: scanned after 5 s quiet
    wait_for(lambda: len(query(state, "SELECT 1 FROM watch_actions WHERE state = 'done'")) == 2, 30,
             "both quarantines", d.proc)  # fmt: skip
    assert d.stop() == 0
    assert "Traceback" not in d.stderr()
    assert sorted(Path(r["path"]).name for r in verdict_lines(log)) == ["left.stl.uploading", "part.stl"]
    assert sorted(Path(x["path"]).name for x in d.logs("quarantined")) == ["left.stl.uploading", "part.stl"]
    assert sha(q / "part.stl") == sha(flagged) and not list(up.iterdir())
