"""The daemon's health decision, the canary's bookkeeping and which folders are polled: the
pure parts of issue 15 items 1, 5 and 6 (the daemon-level tests are in
tests/integration/test_watch_health.py)."""

from __future__ import annotations

import json
from pathlib import Path

from scanner.watch.health import ACTIONS_STUCK, QUEUE_STUCK, ROOT_DOWN, assess
from scanner.watch.intake import AUTO_POLL, fs_type, is_network_fs, poll_plan
from scanner.watch.roots import Canary


def test_healthy_when_nothing_is_down_or_stuck() -> None:
    h = assess({"/up": True}, 5.0, {"quarantine": (2, 990.0)}, stuck_after=60, actions_stuck_after=60, now=1000.0)
    assert h.ok and not h.restart_helps
    assert json.loads(h.to_json())["healthy"] is True


def test_each_reason_is_named() -> None:
    h = assess({"/a": True, "/b": False}, 61.0, {"quarantine": (3, 100.0), "command": (0, None)},
               stuck_after=60, actions_stuck_after=600, now=1000.0)  # fmt: skip
    kinds = [r["reason"] for r in h.reasons]
    assert kinds == [ROOT_DOWN, QUEUE_STUCK, ACTIONS_STUCK]
    assert h.reasons[0]["root"] == "/b"
    assert h.reasons[2] == {"reason": ACTIONS_STUCK, "kind": "quarantine", "pending": 3, "oldest_seconds": 900.0,
                            "bound_seconds": 600}  # fmt: skip
    assert not h.ok and h.restart_helps


def test_stuck_actions_alone_do_not_stop_the_watchdog() -> None:
    """A restart cannot fix a quarantine folder: unhealthy, but systemd keeps the daemon."""
    h = assess({"/a": True}, 0.0, {"command": (1, 0.0)}, stuck_after=60, actions_stuck_after=60, now=1000.0)
    assert not h.ok and not h.restart_helps


def test_canary_suspects_only_files_changed_while_watched_and_never_heard() -> None:
    c = Canary(grace=2.0)
    c.armed("/r", 100.0)
    c.listed("/r", "/r/before", ctime=101.0, listed_at=200.0)  # changed before the watch could see it
    c.listed("/r", "/r/missed", ctime=150.0, listed_at=200.0)
    c.listed("/r", "/r/late", ctime=199.5, listed_at=200.0)  # its event is on its way
    c.heard("/r/late")
    assert c.due(201.0) == {}  # not before the grace period
    assert c.due(202.0) == {"/r": ["/r/missed"]}
    assert c.due(300.0) == {}


def test_canary_excuses_an_overflow_and_a_rearm() -> None:
    c = Canary(grace=2.0)
    c.armed("/r", 100.0)
    c.listed("/r", "/r/a", ctime=150.0, listed_at=200.0)
    c.events_lost(199.0)  # reported after the listing: still explains the silence
    assert c.due(210.0) == {}
    c.listed("/r", "/r/b", ctime=250.0, listed_at=260.0)
    c.armed("/r", 261.0)
    assert c.due(300.0) == {}


def test_network_folders_are_polled(tmp_path: Path) -> None:
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/sda1 / ext4 rw 0 0\nsrv:/export /mnt/up nfs4 rw 0 0\n"
        "sshfs#x /mnt/with\\040space fuse.sshfs rw 0 0\n//h/s /mnt/up/local ext4 rw 0 0\n"
    )
    assert fs_type("/mnt/up/a/b", str(mounts)) == "nfs4"
    assert fs_type("/mnt/up/local/x", str(mounts)) == "ext4"  # the longest mount point wins
    assert fs_type("/mnt/with space/x", str(mounts)) == "fuse.sshfs"
    assert fs_type("/mnt/upper", str(mounts)) == "ext4"
    assert [is_network_fs(t) for t in ("nfs4", "cifs", "smb3", "fuse.sshfs", "ext4", None)] == [
        True, True, True, True, False, False]  # fmt: skip
    assert poll_plan([str(tmp_path)], 3.0) == {str(tmp_path): 3.0}
    assert poll_plan([str(tmp_path)], 0) == {}
    local = poll_plan([str(tmp_path)], None)
    assert local == ({str(tmp_path): AUTO_POLL} if is_network_fs(fs_type(str(tmp_path))) else {})
