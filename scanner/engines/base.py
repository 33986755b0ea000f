"""The one protocol every engine offers, so a scan run does not care where scans happen."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

from scanner.batch import Upload
from scanner.verdict import Verdict

Result = tuple[Upload, list[Verdict]]


class Engine(Protocol):
    """A scan engine (:class:`~scanner.engines.local.LocalPool`,
    :class:`~scanner.engines.dask_engine.DaskEngine`): entered once (workers or a cluster
    started, then stopped on exit), then :meth:`scan` yields one result per upload given, in
    input order, consuming the input lazily (a few uploads ahead of the results)."""

    def __enter__(self) -> Engine: ...

    def __exit__(self, *exc: object) -> None: ...

    def scan(self, uploads: Iterable[Upload]) -> Iterator[Result]: ...
