"""A PostgreSQL connection that runs the results database's SQLite-dialect statements (psycopg 3).

Why a translating wrapper rather than two sets of queries: the results store, the audit log,
claims and the watch journal each own their tables and their SQL, and keeping one text of
each statement keeps them one module's concern each. What differs is translated here, and
only here:

* placeholders ``?`` become ``%s``, ``IS ?`` (NULL-safe equality) ``IS NOT DISTINCT FROM %s``;
* ``INSERT OR IGNORE`` becomes ``... ON CONFLICT DO NOTHING``, ``INSERT OR REPLACE``
  ``... ON CONFLICT (primary key) DO UPDATE`` (the key and columns read from the catalog);
* in DDL, ``INTEGER`` is ``BIGINT`` (nanosecond mtimes), ``REAL`` ``DOUBLE PRECISION``,
  ``BLOB`` ``BYTEA``; ``PRAGMA`` statements are SQLite tuning and do nothing here;
* the write lock: SQLite's ``BEGIN IMMEDIATE`` takes the database's single write lock; here
  it is ``BEGIN`` plus a transaction-scoped advisory lock (``pg_advisory_xact_lock``) that
  every "immediate" writer on every machine takes, so an audit-log append (read the chain's
  head, write the next row) or a claim (check, then take) is serialised exactly as on
  SQLite, while ordinary verdict writes run concurrently under MVCC. DDL runs under its own
  advisory lock, since concurrent ``CREATE TABLE IF NOT EXISTS`` can collide in PostgreSQL.

Transactions follow sqlite3's rules: with ``autocommit=False`` a transaction opens before the
first write and lasts until :meth:`commit`; with ``autocommit=True`` only an explicit
``BEGIN`` opens one. Every psycopg error is raised as :class:`scanner.store.backend.DBError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from typing import Any

from scanner.store.errors import DBError

WRITE_LOCK = 0x6D65736873636E01
"""Advisory lock key of the database's "write lock" (``BEGIN IMMEDIATE``)."""
SCHEMA_LOCK = 0x6D65736873636E02
"""Advisory lock key held while creating tables and triggers."""

