"""Scanning on a Dask cluster: the same ``scan_one`` as the local engine, on many machines.

``meshscan scan ... --engine dask [--scheduler tcp://HOST:8786]`` connects to a running
scheduler (or starts a ``LocalCluster`` of worker processes when none is given), keeps a
bounded number of tasks in flight (back-pressure: the listing is consumed only as results
come back; small files go several to a task), and streams verdicts back in input order into
the same sinks and results DB as the local engine. Each worker loads the signature library and the component model once
(cached per worker process, keyed by library path, settings and model), not once per file.
Paths may be fsspec URLs, which is how workers on other machines reach the same files
(``s3://...``, ``gs://...``).

Limits: a Dask task cannot be interrupted, so each worker thread scans through a guarded
child process (:mod:`scanner.guard`) that enforces the same per-file time and memory limits
as the local engine and loses only the file at hand when it crashes. A task that still kills
its Dask worker three times is reported ``worker-crashed``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from scanner.batch import Upload
from scanner.config import settings_from_dict
from scanner.errors import WORKER_CRASHED, UnreadableInput
from scanner.guard import ContextSpec, GuardedScanner
from scanner.pipeline import ScanContext, scan_one, unscannable_verdict
from scanner.verdict import Verdict

_CONTEXTS: dict[tuple[str | None, str, str | None], ScanContext] = {}


def _worker_context(library: str | None, settings_json: str, model: str | None = None) -> ScanContext:
    """The worker's scan context, loaded once per worker process: the library, and the model
    (``model``: a folder, ``"shipped"`` for the worker's own installed demo model, or None),
    refit here once - the model file holds rows, not an estimator to unpickle."""
    key = (library, settings_json, model)
    context = _CONTEXTS.get(key)
    if context is None:
        from scanner.classify.model import load_model
        from scanner.library import SignatureLibrary, shipped_library_path

        lib = SignatureLibrary.load(library or shipped_library_path())
        component_model = None if model is None else load_model(None if model == "shipped" else model)
        context = ScanContext(settings=settings_from_dict(json.loads(settings_json)), library=lib,
                              model=component_model)  # fmt: skip
        _CONTEXTS[key] = context
    return context


_GUARDS = threading.local()
PROCESS_LOCAL_URLS = ("memory://",)
"""Filesystems that live in the worker's own memory: scanned in the task's thread, unguarded."""


def scan_task(paths: list[str], library: str | None, settings_json: str, model: str | None = None) -> str:
    """The Dask task: verdicts of a batch of uploads, as JSON text (one list per upload).

    Each scan runs in this worker thread's guarded child process (loaded once), so the
    per-file time and memory limits hold here as they do in the local engine."""
    out = []
    for path in paths:
        if path.startswith(PROCESS_LOCAL_URLS):  # a child process cannot see this worker's memory
            verdicts = scan_one(path, _worker_context(library, settings_json, model))
        else:
            verdicts = _guard(ContextSpec(library, settings_json, model)).scan(path)
        out.append([v.to_dict() for v in verdicts])
    return json.dumps(out)


def _guard(spec: ContextSpec) -> GuardedScanner:
    guards = getattr(_GUARDS, "by_spec", None)
    if guards is None:
        guards = _GUARDS.by_spec = {}
    guard = guards.get(spec)
    if guard is None:
        limits = settings_from_dict(json.loads(spec.settings_json)).limits
        guard = guards[spec] = GuardedScanner(spec, limits.max_seconds, limits.max_memory_bytes)
    return guard


BATCH_FILES = 16
BATCH_BYTES = 16 * 1024 * 1024
"""A task carries up to BATCH_FILES uploads or BATCH_BYTES of them (a file whose size is not
known cheaply - a remote URL - fills a task alone): a task per small file would spend more
time in the scheduler than in the scan, while big files still spread one per task."""


def batches(uploads: Iterable[Upload]) -> Iterator[list[Upload]]:
    batch: list[Upload] = []
    size = 0
    for upload in uploads:
        try:
            nbytes = BATCH_BYTES if "://" in upload.path else os.stat(upload.path).st_size
        except OSError:
            nbytes = 0
        if batch and (len(batch) >= BATCH_FILES or size + nbytes > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(upload)
        size += nbytes
    if batch:
        yield batch


class DaskEngine:
    def __init__(self, context: ScanContext, library: str | None, scheduler: str | None, jobs: int,
                 in_flight_per_worker: int = 4) -> None:  # fmt: skip
        self.context, self.library, self.scheduler = context, library, scheduler
        self.jobs, self.in_flight_per_worker = jobs, in_flight_per_worker
        self.settings_json = json.dumps(dataclasses.asdict(context.settings), sort_keys=True)
        self.model = None if context.model is None else (context.model.source or str(context.model.path))
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
        queue = enumerate(batches(uploads))
        pending: dict[Any, tuple[int, list[Upload]]] = {}
        done: dict[int, list[tuple[Upload, list[Verdict]]]] = {}
        next_out = 0
        results = as_completed()
        for index, batch in itertools.islice(queue, limit):
            results.add(self._submit(index, batch, pending))
        for future in results:
            index, batch = pending.pop(future)
            try:
                records = json.loads(future.result())
                done[index] = [(u, [Verdict.from_dict(r) for r in rs]) for u, rs in zip(batch, records, strict=True)]
            except Exception as exc:  # noqa: BLE001 - KilledWorker and friends: report, go on
                err = UnreadableInput(WORKER_CRASHED, f"{type(exc).__name__}: {exc}")
                done[index] = [(u, [unscannable_verdict(u.path, self.context, err)]) for u in batch]
            for index2, batch2 in itertools.islice(queue, 1):
                results.add(self._submit(index2, batch2, pending))
            while next_out in done:
                yield from done.pop(next_out)
                next_out += 1

    def _submit(self, index: int, batch: list[Upload], pending: dict) -> Any:
        paths = [u.path for u in batch]
        future = self.client.submit(scan_task, paths, self.library, self.settings_json, self.model, pure=False,
                                    key=f"meshscan-scan-{index}-{id(self)}")  # fmt: skip
        pending[future] = (index, batch)
        return future
