"""``meshscan serve --reload-library``: load the signature library again (on SIGHUP, or when the
folder's ``manifest.json`` changes) and swap it in without dropping a request.

Why generations: the scan workers are forked from the server and hold the library they were
forked with, so a new library needs new workers. A :class:`Generation` is one loaded scanner and
its pool of workers; a request takes the current generation when it starts and keeps it until it
is answered. A reload builds and forks the next generation beside the running one, makes it
current (new requests get it), and retires the old one: its workers are stopped as soon as its
last request in flight has been answered, so that request finishes with the library it started
with. (While both run there are up to twice ``--workers`` processes, sharing memory
copy-on-write; the old ones are idle or finishing.)

A library that fails verification, cannot be read, or holds no signatures is refused: the
running generation stays, the refusal is logged and ``/v1/status`` shows it. A reload never
stops the server and never leaves it without a library.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanner.api import Scanner
from scanner.library_change import ChangeDetector, LibraryUnavailable, Stamp, library_stamp, load_library
from scanner.serve.workers import ServeWorkers
from scanner.util import utc_now

log = logging.getLogger("meshscan.serve")


@dataclass(eq=False)
class Generation:
    """One loaded library: the scanner (lookups, hashing) and the scan workers forked with it."""

    scanner: Scanner
    workers: ServeWorkers
    loaded_at: str = field(default_factory=lambda: utc_now(zulu=True))
    active: int = 0
    """Requests that took this generation and are not answered yet."""
    retired: bool = False


@dataclass
class ReloadAttempt:
    at: str
    trigger: str
    ok: bool
    swapped: bool = False
    """ok and a new library is in use (ok and not swapped: the folder holds the running version)."""
    library_version: str | None = None
    """The version loaded (ok), or the one that was on disk when it was refused, if known."""
    error: str | None = None
    transient: bool = field(default=False, repr=False)
    """Refused because the folder could not be read just now (retried), not because it is bad;
    internal (not in /v1/status)."""

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "transient"}


class LibraryHolder:
    """The current generation, swapped by :meth:`reload`; :meth:`use` lends it to one request."""

    def __init__(self, scanner: Scanner, workers: int, library_path: str | os.PathLike[str] | None,
                 poll_seconds: float = 0.0,
                 on_attempt: Callable[[ReloadAttempt], None] | None = None) -> None:  # fmt: skip
        self.n_workers = workers
        self.library_path = Path(library_path) if library_path is not None else None
        self.poll_seconds = poll_seconds
        self.on_attempt = on_attempt
        """Called with each attempt's outcome (the server counts them in /metrics)."""
        self.attempts = 0
        self.last: ReloadAttempt | None = None
        self._lock = threading.Lock()
        self._reload_lock = threading.Lock()
        self._retired: list[Generation] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending: list[str] = []
        self.current = Generation(scanner, self._pool(scanner))

    @property
    def enabled(self) -> bool:
        return self.library_path is not None

    def _pool(self, scanner: Scanner) -> ServeWorkers:
        limits = scanner.settings.limits
        return ServeWorkers(scanner._context, self.n_workers, limits.max_seconds, limits.max_memory_bytes)

    @contextlib.contextmanager
    def use(self) -> Iterator[Generation]:
        """The current generation, kept alive (its workers running) until the block ends."""
        with self._lock:
            gen = self.current
            gen.active += 1
        try:
            yield gen
        finally:
            with self._lock:
                gen.active -= 1
                done = gen.retired and gen.active == 0 and gen in self._retired
                if done:
                    self._retired.remove(gen)
            if done:
                gen.workers.close()
                log.info("meshscan serve: workers of library %s stopped: their last request was answered",
                         gen.scanner.library_version)  # fmt: skip

    def reload(self, trigger: str, stamp: Stamp | None = None) -> ReloadAttempt:
        """Load the library folder again (the one ``stamp`` saw, if given) and swap it in; refuse
        it (keeping the running one) if it fails verification, cannot be read or is empty.
        Never raises. A poll (``stamp`` given) leaves logging a transient failure to its
        :class:`~scanner.library_change.ChangeDetector`, which retries it without flooding."""
        from scanner.library import LibraryError

        assert self.library_path is not None
        with self._reload_lock:
            old = self.current
            version: str | None = None
            recorded = False
            try:
                # a subscribed library is a symlink that 'signatures update' swaps: load the
                # folder it points at now, so a swap during the load cannot mix two versions
                lib = load_library(self.library_path, stamp)
                version = lib.library_version
                if len(lib) == 0:
                    raise LibraryError(f"library {self.library_path} holds no signatures: not swapping it in")
                if version == old.scanner.library_version:
                    attempt = ReloadAttempt(utc_now(zulu=True), trigger, True, False, version)
                else:
                    scanner = Scanner(library=lib, model=old.scanner._context.model, settings=old.scanner.settings)
                    gen = Generation(scanner, self._pool(scanner))
                    attempt = ReloadAttempt(gen.loaded_at, trigger, True, True, version)
                    with self._lock:  # the swap and its record are seen together in /v1/status
                        self.current = gen
                        self.attempts += 1
                        self.last, recorded = attempt, True
                        old.retired = True
                        idle = old.active == 0
                        if not idle:
                            self._retired.append(old)
                    if idle:
                        old.workers.close()
                        log.info("meshscan serve: workers of library %s stopped: they were idle",
                                 old.scanner.library_version)  # fmt: skip
            except LibraryError as exc:
                attempt = ReloadAttempt(utc_now(zulu=True), trigger, False, False, version, f"[library] {exc}",
                                        isinstance(exc, LibraryUnavailable))  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - a reload must never take the server down
                attempt = ReloadAttempt(utc_now(zulu=True), trigger, False, False, version, f"[internal] {exc!r}")
            if not recorded:
                with self._lock:
                    self.attempts += 1
                    self.last = attempt
        if self.on_attempt is not None:
            self.on_attempt(attempt)
        if attempt.ok:
            outcome = f"swapped in (was {old.scanner.library_version})" if attempt.swapped else "unchanged"
            log.info("meshscan serve: library reload (%s): %s %s", trigger, attempt.library_version, outcome)
        elif not (attempt.transient and stamp is not None):
            log.error("meshscan serve: library reload (%s) refused, keeping %s: %s", trigger,
                      old.scanner.library_version, attempt.error)  # fmt: skip
        return attempt

    def status(self) -> dict[str, Any]:
        with self._lock:
            gen, last, attempts = self.current, self.last, self.attempts
        return {
            "library_version": gen.scanner.library_version,
            "library_loaded_at": gen.loaded_at,
            "library_reload": {
                "enabled": self.enabled,
                "poll_seconds": self.poll_seconds if self.enabled else None,
                "attempts": attempts,
                "last": last.to_dict() if last is not None else None,
            },
        }

    # -- triggers ---------------------------------------------------------------------------

    def request(self, trigger: str) -> None:
        """Ask the reload thread for a reload (safe from the event loop: it only sets an event)."""
        self._pending.append(trigger)
        self._wake.set()

    def start(self) -> None:
        """Start the reload thread: it reloads when asked (:meth:`request`) and, every
        ``poll_seconds`` (if > 0), when the library changed since it last looked: its
        ``manifest.json`` (``signatures add`` writes it last, so a changed manifest is a finished
        update) or the folder its symlink leads to (``signatures update``), the same change
        detection as ``watch`` (:mod:`scanner.library_change`). A load that failed for a transient
        reason is tried again on a later poll, at most once a second."""
        if not self.enabled or self._thread is not None:
            return
        changes = ChangeDetector(self.library_path, log)
        changes.seen(library_stamp(self.library_path))  # the library loaded at start-up
        self._thread = threading.Thread(target=self._run, args=(changes,), name="meshscan-reload", daemon=True)
        self._thread.start()

    def _run(self, changes: ChangeDetector) -> None:
        assert self.library_path is not None
        while not self._stop.is_set():
            woke = self._wake.wait(self.poll_seconds if self.poll_seconds > 0 else None)
            if self._stop.is_set():
                return
            if woke:
                self._wake.clear()
                triggers, self._pending = self._pending, []
                changes.seen(library_stamp(self.library_path))
                self.reload(triggers[0] if triggers else "signal")
                continue
            stamp = changes.pending()
            if stamp is not None:
                attempt = self.reload("manifest changed", stamp)
                if attempt.transient:
                    changes.failed(attempt.error or "")
                else:
                    changes.seen(stamp)

    def close(self) -> None:
        """Stop the reload thread and every generation's workers (at server shutdown)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
        with self._lock:
            gens = [self.current, *self._retired]
            self._retired = []
        for gen in gens:
            gen.workers.close()
