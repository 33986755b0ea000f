"""Results in PostgreSQL: the same store, audit log, claims, commands and daemons as on SQLite,
against a real server (the ``postgres_server`` fixture starts one; skipped, saying why, only
when the binaries are absent or it cannot start)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scanner.review.audit import AuditLog
from scanner.review.claims import ClaimBook
from scanner.review.errors import ReviewError
from scanner.store.backend import DB_ERRORS, connect, hold_lock
from scanner.store.results import NoResultsTable, NotAResultsDB, ResultsStore, open_results
from scanner.verdict import Verdict
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
MESHSCAN = [sys.executable, "-m", "scanner.cli"]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([*MESHSCAN, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def v(path: str, verdict: str = "clear", member: str | None = None, sha: str = "ab" * 32) -> Verdict:
    return Verdict(path=path, member=member, verdict=verdict, sha256=sha, scanner_version="t", library_version=None)


def test_store_answers_alike_on_both_backends(results_target: str) -> None:
    """Record, resume, duplicates, watch catch-up, export, queue rows, meta: same answers."""
    store = ResultsStore(results_target, batch_size=2)
    big = 1_700_000_000_123_456_789  # a nanosecond mtime: needs 64-bit columns
    store.record("/u/a.stl", 10, big, [v("/u/a.stl", "flag")])
    store.record("/u/b.zip", 20, 5, [v("/u/b.zip", "review", "x.stl", "cd" * 32), v("/u/b.zip", "clear", "y.stl")])
    store.record("/u/b.zip", 20, 5, [v("/u/b.zip", "review", "x.stl", "cd" * 32), v("/u/b.zip", "clear", "y.stl")])
    store.set_meta("survey", "{}")
    store.set_meta("survey", '{"n": 1}')  # replaced, not duplicated
    store.close()

    store = ResultsStore(results_target)
    assert store.is_current("/u/a.stl", 10, big, "t", None) and not store.is_current("/u/a.stl", 10, big, "u", None)
    assert [x.verdict for x in store.recorded_verdicts("/u/b.zip", 20, 5, "t", None)] == ["review", "clear"]
    assert [x.path for x in store.by_sha256("ab" * 32, "t", None)] == ["/u/a.stl"]
    assert store.current_files("t", None) == {"/u/a.stl": (10, big), "/u/b.zip": (20, 5)}
    assert store.count() == 3 and store.count("review") == 1 and store.get_meta("survey") == '{"n": 1}'
    assert [x.member for x in store.verdicts(["review", "clear"])] == ["x.stl", "y.stl"]
    assert [(r.path, r.member) for r in store.rows(["review"])] == [("/u/b.zip", "x.stl")]
    assert store.row("/u/b.zip", "x.stl").sha256 == "cd" * 32 and store.size_of("/u/a.stl", "") == 10
    store.close()
    with open_results(results_target, readonly=True) as reader:
        assert sorted(r[1] for r in reader.records_with_stat()) == [10, 20, 20]
        with pytest.raises(DB_ERRORS):  # a reader cannot write
            reader.conn.execute("DELETE FROM meta")


def test_batches_commit_together_and_a_lost_batch_leaves_nothing(pg_url: str) -> None:
    store = ResultsStore(pg_url, batch_size=3, batch_seconds=3600)
    store.record("/a", 1, 1, [v("/a")])
    store.record("/b", 1, 1, [v("/b")])
    with ResultsStore.open_existing(pg_url) as other:
        assert other.count() == 0  # not committed yet: another machine sees nothing
    store.record("/c", 1, 1, [v("/c")])
    with ResultsStore.open_existing(pg_url) as other:
        assert other.count() == 3
    store.record("/d", 1, 1, [v("/d")])
    store.conn._pg.close()  # the connection dies mid-batch (kill -9)
    with ResultsStore.open_existing(pg_url) as other:
        assert other.count() == 3


def test_open_existing_refuses_what_is_not_a_results_database(pg_url: str, postgres_server) -> None:
    with pytest.raises(NoResultsTable) as empty:
        ResultsStore.open_existing(pg_url)
    assert empty.value.reason == "not-a-results-database"
    with pytest.raises(NotAResultsDB) as missing:
        ResultsStore.open_existing(f"{postgres_server.url}/no_such_database")
    assert missing.value.reason == "no-database" and "no_such_database" in str(missing.value)


def _draft(item: str, who: str) -> dict:
    return {"decision_id": f"rd-{item}", "item_id": item, "decision": "dismiss", "by": who, "reason": "test"}


def test_audit_log_is_append_only_in_postgresql(pg_url: str) -> None:
    ResultsStore(pg_url).close()
    store = ResultsStore.open_existing(pg_url, readonly=False)
    log = AuditLog(store)
    first = log.append(_draft("i1", "ann"), None)
    second = log.append(_draft("i2", "bob"), None)
    assert (first["seq"], second["seq"]) == (1, 2) and second["prev_hash"] == first["hash"]
    for sql in ("UPDATE review_decisions SET decision = 'confirm'", "DELETE FROM review_decisions",
                "TRUNCATE review_decisions"):  # fmt: skip
        with pytest.raises(DB_ERRORS, match="append-only audit log"):
            store.conn.execute(sql)
    forged = (3, "rd-x", "i3", "dismiss", "t", "{}", "0" * 64, "f" * 64)
    with pytest.raises(DB_ERRORS, match="must extend the last one"):  # going around the store
        store.conn.execute("INSERT INTO review_decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?)", forged)
    check = log.verify()
    assert check.ok and check.rows == 2 and check.head == second["hash"]
    store.conn.execute("DROP TRIGGER review_decisions_no_update ON review_decisions")
    store.conn.execute("UPDATE review_decisions SET at = 'edited' WHERE seq = 1")
    problems = " ".join(log.verify().problems)
    assert "review_decisions_no_update has been removed" in problems and "column at differs" in problems
    store.close()


APPENDER = textwrap.dedent("""
    import sys, time
    from scanner.review.audit import AuditLog
    from scanner.store.results import ResultsStore
    url, who, n, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    store = ResultsStore.open_existing(url, readonly=False)
    log = AuditLog(store)
    time.sleep(max(0.0, start - time.time()))  # both writers start together
    for i in range(n):
        log.append({"decision_id": f"rd-{who}-{i}", "item_id": f"{who}-{i}", "decision": "dismiss",
                    "by": who, "reason": "concurrent"}, None)
    store.close()
