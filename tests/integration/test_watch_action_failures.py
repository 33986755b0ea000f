"""Failing quarantines against a real `meshscan watch`: a quarantine folder that cannot be
written, then is fixed; one on a full disk (a real tmpfs, mounted in a private mount namespace
the daemon runs in), then freed. Each flagged file is scanned once and quarantined once, and no
action is ever given up."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.test_watch_daemon import (  # noqa: F401 - daemons, watch_library: fixtures
    MESHSCAN,
    PROXIES,
    Daemon,
    daemons,
    query,
    sha,
    verdict_lines,
    wait_for,
    watch_library,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux file-system semantics")

BIG = next(p for p in PROXIES if p.stat().st_size > 30_000)
SMALL = next(p for p in PROXIES if p.stat().st_size < 6_000)


@contextmanager
def unwritable(folder: Path) -> Iterator[None]:
    """``folder`` refuses new entries until the block ends - for root too: the immutable
    attribute as root (permission bits do not stop root), ``chmod 0500`` otherwise."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        mode = folder.stat().st_mode
        folder.chmod(0o500)
        try:
            yield
        finally:
            folder.chmod(mode & 0o7777)


def failures(d: Daemon, name: str) -> list[dict]:
    return [x for x in d.logs("action failed; will retry") if x["path"].endswith(name)]


def action_states(state: Path) -> dict[str, str]:
    return {Path(p).name: s for p, s in query(state, "SELECT path, state FROM watch_actions")}


def test_unwritable_quarantine_is_retried_until_fixed_and_moves_once(
    tmp_path: Path,
    watch_library: Path,  # noqa: F811 - a fixture
    daemons: list,  # noqa: F811 - a fixture
) -> None:
    up, q, state, log = tmp_path / "up", tmp_path / "q", tmp_path / "s.sqlite", tmp_path / "v.jsonl"
    (up / "user1").mkdir(parents=True)
    q.mkdir()
    d = Daemon(tmp_path, str(up), "--quarantine", str(q), "--state", str(state), "--log", str(log),
               "--library", str(watch_library), "--no-model", "--jobs", "1", "--settle", "0.5")  # fmt: skip
    daemons.append(d.start())
    d.wait_started()
    with unwritable(q):
        shutil.copy(BIG, up / "user1" / "p.stl")
        wait_for(lambda: failures(d, "p.stl"), 30, "the quarantine to fail", d.proc)
        assert failures(d, "p.stl")[0]["level"] == "error"
        assert (up / "user1" / "p.stl").exists() and action_states(state) == {"p.stl": "pending"}
    wait_for(lambda: action_states(state) == {"p.stl": "done"}, 30, "the retried quarantine", d.proc)
    assert d.stop() == 0
    assert "Traceback" not in d.stderr()
    assert [Path(r["path"]).name for r in verdict_lines(log)] == ["p.stl"]  # scanned once
    assert [x["path"] for x in d.logs("quarantined")] == [str(up / "user1" / "p.stl")]  # moved once
    assert not (up / "user1" / "p.stl").exists() and sha(q / "user1" / "p.stl") == sha(BIG)
    assert sorted(p.name for p in q.rglob("*") if p.is_file()) == ["p.stl", "p.stl.meshscan.json"]
    sidecar = json.loads((q / "user1" / "p.stl.meshscan.json").read_text())
    assert sidecar["state"] == "moved" and sidecar["verdicts"][0]["verdict"] == "flag"


def test_a_pending_quarantine_is_retried_at_once_by_the_next_start(
    tmp_path: Path,
    watch_library: Path,  # noqa: F811 - a fixture
    daemons: list,  # noqa: F811 - a fixture
) -> None:
    up, q, state, log = tmp_path / "up", tmp_path / "q", tmp_path / "s.sqlite", tmp_path / "v.jsonl"
    up.mkdir()
    q.mkdir()
    args = ("--quarantine", str(q), "--state", str(state), "--log", str(log), "--library", str(watch_library),
            "--no-model", "--jobs", "1", "--settle", "0.5")  # fmt: skip
    d = Daemon(tmp_path, str(up), *args)
    daemons.append(d.start())
    d.wait_started()
    with unwritable(q):
        shutil.copy(BIG, up / "p.stl")
        wait_for(lambda: failures(d, "p.stl"), 30, "the quarantine to fail", d.proc)
        assert d.stop() == 0  # stopped with the action pending (its retry is seconds away)
        refused = subprocess.run([*MESHSCAN, "watch", str(up), *args], capture_output=True, text=True, timeout=60)
        assert refused.returncode == 3, refused.stderr  # start-up checks the quarantine and refuses
        assert f"quarantine folder {q}" in refused.stderr and "not writable" in refused.stderr
        assert "Traceback" not in refused.stderr
        warned = subprocess.run([*MESHSCAN, "watch", str(up), "--once", "--quarantine-check", "warn", *args],
                                capture_output=True, text=True, timeout=60)  # fmt: skip
        assert warned.returncode == 2, warned.stderr  # started, said so, and the action is still failing
        assert "quarantine folder unusable" in warned.stderr
    # fixed: a `--once` run (it runs only due actions) quarantines it at once, not at its backoff
    fixed = subprocess.run([*MESHSCAN, "watch", str(up), "--once", *args], capture_output=True, text=True, timeout=60)
    assert fixed.returncode == 0, fixed.stderr
    assert action_states(state) == {"p.stl": "done"} and sha(q / "p.stl") == sha(BIG) and not (up / "p.stl").exists()
    assert [Path(r["path"]).name for r in verdict_lines(log)] == ["p.stl"]
    attempts = query(state, "SELECT attempts FROM watch_actions")[0][0]
    assert attempts >= 3  # two failures (daemon, --once warn) and the success: never given up


