"""Several `meshscan watch` daemons sharing one PostgreSQL state: real processes on one upload
folder, a real server on 127.0.0.1 (the ``postgres_server`` fixture; skipped, saying why, only
when it cannot start), a real webhook endpoint.

Every file must be scanned and acted on exactly once between them - one verdict, one
quarantine, one POST - and the work of a daemon killed with SIGKILL while it holds claims must
be taken over by the other once the lease runs out (:mod:`scanner.watch.leases`)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from scanner.sinks.quarantine import SIDECAR
from scanner.sinks.webhook import OUTBOX_SCHEMA, RetryPolicy, enqueue
from scanner.store.backend import connect
from scanner.watch.leases import Held, Leases, SharedOutbox, Taken
from tests.integration.test_watch_daemon import (  # noqa: F401 - fixtures
    DEMO,
    MESHSCAN,
    PROXIES,
    Daemon,
    Receiver,
    daemons,
    wait_for,
    watch_library,
)

BENIGN = sorted(DEMO.glob("benign-*"))
LEASE = 3.0
"""The lease the daemons of these tests use (``MESHSCAN_WATCH_TEST_LEASE``)."""


@pytest.fixture(autouse=True)
def _short_lease(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHSCAN_WATCH_TEST_HOOKS", "1")
    monkeypatch.setenv("MESHSCAN_WATCH_TEST_LEASE", str(LEASE))


def pg(url: str, sql: str, args: tuple = ()) -> list[tuple]:
    conn = connect(url, autocommit=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def drop_uploads(up: Path, flagged: int, clear: int) -> tuple[set[str], set[str]]:
    """Copies of the enrolled proxies (flagged) and of benign fixtures (clear), each written
    under a temporary name and renamed into place, as an upload server does."""
    flag_paths, clear_paths = set(), set()
    for i in range(flagged + clear):
        src = PROXIES[i % len(PROXIES)] if i < flagged else BENIGN[i % len(BENIGN)]
        target = up / f"s{i % 3}" / f"u{i:03d}{src.suffix}"
        target.parent.mkdir(exist_ok=True)
        tmp = target.with_name(f".{target.name}.part")
        tmp.write_bytes(src.read_bytes())
        os.rename(tmp, target)
        (flag_paths if i < flagged else clear_paths).add(str(target))
    return flag_paths, clear_paths


def scanned_by(d: Daemon) -> Counter:
    """Paths this daemon recorded a verdict for, counted (its ``scanned`` log lines)."""
    return Counter(x["path"] for x in d.logs("scanned"))


def quarantined_names(q: Path) -> Counter:
    """The uploads in the quarantine: not their sidecars, and not the hidden temporary file a
    daemon killed in the middle of writing one leaves behind (``_temp_name``: documented, and
    what this test's kill -9 can hit)."""
    return Counter(
        p.name
        for p in q.rglob("*")
        if p.is_file()
        and not p.name.endswith(SIDECAR)
        and not re.fullmatch(r"\..+\.[0-9a-f]{12}\.(tmp|partial)", p.name)
    )


def settled(url: str, files: set[str], flagged: set[str]) -> bool:
    """Every file has its verdict, no action is pending and the flagged uploads are gone (what
    became of them is for the test to check)."""
    if {p for (p,) in pg(url, "SELECT path FROM watch_files")} != files or any(Path(p).exists() for p in flagged):
        return False
    return not pg(url, "SELECT 1 FROM watch_actions WHERE state = 'pending'")


def file_states(url: str) -> dict[str, str]:
    return dict(pg(url, "SELECT path, state FROM watch_files"))


def test_a_claim_is_taken_by_one_daemon_until_given_back_or_its_lease_runs_out(pg_url: str) -> None:
    one, two = connect(pg_url), connect(pg_url)
    a, b = Leases(one, lease=1.0, owner="a"), Leases(two, lease=1.0, owner="b")
    assert a.take("file:/u/x.stl") == Taken()
    held = b.take("file:/u/x.stl")
    assert isinstance(held, Held) and held.owner == "a" and 0.5 < held.remaining <= 1.0
    assert a.take("file:/u/x.stl") == Taken()  # already ours: taken again, renewed
    a.renew()
    assert not b.release("file:/u/x.stl")  # not b's to give back
    b.conn.commit()
    assert a.release("file:/u/x.stl")  # given back with the work's outcome...
    a.conn.commit()
    assert b.take("file:/u/x.stl") == Taken()  # ...and free for anyone
    time.sleep(1.2)  # b stops renewing (it died): its lease runs out
    assert a.take("file:/u/x.stl") == Taken(previous="b")
    assert not b.release("file:/u/x.stl")  # b, back from a stall, must record nothing
    b.conn.rollback()
    a.release_all()
    assert pg(pg_url, "SELECT COUNT(*) FROM watch_claims") == [(0,)]
    one.close()
    two.close()


class SlowReceiver(Receiver):
    """A webhook endpoint that takes 20 ms to answer: two senders surely work at once."""

    def __init__(self) -> None:
        super().__init__(fail_first=0)
        handler = self.server.RequestHandlerClass
        answer = handler.do_POST

        def slow(request: object) -> None:
            time.sleep(0.02)
            answer(request)

        handler.do_POST = slow


def test_shared_outbox_posts_each_row_once_whoever_delivers(pg_url: str) -> None:
    receiver = SlowReceiver()
    try:
        outboxes = [SharedOutbox(pg_url, RetryPolicy(timeout=5), lease=5.0) for _ in range(2)]
        conn = connect(pg_url)
        conn.executescript(OUTBOX_SCHEMA)
        for i in range(30):
            enqueue(conn, f"id{i}", receiver.url, f'{{"path": "/u/{i}"}}', time.time())
        conn.commit()
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:
            delivered = list(pool.map(lambda o: o.deliver_due(), outboxes))
        assert sum(delivered) == 30 and all(delivered)  # both worked, neither twice
        assert sorted(k for k, _, _ in receiver.requests) == sorted(f"id{i}" for i in range(30))
        assert pg(pg_url, "SELECT state, COUNT(*) FROM webhook_outbox GROUP BY state") == [("delivered", 30)]
        for o in outboxes:
            o.close()
        conn.close()
    finally:
        receiver.close()


def daemon_args(up: Path, q: Path, url: str, library: Path, log: Path, *extra: str) -> tuple[str, ...]:
    return (str(up), "--quarantine", str(q), "--action", "quarantine", *extra, "--state", url, "--log", str(log),
            "--library", str(library), "--no-model", "--jobs", "1", "--settle", "0.3")  # fmt: skip


def test_two_daemons_share_one_state_and_do_each_file_once(
    pg_url: str,
    tmp_path: Path,
    watch_library: Path,  # noqa: F811 - a fixture
    daemons: list,  # noqa: F811 - a fixture
) -> None:
    up, q = tmp_path / "up", tmp_path / "q"
    up.mkdir()
    receiver = Receiver(fail_first=0)
    try:
        hook = ("--action", f"webhook:{receiver.url}")
        a = Daemon(tmp_path, *daemon_args(up, q, pg_url, watch_library, tmp_path / "a.jsonl", *hook), name="a")
        b = Daemon(tmp_path, *daemon_args(up, q, pg_url, watch_library, tmp_path / "b.jsonl", *hook), name="b")
        daemons += [a.start(), b.start()]
        a.wait_started()
        b.wait_started()
        flagged, clear = drop_uploads(up, flagged=8, clear=32)
        files = flagged | clear
        wait_for(lambda: settled(pg_url, files, flagged), 120, "every upload judged, flagged ones quarantined", a.proc)
        wait_for(lambda: len(receiver.requests) >= len(flagged), 60, "a POST per flagged upload", b.proc)
        time.sleep(2 * LEASE)  # anything done twice would be done by now
        assert a.stop() == 0 and b.stop() == 0
    finally:
        receiver.close()

    by_a, by_b = scanned_by(a), scanned_by(b)
    assert set(by_a) | set(by_b) == files
    assert not set(by_a) & set(by_b), "a file was scanned by both daemons"
    assert max((by_a + by_b).values()) == 1, "a file was scanned twice"
    assert by_a and by_b, "one daemon did all the work: the state was not shared"
    assert not [x for d in (a, b) for x in d.logs() if x["msg"] == "claim lost; verdict not recorded"]
    # one verdict line per file across the two daemons' logs, one results row per file
    lines = [line for name in ("a.jsonl", "b.jsonl") for line in (tmp_path / name).read_text().splitlines()]
    assert len(lines) == len(files)
    assert sorted(p for (p,) in pg(pg_url, "SELECT path FROM results")) == sorted(files)
    assert file_states(pg_url) == {p: "quarantined" if p in flagged else "scanned" for p in files}
    # each flagged upload quarantined once (moved, with its sidecar), nothing else there
    assert quarantined_names(q) == Counter(Path(p).name for p in flagged)
    assert not any(Path(p).exists() for p in flagged) and all(Path(p).exists() for p in clear)
    actions = pg(pg_url, "SELECT path, kind, state FROM watch_actions")
    assert sorted(actions) == sorted((p, "quarantine", "done") for p in flagged)
    # one POST per flagged upload, each with its own action id, all delivered
    posted = Counter(body["path"] for _, body, _ in receiver.requests)
    assert posted == Counter(flagged)
    assert len({key for key, _, _ in receiver.requests}) == len(flagged)
    assert pg(pg_url, "SELECT state, COUNT(*) FROM webhook_outbox GROUP BY state") == [("delivered", len(flagged))]
    assert pg(pg_url, "SELECT COUNT(*) FROM watch_claims") == [(0,)]  # clean stops give every claim back


def test_a_killed_daemons_claims_are_taken_over_after_the_lease(
    pg_url: str,
    tmp_path: Path,
    watch_library: Path,  # noqa: F811 - a fixture
    daemons: list,  # noqa: F811 - a fixture
) -> None:
    up, q = tmp_path / "up", tmp_path / "q"
    up.mkdir()
    a = Daemon(tmp_path, *daemon_args(up, q, pg_url, watch_library, tmp_path / "a.jsonl"), name="a")
    b = Daemon(tmp_path, *daemon_args(up, q, pg_url, watch_library, tmp_path / "b.jsonl"), name="b")
    daemons += [a.start(), b.start()]
    a.wait_started()
    b.wait_started()
    owner_a = a.logs("watching")[0]["daemon"]
    os.kill(b.proc.pid, signal.SIGSTOP)  # b hears the uploads but does nothing until a is dead
    flagged, clear = drop_uploads(up, flagged=4, clear=16)
    files = flagged | clear

    def a_holds_claims() -> list[tuple]:
        held = pg(pg_url, "SELECT key FROM watch_claims WHERE owner = ?", (owner_a,))
        if not held:
            return []
        os.kill(a.proc.pid, signal.SIGSTOP)  # frozen: are they still held?
        held = pg(pg_url, "SELECT key FROM watch_claims WHERE owner = ?", (owner_a,))
        if not held:
            os.kill(a.proc.pid, signal.SIGCONT)
        return held

    held = wait_for(a_holds_claims, 60, "the first daemon to hold a claim", a.proc)
    a.kill9()
    killed_at = time.monotonic()
    assert pg(pg_url, "SELECT key FROM watch_claims WHERE owner = ?", (owner_a,)) == held  # left behind
    os.kill(b.proc.pid, signal.SIGCONT)
    wait_for(lambda: settled(pg_url, files, flagged), 120, "the second daemon to finish the work", b.proc)
    finished = time.monotonic() - killed_at
    assert b.stop() == 0

    taken = [x for x in b.logs() if x["msg"] in ("claim taken over", "action taken over")]
    assert {x["from"] for x in taken} == {owner_a}
    assert {f"file:{x['path']}" if x["msg"] == "claim taken over" else f"action:{x['id']}" for x in taken} >= set(
        k for (k,) in held
    )
    assert finished >= LEASE * 2 / 3  # a's last renewal was at most a third of a lease before the kill
    by_a, by_b = scanned_by(a), scanned_by(b)
    assert not set(by_a) & set(by_b) and max((by_a + by_b).values()) == 1
    assert set(by_b) | set(by_a) <= files
    assert sorted(p for (p,) in pg(pg_url, "SELECT DISTINCT path FROM results")) == sorted(files)
    assert file_states(pg_url) == {p: "quarantined" if p in flagged else "scanned" for p in files}
    assert quarantined_names(q) == Counter(Path(p).name for p in flagged)
    actions = pg(pg_url, "SELECT path, state FROM watch_actions")
    assert sorted(actions) == sorted((p, "done") for p in flagged)
    assert pg(pg_url, "SELECT COUNT(*) FROM watch_claims") == [(0,)]


def test_daemons_sharing_a_state_keep_their_own_logs(
    pg_url: str,
    tmp_path: Path,
    watch_library: Path,  # noqa: F811 - a fixture
    daemons: list,  # noqa: F811 - a fixture
) -> None:
    """Two daemons writing one log would overwrite each other's lines: the second refuses. Each
    log's end is kept apart in the state, so one daemon's restart cuts back only its own log."""
    up, q, log = tmp_path / "up", tmp_path / "q", tmp_path / "a.jsonl"
    up.mkdir()
    a = Daemon(tmp_path, *daemon_args(up, q, pg_url, watch_library, log), name="a")
    daemons.append(a.start())
    a.wait_started()
    same = subprocess.run([*MESHSCAN, "watch", *daemon_args(up, q, pg_url, watch_library, log), "--once"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)  # fmt: skip
    assert same.returncode == 3 and "another meshscan watch writes the log" in same.stderr, same.stderr
    assert "Traceback" not in same.stderr
    (up / "one.stl").write_bytes(BENIGN[0].read_bytes())
    other = subprocess.run([*MESHSCAN, "watch", *daemon_args(up, q, pg_url, watch_library, tmp_path / "b.jsonl"),
                            "--once"], capture_output=True, text=True, timeout=120, cwd=tmp_path)  # fmt: skip
    assert other.returncode == 0, other.stderr
    wait_for(lambda: len(file_states(pg_url)) == 1, 60, "the upload's verdict", a.proc)
    assert a.stop() == 0
    keys = sorted(k for (k,) in pg(pg_url, "SELECT key FROM watch_meta WHERE key LIKE 'log_position:%'"))
    assert keys == sorted(f"log_position:{os.uname().nodename}:{p}" for p in (log, tmp_path / "b.jsonl"))
    written = [p.read_text().splitlines() for p in (log, tmp_path / "b.jsonl")]
    assert sorted(len(lines) for lines in written) == [0, 1]  # one verdict, in the log of whoever scanned it


def test_an_action_a_killed_daemon_held_is_performed_by_the_other_after_the_lease(
    pg_url: str,
    tmp_path: Path,
    watch_library: Path,  # noqa: F811 - a fixture
    daemons: list,  # noqa: F811 - a fixture
) -> None:
    up, marks = tmp_path / "up", tmp_path / "marks"
    up.mkdir()
    slow = f"command:sh -c 'sleep 2; echo \"$MESHSCAN_ACTION_ID\" >> {marks}'"

    def args(log: str) -> list[str]:
        return [str(up), "--action", slow, "--state", pg_url, "--log", str(tmp_path / log), "--library",
                str(watch_library), "--no-model", "--jobs", "1", "--settle", "0.3"]  # fmt: skip

    a, b = Daemon(tmp_path, *args("a.jsonl"), name="a"), Daemon(tmp_path, *args("b.jsonl"), name="b")
    daemons += [a.start(), b.start()]
    a.wait_started()
    b.wait_started()
    owner_a = a.logs("watching")[0]["daemon"]
    os.kill(b.proc.pid, signal.SIGSTOP)
    target = up / f"proxy{PROXIES[0].suffix}"
    target.write_bytes(PROXIES[0].read_bytes())
    held = "SELECT key FROM watch_claims WHERE owner = ? AND key LIKE 'action:%'"
    wait_for(lambda: pg(pg_url, held, (owner_a,)), 60, "the first daemon to run the command", a.proc)
    a.kill9()  # mid-command: the action is claimed, not done
    (ident,) = pg(pg_url, "SELECT id FROM watch_actions WHERE state = 'pending'")[0]
    assert pg(pg_url, held, (owner_a,)) == [(f"action:{ident}",)]
    os.kill(b.proc.pid, signal.SIGCONT)
    wait_for(lambda: pg(pg_url, "SELECT state FROM watch_actions") == [("done",)], 60, "the action done", b.proc)
    assert b.stop() == 0
    taken = [x for x in b.logs() if x["msg"] == "action taken over"]
    assert [(x["id"], x["from"]) for x in taken] == [(ident, owner_a)]
    assert [x["path"] for x in b.logs("command done")] == [str(target)]
    assert not b.logs("scanned")  # the verdict a committed stands: not scanned again
    time.sleep(2.5)  # the killed daemon's command, in its own session, finishes too: at least once
    assert set(marks.read_text().split()) == {ident}
    assert pg(pg_url, "SELECT COUNT(*) FROM watch_claims") == [(0,)]
