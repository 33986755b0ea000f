"""scan_uploads' rarer branches, with an engine whose results are chosen by the test (the
common ones run on the real worker pool in tests/integration/test_runner.py)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from scanner import __version__
from scanner.batch import Upload
from scanner.run import RunStats, scan_uploads
from scanner.store.results import ResultsStore
from scanner.verdict import Verdict


class Context:
    library_version = "lib-1"
    model_version = None


class ScriptedEngine:
    """Reads the uploads lazily, ``lookahead`` ahead of its results (as the real pool does
    with that many workers), in input order; a path's first scan in ``changed_on_first_scan``
    reports other bytes than the file held when it was hashed (it was appended to meanwhile)."""

    def __init__(self, changed_on_first_scan: set[str], lookahead: int = 1) -> None:
        self.changed, self.lookahead = set(changed_on_first_scan), lookahead
        self.calls: list[list[str]] = []

    def scan(self, uploads: Iterable[Upload]) -> Iterator[tuple[Upload, list[Verdict]]]:
        call: list[str] = []
        self.calls.append(call)
        queue: list[Upload] = []
        feed = iter(uploads)
        while True:
            while len(queue) < self.lookahead and (upload := next(feed, None)) is not None:
                call.append(upload.path)
                queue.append(upload)
            if not queue:
                return
            upload = queue.pop(0)
            yield upload, [self._verdict(upload.path)]

    def _verdict(self, path: str) -> Verdict:
        data = Path(path).read_bytes()
        if path in self.changed:
            self.changed.discard(path)
            data += b"appended while scanned"
        return Verdict(path=path, member=None, verdict="clear", sha256=hashlib.sha256(data).hexdigest(),
                       scanner_version=__version__, library_version="lib-1")  # fmt: skip


def test_duplicates_of_an_original_that_changed_while_scanned_are_scanned(tmp_path: Path) -> None:
    paths = []
    for name in ("a.stl", "b.stl", "c.stl"):
        (tmp_path / name).write_bytes(b"same bytes")
        paths.append(str(tmp_path / name))
    engine, stats = ScriptedEngine({paths[0]}, lookahead=3), RunStats()
    db = ResultsStore(tmp_path / "r.sqlite")
    out = list(scan_uploads((Upload(p, str(tmp_path)) for p in paths), engine, Context(), db, stats=stats))
    db.close()
    assert sorted(u.path for u, _ in out) == paths
    # a's verdict is for other bytes than b's and c's, parked while a was scanned: no copies
    assert [v.copied_from for _, (v,) in out] == [None, None, None]
    assert engine.calls == [[paths[0]], [paths[1], paths[2]]]
    assert stats.copied == 0 and stats.rescanned == 2
    with sqlite3.connect(tmp_path / "r.sqlite") as conn:
        assert sorted(r[0] for r in conn.execute("SELECT path FROM results")) == paths


def test_a_path_given_twice_gets_two_results(tmp_path: Path) -> None:
    (tmp_path / "a.stl").write_bytes(b"bytes")
    path = str(tmp_path / "a.stl")
    db = ResultsStore(tmp_path / "r.sqlite")
    engine = ScriptedEngine(set())
    out = list(scan_uploads(iter([Upload(path, str(tmp_path))] * 2), engine, Context(), db))
    db.close()
    assert [u.path for u, _ in out] == [path, path]
    assert [v.copied_from for _, (v,) in out] == [None, path]