def _can_mount_tmpfs() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run([*_unshare(), "sh", "-c", "mount -t tmpfs -o size=64k none /mnt"], capture_output=True)
    return probe.returncode == 0


def _unshare() -> list[str]:
    return ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]


PAGE = os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not sys.platform.startswith("linux") or not _can_mount_tmpfs(),
                    reason="needs a private mount namespace (unshare) to mount a small tmpfs")  # fmt: skip
def test_a_full_quarantine_disk_leaves_no_partial_copy_and_moves_once_freed(
    tmp_path: Path,
    watch_library: Path,  # noqa: F811 - a fixture
    daemons: list,  # noqa: F811 - a fixture
) -> None:
    """The quarantine is a 256 KiB tmpfs (another file system: the move is a copy) filled but for
    a few pages: the big flagged file's copy fails with ENOSPC; its partial copy is removed, so a
    small flagged file still fits; once space is freed the big one is moved, once."""
    up, q, state, log = tmp_path / "up", tmp_path / "q", tmp_path / "s.sqlite", tmp_path / "v.jsonl"
    up.mkdir()
    q.mkdir()
    free_pages = 7
    assert BIG.stat().st_size > (free_pages - 1) * PAGE and SMALL.stat().st_size < 3 * PAGE
    fill = f"dd if=/dev/zero of={q}/.filler bs={PAGE} count={256 * 1024 // PAGE - free_pages} 2>/dev/null"
    d = Daemon(tmp_path, str(up), "--quarantine", str(q), "--state", str(state), "--log", str(log),
               "--library", str(watch_library), "--no-model", "--jobs", "1", "--settle", "0.5")  # fmt: skip
    d.args = [*_unshare(), "sh", "-c", f'mount -t tmpfs -o size=256k none {q} && {fill} && exec "$@"', "sh",
              *d.args]  # fmt: skip
    daemons.append(d.start())
    d.wait_started()
    view = Path(f"/proc/{d.proc.pid}/root") / q.relative_to("/")  # the daemon's tmpfs, seen from here

    shutil.copy(BIG, up / "big.stl")
    wait_for(lambda: failures(d, "big.stl"), 30, "the quarantine copy to fail", d.proc)
    assert "No space left" in failures(d, "big.stl")[0]["error"]
    assert not [p.name for p in view.iterdir() if p.name.endswith(".partial")]  # the partial copy is gone
    held = view / "big.stl.meshscan.json"
    if held.exists():  # the reservation says what was intended, never that the move happened
        assert json.loads(held.read_text())["state"] == "intended"
    assert (up / "big.stl").exists()

    shutil.copy(SMALL, up / ("small" + SMALL.suffix))  # still fits: the failed copy left no bytes
    wait_for(lambda: action_states(state).get("small" + SMALL.suffix) == "done", 30, "the small quarantine", d.proc)
    assert action_states(state)["big.stl"] == "pending"

    (view / ".filler").unlink()
    wait_for(lambda: action_states(state).get("big.stl") == "done", 60, "the retried big quarantine", d.proc)
    assert sha(view / "big.stl") == sha(BIG) and sha(view / ("small" + SMALL.suffix)) == sha(SMALL)
    assert sorted(p.name for p in view.iterdir()) == sorted(
        ["big.stl", "big.stl.meshscan.json", "small" + SMALL.suffix, "small" + SMALL.suffix + ".meshscan.json"]
    )
    assert all(json.loads((view / n).read_text())["state"] == "moved" for n in os.listdir(view) if n.endswith(".json"))
    assert d.stop() == 0
    assert "Traceback" not in d.stderr()
    assert sorted(Path(r["path"]).name for r in verdict_lines(log)) == ["big.stl", "small" + SMALL.suffix]
    assert sorted(Path(x["path"]).name for x in d.logs("quarantined")) == ["big.stl", "small" + SMALL.suffix]
    assert not (up / "big.stl").exists() and not list(up.iterdir())