""")


def test_two_processes_append_concurrently_without_forking_the_chain(pg_url: str) -> None:
    """Two writers (two machines, as far as the database can tell) append at once: every entry
    is recorded once, the sequence has no gap, and the hash chain verifies."""
    import time

    ResultsStore(pg_url).close()
    n, start = 40, time.time() + 2.0
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, pg_url, who, str(n), str(start)], env=env,
                              stderr=subprocess.PIPE, text=True) for who in ("ann", "bob")]  # fmt: skip
    for p in procs:
        assert p.wait(timeout=180) == 0, p.stderr.read()
    with ResultsStore.open_existing(pg_url) as store:
        log = AuditLog(store)
        check = log.verify()
        assert check.ok, check.problems
        rows = log.decisions()
    assert [r["seq"] for r in rows] == list(range(1, 2 * n + 1))
    assert sorted(r["item_id"] for r in rows) == sorted(f"{w}-{i}" for w in ("ann", "bob") for i in range(n))
    whos = [r["by"] for r in rows]
    assert whos.count("ann") == whos.count("bob") == n
    assert any(a != b for a, b in zip(whos, whos[1:], strict=False)), "the writers never interleaved"


def test_claims_are_shared_between_two_connections(pg_url: str) -> None:
    ResultsStore(pg_url).close()
    now = datetime(2026, 1, 1, tzinfo=UTC)
    one = ClaimBook(ResultsStore.open_existing(pg_url, readonly=False), minutes=30)
    two = ClaimBook(ResultsStore.open_existing(pg_url, readonly=False), minutes=30)
    one.claim("item", "ann", now)
    one.claim("item", "ann", now)  # renewing one's own claim replaces it
    with pytest.raises(ReviewError, match="claimed by ann"):
        two.claim("item", "bob", now)
    assert two.holder("item", now).by == "ann" and list(two.active(now)) == ["item"]
    assert one.release("item", "ann", now) and two.claim("item", "bob", now).by == "bob"
    one.results.close()
    two.results.close()


def test_scan_review_report_and_export_on_postgresql(pg_url: str, tmp_path: Path) -> None:
    """The commands, each its own process, share one PostgreSQL results database."""
    (tmp_path / "uploads").mkdir()
    for name in ("proxy-barrel-s1-000.stl", "benign-toy-s1-000.stl", "benign-cup-s1-000.stl"):
        shutil.copy(DEMO / name, tmp_path / "uploads" / name)
    scan = run("scan", "uploads", "--db", pg_url, "--jobs", "1", "--format", "jsonl", cwd=tmp_path)
    assert scan.returncode in (0, 1), scan.stderr
    scanned = lines(scan.stdout)
    assert len(scanned) == 3
    again = run("scan", "uploads", "--db", pg_url, "--resume", "--format", "jsonl", cwd=tmp_path)
    assert again.returncode == scan.returncode and again.stdout == "", again.stderr  # nothing to do again

    exported = run("export", pg_url, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert sorted(r["sha256"] for r in lines(exported.stdout)) == sorted(r["sha256"] for r in scanned)

    listed = run("review", pg_url, "--verdict", "flag", cwd=tmp_path)
    assert listed.returncode == 1, listed.stderr  # the proxy flags: something waits for a person
    (item,) = lines(listed.stdout)
    assert item["path"] == str((tmp_path / "uploads" / "proxy-barrel-s1-000.stl").resolve())
    decided = run("review", pg_url, "--decide", item["id"][:8], "confirm", "--by", "Ann", "--reason", "a proxy",
                  "--audit-log", "audit.jsonl", cwd=tmp_path)  # fmt: skip
    assert decided.returncode == 0, decided.stderr
    (row,) = lines(decided.stdout)
    assert row["seq"] == 1 and row["item_id"] == item["item_id"]
    twice = run("review", pg_url, "--decide", item["id"][:8], "dismiss", "--by", "Bob", "--reason", "no",
                cwd=tmp_path)  # fmt: skip
    assert twice.returncode == 2 and "[already-decided]" in twice.stderr and "Traceback" not in twice.stderr
    verified = run("review", pg_url, "--verify", "--audit-log", "audit.jsonl", cwd=tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith(f"OK: 1 decision(s), hash chain intact, head {row['hash']}")

    report = run("report", pg_url, "--out", "rep", "--transparency", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["results"] == 3
    assert "transparency" in summary


def test_watch_once_records_and_quarantines_through_postgresql(pg_url: str, tmp_path: Path) -> None:
    """``watch --state postgresql://...``: verdicts, the journal and its exactly-once quarantine
    in the database; one daemon per state database, whatever machine it runs on."""
    uploads, quarantine = tmp_path / "uploads", tmp_path / "q"
    uploads.mkdir()
    quarantine.mkdir()
    for name in ("proxy-barrel-s1-000.stl", "benign-toy-s1-000.stl"):
        shutil.copy(DEMO / name, uploads / name)
    args = ("watch", str(uploads), "--state", pg_url, "--once", "--jobs", "1", "--quarantine", str(quarantine))
    release = hold_lock(pg_url, "meshscan watch")  # a daemon elsewhere holds this state
    busy = run(*args, cwd=tmp_path)
    release()
    assert busy.returncode == 3 and "another meshscan watch is using the state database" in busy.stderr

    watched = run(*args, cwd=tmp_path)
    assert watched.returncode == 1, watched.stderr  # the proxy flags
    assert sorted(p.name for p in quarantine.iterdir() if p.suffix == ".stl") == ["proxy-barrel-s1-000.stl"]
    assert not (uploads / "proxy-barrel-s1-000.stl").exists()  # moved, never deleted
    with ResultsStore.open_existing(pg_url) as store:
        assert store.count() == 2 and store.count("flag") == 1
    conn = connect(pg_url, autocommit=True)
    states = dict(conn.execute("SELECT path, state FROM watch_files").fetchall())
    assert states == {
        str(uploads / "proxy-barrel-s1-000.stl"): "quarantined",
        str(uploads / "benign-toy-s1-000.stl"): "scanned",
    }
    assert conn.execute("SELECT kind, state FROM watch_actions").fetchall() == [("quarantine", "done")]
    conn.close()
    listed = run("watch", "--actions", pg_url, cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout == "", listed.stderr  # nothing pending

    again = run(*args, cwd=tmp_path)  # nothing new: nothing scanned or acted on twice
    assert again.returncode == 0, again.stderr
    with ResultsStore.open_existing(pg_url) as store:
        assert store.count() == 2


def test_survey_design_is_kept_in_postgresql_for_the_report(pg_url: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for p in sorted(DEMO.glob("*.stl"))[:12]:
        shutil.copy(p, corpus / p.name)
    surveyed = run("survey", str(corpus), "--sample", "6", "--seed", "3", "--jobs", "1", "--json", "--db", pg_url,
                   cwd=tmp_path)  # fmt: skip
    assert surveyed.returncode == 0, surveyed.stderr
    doc = json.loads(surveyed.stdout)
    made = run("report", pg_url, "--out", "rep", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    kept = json.loads((tmp_path / "rep" / "summary.json").read_text())["survey"]
    assert kept["population"] == doc["population"] == 12 and kept["sample_size"] == 6 and kept["seed"] == 3
    assert kept["outcomes"] == doc["outcomes"]