_STRING = re.compile(r"('(?:[^']|'')*')")
_IS_NOT_PARAM = re.compile(r"\bIS\s+NOT\s+\?", re.IGNORECASE)
_IS_PARAM = re.compile(r"\bIS\s+\?", re.IGNORECASE)
_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", re.IGNORECASE)
_OR_REPLACE = re.compile(r"^\s*INSERT\s+OR\s+REPLACE\s+INTO\s+(\w+)\s*(\(([^)]*)\))?", re.IGNORECASE)
_DDL_TYPES = ((re.compile(r"\bINTEGER\b"), "BIGINT"), (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
              (re.compile(r"\bBLOB\b"), "BYTEA"))  # fmt: skip
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def placeholders(sql: str) -> str:
    """``?`` -> ``%s`` outside string literals (and ``%`` escaped), NULL-safe ``IS ?``."""
    parts = _STRING.split(sql.replace("%", "%%"))
    for i in range(0, len(parts), 2):  # even parts are outside quotes
        text = _IS_NOT_PARAM.sub("IS DISTINCT FROM ?", parts[i])
        parts[i] = _IS_PARAM.sub("IS NOT DISTINCT FROM ?", text).replace("?", "%s")
    return "".join(parts)


def ddl(script: str) -> str:
    """SQLite column types as PostgreSQL's."""
    for pattern, name in _DDL_TYPES:
        script = pattern.sub(name, script)
    return script


class _NoRows:
    """The cursor of a statement that does nothing here (``PRAGMA``)."""

    rowcount = -1

    def fetchone(self) -> None:
        return None

    def fetchall(self) -> list[Any]:
        return []

    def __iter__(self) -> Iterator[Any]:
        return iter(())


class PostgresConnection:
    """One psycopg connection, answering the sqlite3 calls the results database's users make."""

    dialect = "postgresql"

    def __init__(self, url: str, readonly: bool = False, autocommit: bool = False, timeout: float = 30.0) -> None:
        try:
            import psycopg
        except ImportError:
            raise DBError("a postgresql:// database needs psycopg: pip install 'meshscan[postgres]'") from None
        self._psycopg = psycopg
        try:
            self._pg = psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(timeout)))
            self._pg.execute("SET client_min_messages = warning")  # no "already exists, skipping" notices
            if readonly:
                self._pg.execute("SET default_transaction_read_only = on")
        except psycopg.Error as exc:
            raise DBError(f"cannot connect: {str(exc).strip()}") from None
        self._implicit = not autocommit
        self._upserts: dict[str, tuple[list[str], list[str]]] = {}
        self._translated: dict[str, str] = {}

    # ------------------------------------------------------------------ sqlite3's interface
    @property
    def in_transaction(self) -> bool:
        return self._pg.info.transaction_status != self._psycopg.pq.TransactionStatus.IDLE

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Run one SQLite-dialect statement (see the module docstring for what is translated)."""
        words = sql.split(None, 2)
        head = words[0].upper() if words else ""
        if head == "PRAGMA":
            return _NoRows()
        if head == "BEGIN":
            self.begin(immediate=len(words) > 1 and words[1].upper() in ("IMMEDIATE", "EXCLUSIVE"))
            return _NoRows()
        if head in ("COMMIT", "END"):
            self.commit()
            return _NoRows()
        if head == "ROLLBACK":
            self.rollback()
            return _NoRows()
        if head == "CREATE":
            return self._run(ddl(sql))
        if self._implicit and head in _WRITES and not self.in_transaction:
            self._run("BEGIN")
        translated = self._translated.get(sql)
        if translated is None:
            translated = placeholders(self._upsert(sql))
            if len(self._translated) < 512:  # the statements are a small fixed set: translate each once
                self._translated[sql] = translated
        return self._run(translated, tuple(params))

    def executescript(self, script: str) -> None:
        """Commit what is pending (as sqlite3 does), then create tables, indexes and triggers
        under the schema lock, in one transaction."""
        if self.in_transaction:
            self.commit()
        self._run("BEGIN")
        try:
            self._run("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            self._run(ddl(script))
            self._run("COMMIT")
        except BaseException:
            self.rollback()
            raise

    def begin(self, immediate: bool = False) -> None:
        """``BEGIN``; ``immediate``: and take the write lock every immediate writer takes."""
        self._run("BEGIN")
        if immediate:
            self._run("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))

    def commit(self) -> None:
        if self.in_transaction:
            self._run("COMMIT")

    def rollback(self) -> None:
        if not self._pg.closed and self.in_transaction:
            self._run("ROLLBACK")

    def close(self) -> None:
        self._pg.close()

    def __enter__(self) -> PostgresConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ catalog
    def has_table(self, name: str) -> bool:
        return bool(self._run("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0])

    def try_session_lock(self, name: str, shared: bool = False) -> bool:
        """Take the advisory lock ``name`` for as long as this connection lives (False: another
        session, on any machine, holds it). ``shared``: any number of sessions may hold it
        shared at once, none while one holds it exclusive (and the other way round)."""
        function = "pg_try_advisory_lock_shared" if shared else "pg_try_advisory_lock"
        return bool(self._run(f"SELECT {function}(hashtext(%s))", (name,)).fetchone()[0])

    def trigger_names(self) -> list[str]:
        return [r[0] for r in self._run("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")]

    # ------------------------------------------------------------------ internals
    def _run(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        try:
            return self._pg.execute(sql, params)
        except self._psycopg.Error as exc:
            raise DBError(str(exc).strip()) from exc

    def _upsert(self, sql: str) -> str:
        """``INSERT OR IGNORE`` / ``INSERT OR REPLACE`` as ``INSERT ... ON CONFLICT``."""
        if _OR_IGNORE.match(sql):
            return _OR_IGNORE.sub("INSERT INTO", sql, count=1).rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
        found = _OR_REPLACE.match(sql)
        if not found:
            return sql
        table = found.group(1)
        key, columns = self._table_shape(table)
        if found.group(3):
            columns = [c.strip().strip('"') for c in found.group(3).split(",")]
        update = ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in columns if c not in key)
        quoted = ", ".join(f'"{c}"' for c in key)
        action = f"DO UPDATE SET {update}" if update else "DO NOTHING"
        insert = re.sub(r"^\s*INSERT\s+OR\s+REPLACE\s+INTO", "INSERT INTO", sql, count=1, flags=re.IGNORECASE)
        return f"{insert.rstrip().rstrip(';')} ON CONFLICT ({quoted}) {action}"

    def _table_shape(self, table: str) -> tuple[list[str], list[str]]:
        """(primary key columns, every column) of ``table``, read once from the catalog."""
        if table not in self._upserts:
            key = [r[0] for r in self._run(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = to_regclass(%s) AND i.indisprimary",
                (table,),
            )]  # fmt: skip
            columns = [r[0] for r in self._run(
                "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 "
                "AND NOT attisdropped ORDER BY attnum",
                (table,),
            )]  # fmt: skip
            if not key:
                raise DBError(f"INSERT OR REPLACE into {table}: it has no primary key")
            self._upserts[table] = (key, columns)
        return self._upserts[table]
