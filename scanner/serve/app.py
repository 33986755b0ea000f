"""The HTTP app: one :class:`scanner.Scanner` (library and model loaded once), scans in a
bounded pool of threads, each handing its upload to one of ``workers`` long-lived forked scan
workers under the limits of ``meshscan scan`` (:mod:`scanner.serve.workers`).

Endpoints (all JSON except ``/metrics``):

- ``GET /v1/status``: versions (scanner, library, descriptor, model), when the library was
  loaded and the last reload attempt (``--reload-library``), workers, queue.
- ``POST /v1/scan``: an upload (multipart field ``file``, or a raw body with ``?name=``) ->
  ``{"records": [...]}``, the records of ``meshscan scan --format json``.
- ``POST /v1/hash``: the same upload -> ``{"signals": [...]}``, hashes, descriptor rows and
  distinct patch codes of each mesh, without matching (hash at the edge).
- ``POST /v1/lookup``: one signals object -> ``{"matches": [...], "notes": [...]}`` (a matcher
  that never sees the file; the matches a scan of the file gives, and notes on what the
  signals could not show - e.g. older signals without patch codes find no local match).
- ``GET /metrics``: Prometheus text.

Admission: a request for ``/v1/scan`` or ``/v1/hash`` takes a place before its body is read
and keeps it until it is answered; at most ``workers`` run and ``queue`` wait, and one more is
answered 503 with ``Retry-After`` (its body is never read). Bad input is never a 500: an
unreadable upload is a record with verdict ``unscannable``; a malformed lookup is a 422.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import math
import multiprocessing
import os
import resource
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field, model_validator

from scanner._version import __version__
from scanner.api import Scanner, Signals
from scanner.engines.worker import one_blas_thread
from scanner.errors import CORRUPT, LIMIT_MEMORY, LIMIT_TIME, WORKER_CRASHED
from scanner.exchange.signals import MAX_SIGNAL_PATCHES, PatchSignal
from scanner.features import DESCRIPTOR_SIZE, DESCRIPTOR_VERSION
from scanner.features.patches import PATCH_VERSION
from scanner.serve.contract import (
    AUTH_REFUSAL,
    LOOKUP_REFUSALS,
    UPLOAD_REFUSALS,
    HashBody,
    StatusBody,
    lookup_responses,
    scan_responses,
)
from scanner.serve.recorder import ServedRecorder
from scanner.serve.reload import LibraryHolder, ReloadAttempt
from scanner.serve.uploads import SpooledUpload, UploadError, check_declared_length, spool
from scanner.verdict import match_dict

RETRY_AFTER_S = 2
"""Seconds a refused client is told to wait (``Retry-After``)."""

UPLOAD_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            }
        },
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}
"""The OpenAPI description of an upload body: the endpoints read the stream themselves (so that
nothing is held in memory and the size limit stops the read), so FastAPI cannot infer it."""


def key_digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def load_api_keys(path: str) -> frozenset[bytes]:
    """The sha256 digests of the keys in ``path`` (one per line; blank lines and ``#`` comments
    skipped). Only the digests are kept: a memory dump does not give the keys away."""
    with open(path, encoding="utf-8") as f:
        keys = [line.strip() for line in f]
    digests = frozenset(key_digest(k) for k in keys if k and not k.startswith("#"))
    if not digests:
        raise ValueError(f"{path} holds no API key")
    return digests


@dataclass
class ServeConfig:
    scanner: Scanner
    """The loaded scanner: its library, model and settings (limits) are what the forked scan
    workers share; ``/v1/hash`` hashes in a fresh forked child per upload."""
    workers: int = 2
    queue: int = 4
    max_upload_bytes: int = 256 * 1024 * 1024
    api_key_digests: frozenset[bytes] | None = None
    """None: no authentication (the command then binds to loopback only)."""
    recorder: ServedRecorder | None = None
    """``--db``: the started writer of the results database that records every served scan."""
    library_path: str | None = None
    """``--reload-library``: the library folder to load again on SIGHUP (None: never reloaded)."""
    reload_poll_seconds: float = 0.0
    """``--reload-library``: also reload when the folder's manifest.json changes, checked this
    often (0: on SIGHUP only)."""
    review: Any = None
    """``--review-db``: the :class:`scanner.review.web.app.WebSettings` of the web review queue
    mounted under ``/review`` (None: not mounted)."""


PATCHES_MAX_CHARS = 2 * MAX_SIGNAL_PATCHES * 14 + 64
"""The longest patch signal an upload's signals carry (2 kinds x 32,768 codes and sizes, as
base64 text), with room for the version and the count. Checked by the validator, not stated
as ``maxLength``: a schema-driven fuzzer cannot generate a string that long to test it."""
PATCHES_SCHEMA = {
    "pattern": "^[^;]*;[A-Za-z0-9_-]*;[A-Za-z0-9_-]*;[A-Za-z0-9_-]*;[0-9]*$",
    "description": f"The mesh_patches signal as /v1/hash gives it ('{PATCH_VERSION};<codes>;<sizes>;;<distinct>'); "
    "absent in signals of a meshscan before patch codes (they find no local match: see notes). Codes of "
    f"another patch version are refused (422, reason patch-version). At most {PATCHES_MAX_CHARS} characters.",
}
ROW_SCHEMA = {"type": "array", "items": {"type": "number"}, "minItems": DESCRIPTOR_SIZE, "maxItems": DESCRIPTOR_SIZE}
"""One descriptor row as the document states it (the validator below says the same, with reasons)."""


class LookupSignals(BaseModel):
    """One mesh's signals, as ``POST /v1/hash`` returns them."""

    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="null")
    sha256: str | None = Field(default=None, max_length=64)
    geometry_hash: str = Field(max_length=128)
    descriptor_version: str = Field(max_length=512, json_schema_extra={"const": DESCRIPTOR_VERSION})
    rows: list[list[float]] = Field(min_length=1, max_length=4096, json_schema_extra={"items": ROW_SCHEMA})
    row_bodies: list[int] = Field(min_length=1, max_length=4096)
    member: str | None = Field(default=None, max_length=4096)
    triangles: int = Field(default=0, ge=0)
    bodies: int = Field(default=0, ge=0)
    patches: str | None = Field(default=None, json_schema_extra=PATCHES_SCHEMA)
    affine: list[float] | None = Field(default=None, json_schema_extra=ROW_SCHEMA)
    row_shares: list[float] | None = Field(default=None, max_length=4096)
    row_solidity: list[float | None] | None = Field(default=None, max_length=4096)

    @model_validator(mode="after")
    def _consistent(self) -> LookupSignals:
        if self.descriptor_version != DESCRIPTOR_VERSION:
            raise ValueError(
                f"descriptor_version {self.descriptor_version!r} cannot be compared with {DESCRIPTOR_VERSION!r}"
            )
        if len(self.rows) != len(self.row_bodies):
            raise ValueError("rows and row_bodies must have the same length")
        shares = self.row_shares
        if shares is not None and (len(shares) != len(self.rows) or not all(0.0 <= x <= 1.0 for x in shares)):
            raise ValueError("row_shares must hold one number in [0, 1] per row")
        solid = self.row_solidity
        if solid is not None and (
            len(solid) != len(self.rows) or not all(x is None or (math.isfinite(x) and x >= 0.0) for x in solid)
        ):
            raise ValueError("row_solidity must hold one number >= 0 (or null) per row")
        for row in self.rows:
            if len(row) != DESCRIPTOR_SIZE:
                raise ValueError(f"each row must hold {DESCRIPTOR_SIZE} numbers")
            if not all(math.isfinite(x) for x in row):
                raise ValueError("rows must hold finite numbers")
        affine = self.affine
        if affine is not None and (len(affine) != DESCRIPTOR_SIZE or not all(map(math.isfinite, affine))):
            raise ValueError(f"affine must hold {DESCRIPTOR_SIZE} finite numbers")
        if self.patches is not None:
            if len(self.patches) > PATCHES_MAX_CHARS:
                raise ValueError(f"patches: at most {PATCHES_MAX_CHARS} characters (a capped upload's signal)")
            PatchSignal.decode(self.patches)  # a SignalError (ValueError) says why, with a reason code
        return self


