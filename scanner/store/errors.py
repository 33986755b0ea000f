"""The results database's own error type, apart from sqlite3's (which the SQLite backend raises)."""

from __future__ import annotations


class DBError(Exception):
    """A PostgreSQL error (connection, SQL, a trigger's refusal), carried under one name so
    callers catch :data:`scanner.store.backend.DB_ERRORS` without importing psycopg."""
