"""The results database backends: which one a target picks, and what the PostgreSQL wrapper
translates (the statements themselves are run against a real server in
tests/integration/test_postgres.py)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from scanner.store.backend import DB_ERRORS, DBError, connect, display_name, is_postgres_url
from scanner.store.postgres import ddl, placeholders
from scanner.store.results import NotAResultsDB, ResultsStore
from tests.conftest import REPO


def test_the_target_picks_the_backend(tmp_path: Path) -> None:
    assert is_postgres_url("postgresql://u@h/db") and is_postgres_url("postgres://h/db")
    assert not is_postgres_url(str(tmp_path / "r.sqlite")) and not is_postgres_url(tmp_path / "x")
    conn = connect(tmp_path / "r.sqlite")
    assert isinstance(conn, sqlite3.Connection)
    conn.close()


def test_a_password_is_never_shown() -> None:
    assert display_name("postgresql://ann:s3cret@db.internal:5433/results") == (
        "postgresql://ann:***@db.internal:5433/results"
    )
    assert display_name("postgresql://ann@db.internal/results") == "postgresql://ann@db.internal/results"
    assert display_name("/srv/r.sqlite") == "/srv/r.sqlite"


def test_placeholders_outside_string_literals_only() -> None:
    sql = "SELECT 1 FROM t WHERE a = ? AND b IS ? AND c IS NOT ? AND d LIKE 'x?%' AND e = '?'"
    assert placeholders(sql) == (
        "SELECT 1 FROM t WHERE a = %s AND b IS NOT DISTINCT FROM %s AND c IS DISTINCT FROM %s "
        "AND d LIKE 'x?%%' AND e = '?'"
    )


def test_ddl_types_are_widened() -> None:
    out = ddl("CREATE TABLE t (a INTEGER, b REAL, c BLOB NOT NULL, recorded_at REAL)")
    assert out == "CREATE TABLE t (a BIGINT, b DOUBLE PRECISION, c BYTEA NOT NULL, recorded_at DOUBLE PRECISION)"


def test_an_unreachable_server_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    url = "postgresql://ann:s3cret@127.0.0.1:1/results?connect_timeout=2"
    with pytest.raises(NotAResultsDB) as refused:
        ResultsStore.open_existing(url)
    assert refused.value.reason == "no-database" and "s3cret" not in str(refused.value)
    with pytest.raises(DB_ERRORS):
        connect(url)
    assert issubclass(DBError, Exception)
    (tmp_path / "a.stl").write_bytes((REPO / "fixtures" / "demo" / "benign-cup-s1-000.stl").read_bytes())
    scan = subprocess.run([sys.executable, "-m", "scanner.cli", "scan", str(tmp_path), "--db", url],
                          capture_output=True, text=True, timeout=120, cwd=REPO)  # fmt: skip
    assert scan.returncode == 3 and "[io-error]" in scan.stderr, scan.stderr
    assert "s3cret" not in scan.stderr and "Traceback" not in scan.stderr
    review = subprocess.run([sys.executable, "-m", "scanner.cli", "review", url],
                            capture_output=True, text=True, timeout=120, cwd=REPO)  # fmt: skip
    assert review.returncode != 0 and "[no-database]" in review.stderr, review.stderr
    assert "s3cret" not in review.stderr and "Traceback" not in review.stderr
