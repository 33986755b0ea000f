"""The state DB: one transaction per scan; the JSONL log written exactly once across crashes;
actions journalled with stable ids; the results table readable as a `scan --db` database."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from scanner.store.results import ResultsStore
from scanner.watch.actions import ActionSpecError, parse_actions
from scanner.watch.journal import Intent, Journal


def v(path: str, verdict: str = "clear", sha: str = "ab" * 32) -> object:
    from scanner.verdict import Verdict

    return Verdict(path=path, member=None, verdict=verdict, sha256=sha, scanner_version="t")


def lines(log: Path) -> list[dict]:
    return [json.loads(x) for x in log.read_text().splitlines()]


def test_scan_is_recorded_in_one_transaction_with_its_intents(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite"
    j = Journal(db)
    intents = [Intent("quarantine", "/q"), Intent("webhook", "http://127.0.0.1:1/x")]
    ids = j.record_scan("/up/a.stl", "/up", (10, 99), [v("/up/a.stl", "flag")], intents)
    # not committed yet: another connection sees nothing (a kill -9 now loses the whole scan)
    other = sqlite3.connect(db)
    assert other.execute("SELECT COUNT(*) FROM results").fetchone() == (0,)
    j.commit()
    assert other.execute("SELECT COUNT(*) FROM results").fetchone() == (1,)
    assert other.execute("SELECT kind, state FROM watch_actions").fetchall() == [("quarantine", "pending")]
    assert other.execute("SELECT id, state FROM webhook_outbox").fetchall() == [(ids[1], "pending")]
    assert other.execute("SELECT state, size, mtime_ns FROM watch_files").fetchall() == [("scanned", 10, 99)]
    # the ids are stored with the intents: what a replay after a crash uses
    stored = other.execute("SELECT id FROM watch_actions").fetchone()[0]
    assert stored == ids[0] and len(set(ids)) == 2
    j.close()
    other.close()
    # the same file is a results database as `scan --db` writes it
    rdb = ResultsStore(db)
    assert rdb.count() == 1 and rdb.count("flag") == 1
    rdb.close()


def record(j: Journal, path: str) -> None:
    verdicts = [v(path)]
    j.record_scan(path, "/up", (1, 1), verdicts, [])
    j.append_log([json.dumps(x.to_dict()) for x in verdicts])


def test_log_lines_count_only_with_their_commit_so_a_crash_never_doubles_them(tmp_path: Path) -> None:
    db, log = tmp_path / "s.sqlite", tmp_path / "v.jsonl"
    log.write_text('{"path": "from before"}\n')
    j = Journal(db)
    j.open_log(str(log))
    record(j, "/up/a")
    j.commit()
    record(j, "/up/b")  # written to the log, but killed before the commit ...
    with open(log, "a") as fh:
        fh.write('{"path": "/up/c", "verd')  # ... or even in the middle of a line
    j.conn.close()
    j = Journal(db)  # restart: b has no verdict, so it is scanned again
    assert j.recorded("t", None) == {"/up/a": (1, 1)}
    j.open_log(str(log))
    assert [r["path"] for r in lines(log)] == ["from before", "/up/a"]
    record(j, "/up/b")
    j.commit()
    assert [r["path"] for r in lines(log)] == ["from before", "/up/a", "/up/b"]
    j.close()


def test_a_rotated_log_gets_the_new_lines(tmp_path: Path) -> None:
    db, log = tmp_path / "s.sqlite", tmp_path / "v.jsonl"
    j = Journal(db)
    j.open_log(str(log))
    record(j, "/up/a")
    j.commit()
    log.rename(tmp_path / "v.jsonl.1")  # logrotate
    record(j, "/up/b")
    j.commit()
    assert [r["path"] for r in lines(log)] == ["/up/b"]
    assert [r["path"] for r in lines(tmp_path / "v.jsonl.1")] == ["/up/a"]
    j.close()


def test_recorded_is_per_version(tmp_path: Path) -> None:
    j = Journal(tmp_path / "s.sqlite")
    j.record_scan("/up/a", "/up", (5, 7), [v("/up/a")], [])
    j.commit()
    assert j.recorded("t", None) == {"/up/a": (5, 7)}
    assert j.recorded("other-scanner", None) == {}
    j.close()


def test_action_specs() -> None:
    assert parse_actions((), None) == ()
    assert parse_actions((), "/q")[0] == Intent("quarantine", "/q")
    got = parse_actions(("report", "command:notify --flagged", "webhook:https://example.org/h"), None)
    assert [i.kind for i in got] == ["command", "webhook"]
    for bad, why in [(("quarantine",), "needs --quarantine"), (("webhook:ftp://x/y",), "http"),
                     (("command:",), "unknown action"), (("shout",), "unknown action")]:  # fmt: skip
        try:
            parse_actions(bad, None)
        except ActionSpecError as exc:
            assert why in str(exc)
        else:
            raise AssertionError(f"{bad} accepted")
    try:
        parse_actions(("report",), "/q")
    except ActionSpecError as exc:
        assert "--action quarantine" in str(exc)
    else:
        raise AssertionError("--quarantine without the quarantine action accepted")
