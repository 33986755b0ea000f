"""The results store: the one owner of the ``results`` table (no SQL on it anywhere else), its
batched writes, and the explicit transaction that the watch journal joins."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from scanner.store.results import NoResultsTable, NotAResultsDB, ResultsStore
from scanner.verdict import Verdict
from scanner.watch.journal import DELETED, QUARANTINED, Journal
from tests.conftest import REPO

STORE_MODULE = REPO / "scanner" / "store" / "results.py"
# SQL that names the results table: DML, DDL, joins, index definitions, and a sqlite_master probe
RESULTS_SQL = re.compile(
    r"\b(?:FROM|INTO|UPDATE|JOIN|TABLE(?: IF NOT EXISTS)?|ON)\s+results\b|name\s*=\s*'results'",
)


def v(path: str, verdict: str = "clear", member: str | None = None) -> Verdict:
    return Verdict(path=path, member=member, verdict=verdict, sha256="ab" * 32, scanner_version="t")


def committed(db: Path) -> int:
    """Rows another connection sees: what survives a kill -9 now."""
    with sqlite3.connect(db) as other:
        return other.execute("SELECT COUNT(*) FROM results").fetchone()[0]


def test_no_sql_on_results_outside_the_store() -> None:
    offenders = []
    for source in sorted((REPO / "scanner").rglob("*.py")):
        if source == STORE_MODULE:
            continue
        for number, line in enumerate(source.read_text("utf-8").splitlines(), 1):
            if RESULTS_SQL.search(line):
                offenders.append(f"{source.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == [], "SQL on the results table outside scanner/store/results.py:\n" + "\n".join(offenders)
    # the pattern does find the store's own SQL (so an empty list above means something)
    assert len(RESULTS_SQL.findall(STORE_MODULE.read_text("utf-8"))) >= 8


def test_outside_a_transaction_writes_commit_in_batches(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    store = ResultsStore(db, batch_size=3, batch_seconds=3600)
    store.record("a", 1, 1, [v("a")])
    store.record("b", 1, 1, [v("b")])
    assert committed(db) == 0
    store.record("c", 1, 1, [v("c")])  # the third file fills the batch
    assert committed(db) == 3
    store.record("d", 1, 1, [v("d")])
    store.close()  # what is pending is committed at close
    assert committed(db) == 4


def test_inside_an_explicit_transaction_the_batching_never_commits(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    store = ResultsStore(db, batch_size=1, batch_seconds=0.0)
    store.begin()
    for name in "abcde":
        store.record(name, 1, 1, [v(name)])
    store.conn.execute("CREATE TABLE IF NOT EXISTS mine (x)")  # the caller's own writes, in the same transaction
    store.conn.execute("INSERT INTO mine VALUES (1)")
    assert committed(db) == 0
    store.rollback()
    assert committed(db) == 0 and store.count() == 0 and not store.has_table("mine")
    store.begin()
    store.begin()  # joins the open transaction
    store.record("a", 1, 1, [v("a")])
    store.conn.execute("CREATE TABLE mine (x)")
    store.commit()
    assert committed(db) == 1 and store.has_table("mine")
    store.record("b", 1, 1, [v("b")])  # batching resumes after the commit (batch_size=1)
    assert committed(db) == 2
    store.close()


def test_transaction_commits_on_success_rolls_back_on_error_and_nests_by_joining(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    store = ResultsStore(db, batch_size=1)
    with store.transaction():
        store.record("a", 1, 1, [v("a")])
        with store.transaction():  # joined: its end commits nothing
            store.record("b", 1, 1, [v("b")])
        assert committed(db) == 0
    assert committed(db) == 2
    with pytest.raises(RuntimeError), store.transaction():
        store.record("c", 1, 1, [v("c")])
        raise RuntimeError("boom")
    assert committed(db) == 2 and store.count() == 2
    store.close()


def test_record_replaces_a_paths_rows_and_queries_read_them(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite"
    store = ResultsStore(db)
    store.record("x.zip", 5, 7, [v("x.zip", "flag", "m1"), v("x.zip", "review", "m2")])
    store.record("y.stl", None, None, [v("y.stl")])
    assert store.count() == 3 and store.count("flag") == 1
    assert store.is_current("x.zip", 5, 7, "t", None) and not store.is_current("x.zip", 5, 8, "t", None)
    assert store.current_files("t", None) == {"x.zip": (5, 7)}  # y.stl has no known size
    assert [r.member for r in store.rows(("review", "flag"))] == ["m1", "m2"]
    assert store.row("x.zip", "m2").verdict == "review" and store.row("x.zip", "m3") is None
    assert sorted(store.keys(("clear",))) == [("y.stl", "", "ab" * 32)]
    assert [x.path for x in store.by_sha256("ab" * 32, "t", None)] == ["x.zip", "x.zip"]  # one path's verdicts
    store.record("x.zip", 5, 9, [v("x.zip", "clear")])  # rescanned: its old rows are replaced
    assert [(x.path, x.verdict) for x in store.verdicts()] == [("x.zip", "clear"), ("y.stl", "clear")]
    assert [size for _, size, _ in store.records_with_stat()] == [5, None]
    store.close()


def test_open_existing_never_creates_and_names_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(NotAResultsDB) as missing:
        ResultsStore.open_existing(tmp_path / "none.sqlite")
    assert missing.value.reason == "no-database" and not (tmp_path / "none.sqlite").exists()
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    with pytest.raises(NotAResultsDB) as garbage:
        ResultsStore.open_existing(text)
    assert garbage.value.reason == "not-a-results-database" and garbage.value.error is not None
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(NoResultsTable) as foreign:
        ResultsStore.open_existing(other)
    assert foreign.value.reason == "not-a-results-database"
    db = tmp_path / "r.sqlite"
    ResultsStore(db).close()
    reader = ResultsStore.open_existing(db, readonly=True)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        reader.record("a", 1, 1, [v("a")])
    reader.close()


def test_the_journal_joins_the_transaction_past_any_batch_size(tmp_path: Path) -> None:
    """More scans than the store's default batch in one journal batch: none is committed until
    the journal commits (it once disabled the batching with ``batch_size=1 << 62``)."""
    db = tmp_path / "s.sqlite"
    j = Journal(db)
    n = j.results.batch_size * 2 + 1
    for i in range(n):
        j.record_scan(f"/up/{i}", "/up", (1, 1), [v(f"/up/{i}")], [])
    assert committed(db) == 0
    j.commit()
    assert committed(db) == n
    j.record_scan("/up/late", "/up", (1, 1), [v("/up/late")], [])
    j.conn.close()  # killed before the commit: the scan is gone with its journal row
    j = Journal(db)
    assert "/up/late" not in j.recorded("t", None) and j.file_state("/up/late") is None
    j.set_file_state("/up/0", QUARANTINED)
    j.set_file_state("/up/1", DELETED)
    j.commit()
    recorded = j.recorded("t", None)
    assert len(recorded) == n - 2 and "/up/0" not in recorded and "/up/1" not in recorded
    j.close()
