"""The table on a terminal (issue 13, item 5), through a real pseudo-terminal: rows stream as
results arrive (long before the run ends), paths are relative to the scanned root, a review
row shows its score and first reason, clear rows are folded unless --all, and the progress
bar shares the terminal without tearing the rows."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
import trimesh

from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
FLAG = ("a-flag.stl", "proxy-barrel-s1-000.stl")  # enrolled in the shipped library
REVIEW = ("b-review.stl", "proxy-frame_or_receiver-s1-001.stl")  # review with the shipped model
CLEAR = ("c-clear.stl", "benign-cup-s1-000.stl")
SLOW = [f"zz-slow-{i}.stl" for i in range(3)]  # 1.3M-triangle spheres, scanned last (328k: < 1 s in all)
ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07]*\x07|[()][0-9A-Za-z])")


@pytest.fixture(scope="module")
def uploads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("terminal") / "uploads"
    (folder / "sub").mkdir(parents=True)
    for name, source in (FLAG, REVIEW):
        shutil.copy(DEMO / source, folder / name)
    shutil.copy(DEMO / CLEAR[1], folder / "sub" / CLEAR[0])
    for i, name in enumerate(SLOW):
        sphere = trimesh.creation.icosphere(subdivisions=8, radius=10.0 + i)
        sphere.export(folder / name)
    return folder


def run_in_terminal(*args: str, columns: int = 160) -> tuple[list[tuple[float, str]], float, int]:
    """Run meshscan with stdout and stderr on one pseudo-terminal; what it printed, as
    (seconds since start, text) chunks, when it exited, and its exit code."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "50", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    start = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "scanner.cli", "scan", *args], stdin=subprocess.DEVNULL,
                            stdout=slave, stderr=slave, env=env, close_fds=True)  # fmt: skip
    os.close(slave)
    chunks: list[tuple[float, str]] = []
    ended: float | None = None
    try:
        while True:
            if ended is None and proc.poll() is not None:
                ended = time.monotonic() - start
            ready, _, _ = select.select([master], [], [], 0.05)
            if not ready:
                if ended is not None or time.monotonic() - start > 300:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append((time.monotonic() - start, data.decode("utf-8", "replace")))
    finally:
        os.close(master)
        code = proc.wait(timeout=60)
    return chunks, ended if ended is not None else time.monotonic() - start, code


def plain(text: str) -> str:
    return ANSI.sub("", text).replace("\r", "\n")


def first_seen(chunks: list[tuple[float, str]], needle: str) -> float:
    """When ``needle`` had been printed (the output up to the chunk that completes it)."""
    seen = ""
    for t, text in chunks:
        seen += text
        if needle in plain(seen):
            return t
    raise AssertionError(f"{needle!r} never printed: {plain(seen)!r}")


def test_rows_stream_with_relative_paths(uploads: Path) -> None:
    chunks, ended, code = run_in_terminal(str(uploads), "--jobs", "1")
    out = plain("".join(text for _, text in chunks))
    assert code == 1, out
    row = first_seen(chunks, FLAG[0])
    # the flagged row (scanned first) is on the screen while the large files are still scanned
    assert ended - row > 1.0, (row, ended, out)
    assert first_seen(chunks, REVIEW[0]) < ended - 1.0
    rows = [line for line in out.splitlines() if FLAG[0] in line or REVIEW[0] in line]
    assert rows and not any(str(uploads) in line for line in rows), rows  # relative to the root
    flag_row = next(line for line in rows if FLAG[0] in line)
    assert re.match(rf"{re.escape(FLAG[0])}\s+flag\s+barrel\s+ms-", flag_row), flag_row
    review_row = next(line for line in rows if REVIEW[0] in line)
    assert re.search(r"\breview\b.*score 0\.\d\d; \S", review_row), review_row
    assert f"under {uploads}" in out  # the root the names are relative to, said once
    assert CLEAR[0] not in out and "4 clear result(s) not listed (--all lists them)" in out
    assert "scanning" in out  # the progress bar shared the terminal
    assert "6 file(s), 6 result(s): 1 flagged, 1 review, 4 clear" in out


def test_all_lists_clear_rows_relative_to_the_root(uploads: Path) -> None:
    chunks, _, code = run_in_terminal(str(uploads), "--jobs", "1", "--all", "--no-model")
    out = plain("".join(text for _, text in chunks))
    assert code == 1, out
    assert re.search(rf"^sub/{re.escape(CLEAR[0])}\s+clear\b", out, re.MULTILINE), out
    assert all(re.search(rf"^{name}\s+clear\b", out, re.MULTILINE) for name in SLOW), out
    assert "not listed" not in out
