"""Where a results database lives: a SQLite file (the embedded default) or a PostgreSQL server.

One factory, :func:`connect`, chosen by the target: a ``postgresql://`` (or ``postgres://``)
URL opens a :class:`scanner.store.postgres.PostgresConnection`, anything else a SQLite file.
Both answer the same calls (``execute`` with ``?`` placeholders, ``executescript``,
``commit``, ``rollback``, ``in_transaction``, ``close``), so the statements of the results
store, the audit log, claims and the watch journal run unchanged on both; the SQL dialect's
differences (placeholders, ``INSERT OR REPLACE``, column types, the write lock) are the
PostgreSQL module's concern alone. psycopg is imported only when a URL is opened, so SQLite
users never need it and start-up never pays for it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from scanner.store.errors import DBError

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error, DBError)
"""Every error a results database may raise, whichever backend: catch these."""


def is_postgres_url(target: str | Path | None) -> bool:
    """Is ``target`` a PostgreSQL URL (``postgresql://user@host:port/db``)?"""
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def display_name(target: str | Path) -> str:
    """``target`` as shown in messages: a URL without its password."""
    if not is_postgres_url(target):
        return str(target)
    parts = urlsplit(str(target))
    if parts.password is None:
        return str(target)
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def dialect_of(conn: Any) -> str:
    """``"postgresql"`` or ``"sqlite"``: which DDL a module that owns its own triggers writes."""
    return str(getattr(conn, "dialect", "sqlite"))


def connect(target: str | Path, readonly: bool = False, autocommit: bool = False, timeout: float = 30.0) -> Any:
    """A connection to ``target``. ``autocommit``: statements commit on their own and a
    transaction starts only at an explicit ``BEGIN`` (SQLite's ``isolation_level=None``);
    otherwise one starts before the first write and lasts until ``commit`` (sqlite3's
    default). ``readonly`` refuses every write (SQLite ``mode=ro``, a read-only PostgreSQL
    session)."""
    if is_postgres_url(target):
        from scanner.store.postgres import PostgresConnection

        return PostgresConnection(str(target), readonly=readonly, autocommit=autocommit, timeout=timeout)
    path = Path(target)
    if readonly or autocommit:
        return sqlite3.connect(
            f"{path.resolve().as_uri()}?mode={'ro' if readonly else 'rw'}",
            uri=True,
            timeout=timeout,
            isolation_level=None,
        )
    return sqlite3.connect(path)


def hold_lock(url: str, name: str, shared: bool = False) -> Callable[[], None] | None:
    """Hold the PostgreSQL database's lock ``name`` (a session advisory lock) until the
    returned release is called; None when another session holds it (exclusive, or - for an
    exclusive request - shared). Watch daemons sharing a state database each hold it shared:
    what excludes them is a holder that does not share (an older daemon, ``watch --actions
    --retry`` performing actions itself), whatever machine it runs on."""
    conn = connect(url, autocommit=True)
    if conn.try_session_lock(name, shared=shared):
        return conn.close
    conn.close()
    return None


def has_table(conn: Any, name: str) -> bool:
    """Does the database behind ``conn`` hold table ``name``?"""
    if dialect_of(conn) == "postgresql":
        return bool(conn.has_table(name))
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def trigger_names(conn: Any) -> set[str]:
    """The names of the database's triggers (the audit log checks its own are still there)."""
    if dialect_of(conn) == "postgresql":
        return set(conn.trigger_names())
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
