"""Scanning on a Dask cluster: the same ``scan_one`` as the local engine, on many machines.

``meshscan scan ... --engine dask [--scheduler tcp://HOST:8786]`` connects to a running
scheduler (or starts a ``LocalCluster`` of worker processes when none is given), keeps a
bounded number of tasks in flight (back-pressure: the listing is consumed only as results
come back), and streams verdicts back in input order into the same sinks and results DB as
the local engine. Each worker loads the signature library once (cached per worker process,
keyed by library path and settings), not once per file. Paths may be fsspec URLs, which is
how workers on other machines reach the same files (``s3://...``, ``gs://...``).

Limits: per-file time limits are not enforced here (a Dask task cannot be interrupted);
memory is bounded by Dask's own per-worker ``memory_limit`` (the nanny restarts a worker
past it, and a task that kills workers three times is reported ``worker-crashed``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterable, Iterator
from typing import Any

from scanner.batch import Upload
from scanner.config import settings_from_dict
from scanner.errors import WORKER_CRASHED, UnreadableInput
from scanner.pipeline import ScanContext, scan_one, unscannable_verdict
from scanner.verdict import Verdict

_CONTEXTS: dict[tuple[str | None, str], ScanContext] = {}


def _worker_context(library: str | None, settings_json: str) -> ScanContext:
    key = (library, settings_json)
    context = _CONTEXTS.get(key)
    if context is None:
        from scanner.library import SignatureLibrary, shipped_library_path

        lib = SignatureLibrary.load(library or shipped_library_path())
        context = ScanContext(settings=settings_from_dict(json.loads(settings_json)), library=lib)
        _CONTEXTS[key] = context
    return context


def scan_task(path: str, library: str | None, settings_json: str) -> str:
    """The Dask task: verdicts of one upload, as JSON text."""
    verdicts = scan_one(path, _worker_context(library, settings_json))
    return json.dumps([v.to_dict() for v in verdicts])


class DaskEngine:
    def __init__(self, context: ScanContext, library: str | None, scheduler: str | None, jobs: int,
                 in_flight_per_worker: int = 4) -> None:  # fmt: skip
        self.context, self.library, self.scheduler = context, library, scheduler
        self.jobs, self.in_flight_per_worker = jobs, in_flight_per_worker
        self.settings_json = json.dumps(dataclasses.asdict(context.settings), sort_keys=True)
        self.client: Any = None
        self._cluster: Any = None

    def __enter__(self) -> DaskEngine:
        from distributed import Client, LocalCluster

        if self.scheduler:
            self.client = Client(self.scheduler)
        else:
            self._cluster = LocalCluster(n_workers=self.jobs, threads_per_worker=1, processes=True,
                                         dashboard_address=None)  # fmt: skip
            self.client = Client(self._cluster)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client is not None:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()

    def scan(self, uploads: Iterable[Upload]) -> Iterator[tuple[Upload, list[Verdict]]]:
        from distributed import as_completed

        workers = max(1, len(self.client.scheduler_info().get("workers", {})) or self.jobs)
        limit = workers * self.in_flight_per_worker
        queue = enumerate(uploads)
        pending: dict[Any, tuple[int, Upload]] = {}
        done: dict[int, tuple[Upload, list[Verdict]]] = {}
        next_out = 0
        results = as_completed()
        for index, upload in itertools.islice(queue, limit):
            results.add(self._submit(index, upload, pending))
        for future in results:
            index, upload = pending.pop(future)
            try:
                verdicts = [Verdict.from_dict(r) for r in json.loads(future.result())]
            except Exception as exc:  # noqa: BLE001 - KilledWorker and friends: report, go on
                err = UnreadableInput(WORKER_CRASHED, f"{type(exc).__name__}: {exc}")
                verdicts = [unscannable_verdict(upload.path, self.context, err)]
            done[index] = (upload, verdicts)
            for index2, upload2 in itertools.islice(queue, 1):
                results.add(self._submit(index2, upload2, pending))
            while next_out in done:
                yield done.pop(next_out)
                next_out += 1

    def _submit(self, index: int, upload: Upload, pending: dict) -> Any:
        future = self.client.submit(scan_task, upload.path, self.library, self.settings_json, pure=False,
                                    key=f"meshscan-scan-{index}-{id(self)}")  # fmt: skip
        pending[future] = (index, upload)
        return future
