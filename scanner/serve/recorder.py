"""``meshscan serve --db FILE``: served verdicts recorded in the results database of
``meshscan scan --db``, so that ``meshscan review`` and ``meshscan report`` work on uploads.

SQLite wants one writer, and a connection belongs to the thread that opened it, so one thread
owns the database: the scan threads hand it ``(path, size, verdicts)`` through a queue and never
wait for the disk. It commits in batches like ``scan --db`` (every ``batch_size`` uploads or
``batch_seconds``), also when the server is idle, and once more at shutdown: a killed server
loses at most the last uncommitted batch, never the database's consistency.

A served upload has no place on disk (its temporary file is gone once it is answered), so its
database path is a label that cannot be mistaken for a local file:
``served://<first 16 hex digits of its sha256>/<name the client gave>``. The sha256 keeps two
different uploads of the same name apart (a clear ``model.stl`` never replaces a flagged
``model.stl``), and the same bytes under the same name replace their earlier rows. ``review``
treats the path as remote: a decision that needs the bytes wants ``--file`` with a local copy,
whose sha256 must match.
"""

from __future__ import annotations

import queue
import sys
import threading
from typing import Any

from scanner.store.backend import DB_ERRORS, display_name
from scanner.verdict import Verdict

SERVED_SCHEME = "served://"


def served_path(sha256: str, name: str) -> str:
    """The database path of one served upload (see the module docstring)."""
    return f"{SERVED_SCHEME}{sha256[:16]}/{name}"


class RecorderError(Exception):
    """The results database cannot be opened (raised by :meth:`ServedRecorder.start`)."""


_STOP = object()


class ServedRecorder:
    """The single writer of a results database for a server."""

    def __init__(self, db_path: str, batch_size: int = 16, batch_seconds: float = 1.0) -> None:
        self.db_path = db_path
        self.batch_size, self.batch_seconds = batch_size, batch_seconds
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="meshscan-db-writer", daemon=True)
        self._opened = threading.Event()
        self._open_error: BaseException | None = None
        self.recorded = 0
        self.failed = 0

    def start(self) -> None:
        """Open the database on the writer thread; raise :class:`RecorderError` if it cannot be."""
        self._thread.start()
        self._opened.wait()
        if self._open_error is not None:
            self._thread.join()
            raise RecorderError(f"cannot use {display_name(self.db_path)} as a results database: {self._open_error}")

    def submit(self, sha256: str, name: str, size: int, verdicts: list[Verdict]) -> None:
        """Queue one upload's verdicts for writing (returns at once)."""
        self._queue.put((served_path(sha256, name), size, verdicts))

    def close(self, timeout: float = 30.0) -> None:
        """Write what is queued, commit and close (at server shutdown)."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def _run(self) -> None:
        from scanner.store.results import ResultsStore

        try:
            db = ResultsStore(self.db_path, batch_size=self.batch_size, batch_seconds=self.batch_seconds,
                           absolute_paths=True)  # fmt: skip
        except (*DB_ERRORS, OSError) as exc:
            self._open_error = exc
            self._opened.set()
            return
        self._opened.set()
        try:
            while True:
                try:
                    item = self._queue.get(timeout=self.batch_seconds)
                except queue.Empty:
                    if db._pending:  # idle: what is written is committed within batch_seconds
                        db.commit()
                    continue
                if item is _STOP:
                    break
                path, size, verdicts = item
                try:
                    db.record(path, size, None, verdicts)  # commits by batch_size / batch_seconds
                    self.recorded += 1
                except DB_ERRORS as exc:  # a full disk or a locked file loses this record, not the server
                    self.failed += 1
                    print(f"meshscan serve: [io-error] could not record {path} in {display_name(self.db_path)}: {exc}",
                          file=sys.stderr)  # fmt: skip
        finally:
            try:
                db.close()
            except DB_ERRORS:
                pass
