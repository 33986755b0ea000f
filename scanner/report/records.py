"""Reading verdict records for a report: from a results database (``scan --db``,
``watch --state``: both hold the same ``results`` table) or from a JSONL verdict log.

The database is opened read-only through its owner, :class:`scanner.store.results.ResultsStore`
(``mode=ro``), so a report can be made while a scan or the watch daemon is writing, and can
never change what it reports on. Bad input is a :class:`ReportError` with a reason code, never
a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scanner.errors import MeshscanError
from scanner.store.backend import DB_ERRORS, display_name, is_postgres_url
from scanner.store.results import NoResultsTable, NotAResultsDB, ResultsStore

SQLITE_MAGIC = b"SQLite format 3\x00"

# reason codes of ReportError
NOT_FOUND = "not-found"
NOT_RESULTS = "not-results"
CORRUPT_SOURCE = "corrupt-source"
NO_MTIME = "no-mtime"
EMPTY_SOURCE = "empty-source"


class ReportError(MeshscanError):
    """Why a report cannot be made, with a stable reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"[{reason}] {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class Row:
    """One verdict record plus what the database knows about its file."""

    record: dict[str, Any]
    size: int | None = None
    mtime_ns: int | None = None

    @property
    def verdict(self) -> str:
        return str(self.record.get("verdict", ""))


@dataclass(frozen=True)
class Source:
    """Where the rows came from: ``kind`` is ``results-db`` or ``jsonl``."""

    kind: str
    rows: list[Row]
    has_mtime: bool
    survey: dict[str, Any] | None = None
    """A survey's design (``survey --db``: population, seed, sampled paths), if the
    database holds one: the report then keeps the survey's estimates."""


def read_source(path: str | Path) -> Source:
    """Every verdict record of a results DB (a SQLite file or a ``postgresql://`` URL) or JSONL
    log (DB: one row per path and member)."""
    if is_postgres_url(path):
        rows = list(_read_db(str(path)))
        return Source("results-db", rows, True, _read_survey(str(path)))
    p = Path(path)
    if not p.is_file():
        raise ReportError(NOT_FOUND, f"{path}: no such file")
    with p.open("rb") as fh:
        head = fh.read(len(SQLITE_MAGIC))
    if head == SQLITE_MAGIC:
        rows = list(_read_db(p))
        kind, has_mtime, survey = "results-db", True, _read_survey(p)
    else:
        rows = list(_read_jsonl(p))
        kind, has_mtime, survey = "jsonl", False, None
    if not rows:
        raise ReportError(EMPTY_SOURCE, f"{path}: holds no verdict records")
    return Source(kind, rows, has_mtime, survey)


def _read_survey(path: Path | str) -> dict[str, Any] | None:
    """The survey design recorded in the database, if any (checked: a damaged one is an error,
    not a silently different report)."""
    from scanner.report.survey import META_KEY

    store = ResultsStore.open_readonly(path)
    try:
        text = store.get_meta(META_KEY)
    except DB_ERRORS as exc:
        raise ReportError(CORRUPT_SOURCE, f"{display_name(path)}: cannot read database: {exc}") from None
    finally:
        store.close()
    if text is None:
        return None
    try:
        design = json.loads(text)
        ok = isinstance(design, dict) and int(design["population"]) >= len(design["sample"]) >= 0
        ok = ok and isinstance(design["sample"], list) and isinstance(design["seed"], int)
    except (ValueError, TypeError, KeyError):
        ok = False
    if not ok:
        raise ReportError(CORRUPT_SOURCE, f"{path}: the recorded survey design is not readable")
    return design


def _read_db(path: Path | str) -> Iterator[Row]:
    try:
        store = ResultsStore.open_readonly(path)
    except NoResultsTable:
        raise ReportError(
            NOT_RESULTS,
            f"{display_name(path)}: a database without a 'results' table "
            "(make one with 'meshscan scan --db' or 'meshscan watch --state')",
        ) from None
    except NotAResultsDB as exc:
        raise ReportError(CORRUPT_SOURCE, f"{display_name(path)}: cannot read database: {exc.error or exc}") from None
    try:
        for text, size, mtime_ns in store.records_with_stat():
            try:
                record = json.loads(text)
            except (TypeError, ValueError):
                raise ReportError(CORRUPT_SOURCE, f"{path}: a results row holds no valid JSON record") from None
            if not isinstance(record, dict) or "verdict" not in record:
                raise ReportError(CORRUPT_SOURCE, f"{path}: a results row is not a verdict record")
            yield Row(record, size, mtime_ns)
    except DB_ERRORS as exc:
        raise ReportError(CORRUPT_SOURCE, f"{display_name(path)}: cannot read database: {exc}") from None
    finally:
        store.close()


def _read_jsonl(path: Path) -> Iterator[Row]:
    """A JSONL verdict log; a record seen again for the same path and member replaces the
    earlier one (a log appended to by rescans), as the database does."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    try:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    raise ReportError(
                        CORRUPT_SOURCE,
                        f"{path}:{number}: not a JSON line (expected a results DB or a JSONL verdict log)",
                    ) from None
                if not isinstance(record, dict) or "verdict" not in record:
                    raise ReportError(CORRUPT_SOURCE, f"{path}:{number}: not a verdict record")
                latest[(str(record.get("path", "")), str(record.get("member") or ""))] = record
    except UnicodeDecodeError:
        raise ReportError(CORRUPT_SOURCE, f"{path}: neither a SQLite results DB nor a UTF-8 JSONL log") from None
    except OSError as exc:
        raise ReportError(NOT_FOUND, f"{path}: cannot read: {exc.strerror}") from None
    for key in sorted(latest):
        yield Row(latest[key])