class Admission:
    """The bounded queue: places for ``workers`` running and ``queue`` waiting requests."""

    def __init__(self, workers: int, queue: int) -> None:
        self.capacity = workers + queue
        self.admitted = 0
        self.running = 0
        self._lock = threading.Lock()

    def try_enter(self) -> bool:
        with self._lock:
            if self.admitted >= self.capacity:
                return False
            self.admitted += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.admitted -= 1

    def started(self, delta: int) -> None:
        with self._lock:
            self.running += delta

    @property
    def depth(self) -> int:
        """Requests admitted and not yet running on a worker (receiving their upload or waiting)."""
        with self._lock:
            return self.admitted - self.running


@dataclass
class Metrics:
    registry: Any = field(default=None)

    def __post_init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "meshscan_serve_requests", "HTTP requests answered", ["endpoint", "status"], registry=self.registry
        )
        self.scan_seconds = Histogram(
            "meshscan_serve_scan_seconds",
            "Seconds to scan one upload (after it was received)",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.verdicts = Counter("meshscan_serve_verdicts", "Records returned by verdict", ["verdict"],
                                registry=self.registry)  # fmt: skip
        self.refused = Counter("meshscan_serve_refused", "Requests refused because the queue was full",
                               registry=self.registry)  # fmt: skip
        self.library_reloads = Counter("meshscan_serve_library_reloads", "Library reload attempts by result "
                                       "(swapped, unchanged, refused)", ["result"], registry=self.registry)  # fmt: skip

    def count_reload(self, attempt: ReloadAttempt) -> None:
        result = "refused" if not attempt.ok else "swapped" if attempt.swapped else "unchanged"
        self.library_reloads.labels(result).inc()


KNOWN_PATHS = ("/v1/status", "/v1/scan", "/v1/hash", "/v1/lookup", "/metrics", "/openapi.json", "/docs")


class CountRequests:
    """ASGI middleware: count each answered request by endpoint (unknown paths are ``other``,
    so a scanner of URLs cannot blow up the label set) and status."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        endpoint = path if path in KNOWN_PATHS else "other"
        status = {"code": 500}

        async def send_counting(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counting)
        finally:
            self.metrics.requests.labels(endpoint, str(status["code"])).inc()


@dataclass
class Served:
    """What the routes of one app share: its settings, the admission queue, the scan threads,
    the metrics and the loaded library (with its forked workers)."""

    config: ServeConfig
    admission: Admission
    executor: ThreadPoolExecutor
    metrics: Metrics
    holder: LibraryHolder

    @classmethod
    def start(cls, config: ServeConfig) -> Served:
        """The first workers are forked now, before the server has threads; the scanner's
        loaded library and model are shared. A reload forks the next generation beside them
        (:mod:`scanner.serve.reload`)."""
        metrics = Metrics()
        holder = LibraryHolder(config.scanner, config.workers, config.library_path, config.reload_poll_seconds,
                               on_attempt=metrics.count_reload)  # fmt: skip
        executor = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix="meshscan-scan")
        return cls(config, Admission(config.workers, config.queue), executor, metrics, holder)

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        """SIGHUP reloads while serving (``--reload-library``); at the end, every worker,
        thread and the recorder are shut down."""
        if self.holder.enabled:
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.holder.request, "SIGHUP")
            self.holder.start()
        yield
        if self.holder.enabled:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.holder.close()
        if self.config.recorder is not None:
            self.config.recorder.close()

    def authorised(self, request: Request) -> None:
        """The dependency of every endpoint that reads an upload or a lookup: a bearer key whose
        digest is one of the configured digests (nothing to check without keys)."""
        digests = self.config.api_key_digests
        if digests is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        given = key_digest(key.strip()) if scheme.lower() == "bearer" else b""
        # compare against every key, whichever matches, so the time taken says nothing
        ok = False
        for digest in digests:
            ok |= hmac.compare_digest(given, digest)
        if not ok:
            raise HTTPException(401, "[unauthorised] send an API key: Authorization: Bearer KEY",
                                headers={"WWW-Authenticate": "Bearer"})  # fmt: skip

    async def receive_upload(self, request: Request, name: str | None) -> SpooledUpload:
        limit = self.config.max_upload_bytes
        check_declared_length(request.headers.get("content-length"), limit)
        return await spool(request.stream(), request.headers.get("content-type", ""), name, limit)

    async def admitted(self, request: Request, name: str | None, work: Callable[[SpooledUpload], Any]) -> Any:
        """Admit, receive the upload, run ``work(upload)`` on a scan thread, always clean up."""
        if not self.admission.try_enter():
            self.metrics.refused.inc()
            return JSONResponse(
                {"detail": "[busy] every worker is busy and the queue is full; retry later", "reason": "busy"},
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
        upload = None
        try:
            upload = await self.receive_upload(request, name)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.executor, _running, self.admission, work, upload)
        finally:
            if upload is not None:
                upload.cleanup()
            self.admission.leave()

    def status(self) -> dict[str, Any]:
        library = self.holder.status()
        return {
            "scanner_version": __version__,
            "library_version": library["library_version"],
            "library_loaded_at": library["library_loaded_at"],
            "library_reload": library["library_reload"],
            "descriptor_version": DESCRIPTOR_VERSION,
            "model_version": self.holder.current.scanner.model_version,
            "workers": self.config.workers,
            "queue_capacity": self.config.queue,
            "queue_depth": self.admission.depth,
            "in_flight": self.admission.running,
            "max_upload_bytes": self.config.max_upload_bytes,
            "auth": self.config.api_key_digests is not None,
            "db": self.config.recorder is not None,
        }

    def scan_work(self, upload: SpooledUpload) -> dict[str, Any]:
        started = time.monotonic()
        with self.holder.use() as gen:  # a reload meanwhile: this upload finishes with this library
            verdicts = gen.workers.scan(upload.path)
        for v in verdicts:
            v.path = upload.name  # the client's name, never the temporary file
        self.metrics.scan_seconds.observe(time.monotonic() - started)
        for v in verdicts:
            self.metrics.verdicts.labels(v.verdict).inc()
        if self.config.recorder is not None:
            self.config.recorder.submit(upload.sha256, upload.name, upload.size, verdicts)
        return {"records": [v.to_dict() for v in verdicts]}

    def hash_work(self, upload: SpooledUpload) -> dict[str, Any]:
        with self.holder.use() as gen:
            signals, error = isolated_hash(gen.scanner, upload.path)
        return {"name": upload.name, "signals": signals, "error": error}

    def lookup(self, body: LookupSignals) -> dict[str, Any]:
        signals = Signals.from_dict(body.model_dump())
        with self.holder.use() as gen:
            matches = gen.scanner.lookup(signals)
        # each match exactly as a verdict record holds it (a non-local match without the local fields)
        return {"matches": [match_dict(m) for m in matches], "notes": signals.notes()}


def create_app(config: ServeConfig) -> FastAPI:
    """The app for one loaded scanner. Nothing here binds a socket: ``meshscan serve`` runs it."""
    served = Served.start(config)
    app = FastAPI(
        lifespan=served.lifespan,
        title="meshscan",
        version=__version__,
        description="Scan 3D model uploads for blueprints of essential firearm components, for human review.",
    )
    app.state.config, app.state.admission, app.state.metrics = config, served.admission, served.metrics
    app.state.library = served.holder
    app.add_middleware(CountRequests, metrics=served.metrics)
    app.add_exception_handler(UploadError, _upload_error)
    _add_status_route(app, served)
    _add_upload_routes(app, served)
    _add_lookup_route(app, served)
    _add_metrics_route(app, served)
    if config.review is not None:
        from scanner.review.web.app import review_router

        app.include_router(review_router(config.review))
    return app


async def _upload_error(request: Request, exc: UploadError) -> JSONResponse:
    """An upload refused while it is read (too large, malformed): its status and reason code."""
    headers = {"Connection": "close"} if exc.status == 413 else None
    return JSONResponse({"detail": str(exc), "reason": exc.reason}, status_code=exc.status, headers=headers)


def _add_status_route(app: FastAPI, served: Served) -> None:
    @app.get("/v1/status", summary="Versions, workers and queue", response_model=StatusBody)
    def status() -> dict[str, Any]:
        return served.status()


def _add_upload_routes(app: FastAPI, served: Served) -> None:
    """``/v1/scan`` and ``/v1/hash``: both admitted, streamed to a temporary file, answered
    from a scan thread (:meth:`Served.admitted`)."""

    @app.post("/v1/scan", summary="Scan one upload", dependencies=[Depends(served.authorised)],
              responses=UPLOAD_REFUSALS | AUTH_REFUSAL,
              openapi_extra={"requestBody": UPLOAD_BODY, **scan_responses()})  # fmt: skip
    async def scan(request: Request, name: str | None = Query(None, max_length=4096)) -> Any:
        """The records of ``meshscan scan --format json`` for one upload (one per mesh or archive
        member); an upload that cannot be read is a record with verdict ``unscannable``."""
        return await served.admitted(request, name, served.scan_work)

    @app.post("/v1/hash", summary="Signals of one upload, without matching", dependencies=[Depends(served.authorised)],
              response_model=HashBody, responses=UPLOAD_REFUSALS | AUTH_REFUSAL,
              openapi_extra={"requestBody": UPLOAD_BODY})  # fmt: skip
    async def hash_(request: Request, name: str | None = Query(None, max_length=4096)) -> Any:
        """Hashes, descriptor rows and patch codes of each mesh of the upload; send one to ``/v1/lookup``.
        Meshes that cannot be read are left out; ``error`` says why when nothing could be hashed
        at all (time or memory limit, a crashed worker)."""
        return await served.admitted(request, name, served.hash_work)


def _add_lookup_route(app: FastAPI, served: Served) -> None:
    @app.post("/v1/lookup", summary="Match one mesh's signals", dependencies=[Depends(served.authorised)],
              responses=LOOKUP_REFUSALS, openapi_extra=lookup_responses())  # fmt: skip
    def lookup(signals: LookupSignals) -> dict[str, Any]:
        """Matches of the signals against the library, as a scan of the file matches: exact identity
        first, then near duplicates, then local patches; ``notes`` say what the signals could not
        show (``no-patch-codes``, ``no-affine-row``: older signals find no local or stretched
        match; ``patches-sampled``: a large mesh's signals carry part of its patch codes)."""
        return served.lookup(signals)


def _add_metrics_route(app: FastAPI, served: Served) -> None:
    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(served.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def _running(admission: Admission, work: Any, upload: SpooledUpload) -> Any:
    admission.started(+1)
    try:
        return work(upload)
    finally:
        admission.started(-1)


def isolated_hash(scanner: Scanner, path: str) -> tuple[list[dict[str, Any]], dict[str, str] | None]:
    """``Scanner.hash`` in a forked child under the scan limits (time, address space), so a
    hostile upload cannot hang or crash the server. The child answers in JSON, never pickle."""
    limits = scanner.settings.limits
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_hash_child, args=(scanner, path, child, limits.max_memory_bytes), daemon=True)
    proc.start()
    child.close()
    try:
        if parent.poll(limits.max_seconds):
            try:
                answer = json.loads(parent.recv_bytes())
                return answer["signals"], answer["error"]
            except (EOFError, OSError):
                pass
        proc.join(0.5)
        if proc.is_alive():
            return [], {"reason": LIMIT_TIME, "detail": f"no result within {limits.max_seconds:g} s"}
        return [], {"reason": WORKER_CRASHED, "detail": f"the worker process died (exit code {proc.exitcode})"}
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        parent.close()


def _hash_child(scanner: Scanner, path: str, conn: Any, memory_bytes: int | None) -> None:
    one_blas_thread()
    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    answer: dict[str, Any] = {"signals": [], "error": None}
    try:
        answer["signals"] = [s.to_dict() for s in scanner.hash(path)]
    except MemoryError:
        answer["error"] = {"reason": LIMIT_MEMORY, "detail": "memory cap reached"}
    except Exception as exc:  # noqa: BLE001 - a bug or an unreadable file: reported, never the server's end
        answer["error"] = {"reason": CORRUPT, "detail": f"could not hash the upload: {exc}"}
    conn.send_bytes(json.dumps(answer).encode())
    conn.close()
    os._exit(0)
