"""The watch loop: intake -> settle -> worker pool -> journal -> actions, in one thread.

Observer threads (:mod:`scanner.watch.intake`) only queue events; the webhook sender runs in
its own thread with its own database connection; commands run one at a time in a helper
thread. Everything else - settling, submitting, recording, quarantining - happens here, in
order, so the state needs no locks.

Start-up order is what makes a restart lose nothing: (1) append log lines a crash left
unwritten, (2) finish actions a crash left pending, (3) start the observers, (4) reconcile:
list the folders and queue every file without a current verdict (arrived while the daemon was
down, or announced by an event that was lost). Reconciliation runs again every
``reconcile_every`` seconds and at once when inotify reports a queue overflow.

A file is scanned only if it is the same (size, mtime) after the scan as before it: a file
that changed during its scan is not recorded and is looked at again; one deleted before or
during its scan is dropped quietly.

The library is reloaded without a restart (:mod:`scanner.watch.reload`): the once-a-second
housekeeping notices that the library on disk holds another version (``signatures update``
swapped it, ``signatures add`` rewrote it), loads and verifies it, and stops handing out files;
once the running scans are recorded the workers are forked again with the new library and
scanning resumes - no file is dropped or scanned twice, each verdict names the library that
judged it. A library that cannot be used is refused and the running one kept.

Several daemons may share one PostgreSQL state (:mod:`scanner.watch.leases`): each claims a
file before scanning it and an action before performing it, renews its claims from this loop,
and records a verdict only in the transaction that gives its claim back; a file another daemon
holds is asked for again when that daemon's lease runs out.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from scanner._version import __version__
from scanner.batch import Upload, walk_skip_reason
from scanner.context import ScanContext
from scanner.engines.local import Done, LocalPool
from scanner.sinks.quarantine import ContentChanged, QuarantineError, SourceGone, quarantine_once
from scanner.sinks.webhook import Outbox, OutboxSender, RetryPolicy
from scanner.store.backend import DB_ERRORS, display_name, is_postgres_url
from scanner.verdict import Verdict
from scanner.watch import journal as J
from scanner.watch.actions import ActionPlan, CommandRunner, backoff, quarantine_problem
from scanner.watch.health import STARTING, assess
from scanner.watch.intake import Observers, OverflowAlarm, Waker, poll_plan
from scanner.watch.leases import ACTION, FILE, LEASE, Held, Leases, SharedOutbox
from scanner.watch.metrics import Metrics
from scanner.watch.notify import notify
from scanner.watch.reload import LibraryWatch, Refusal
from scanner.watch.roots import CANARY_GRACE, DOWN, Canary, RootMonitor
from scanner.watch.settle import Ready, SettleConfig, SettleHandler, regular_file_stat

log = logging.getLogger("meshscan.watch")


@dataclass
class WatchConfig:
    roots: list[str]
    state: str
    log: str | None = None
    plan: ActionPlan = field(default_factory=ActionPlan)
    jobs: int = 2
    settle: SettleConfig = field(default_factory=SettleConfig)
    reconcile_every: float = 60.0
    once: bool = False
    command_timeout: float = 30.0
    action_backoff_cap: float = 300.0
    """Longest wait between two attempts of a failing quarantine or command. Actions never give
    up: a failed one stays pending and is retried (2 s, 4 s, ... this cap) for as long as the
    daemon runs, and at once at the next start; ``meshscan watch --actions`` lists them."""
    stuck_after: float = 3600.0
    """A file waiting this long for its verdict means the daemon is stuck: unhealthy, no
    watchdog ping (:mod:`scanner.watch.health`)."""
    actions_stuck_after: float = 3600.0
    """An action pending this long (it keeps failing) makes the daemon unhealthy."""
    poll: float | None = None
    """``--poll``: seconds between listings of every folder (a polling observer instead of
    inotify); None: only folders on network or FUSE file systems are polled; 0: none."""
    quarantine_check: str = "refuse"
    """At start-up, a quarantine folder that is missing or not writable: ``refuse`` to start
    (exit 3), or ``warn`` (log an error and keep the quarantines pending until it is fixed)."""
    outbox_max: int = 10_000
    webhook: RetryPolicy = field(default_factory=RetryPolicy)
    stale_partial: float = 3600.0
    """A file under a temporary name left unchanged this long is scanned anyway (0: never): a
    temporary name must not be a way for an upload to escape the scan."""
    exclude_globs: tuple[str, ...] = ()
    """``--exclude``: paths (relative to their watched folder), names or folders never scanned,
    counted as ``scan --exclude`` counts them."""
    reload_library: bool = True
    """Switch to the library's new version when it changes on disk (not with ``once``)."""
    lease: float = LEASE
    """Seconds a claim on a shared (PostgreSQL) state lasts unless renewed
    (:data:`scanner.watch.leases.LEASE`; shorter only in tests)."""


HOUSEKEEPING_EVERY = 1.0
"""Seconds between checks of the watched folders (and health gauges, watchdog pings)."""
ACTION_POLL = 2.0
"""On a shared state: the longest wait before looking at the journal's actions again (other
daemons record actions too, and one of them may die before performing its own)."""


class StartError(Exception):
    """The daemon cannot start as configured (the message says why)."""


@dataclass
class Summary:
    counts: dict[str, int] = field(default_factory=lambda: {"flag": 0, "review": 0, "clear": 0, "unscannable": 0})
    files: int = 0
    errors: int = 0
    failed_actions: int = 0
    skipped: int = 0
    """Files not scanned: not a model by content, or ``--exclude`` (as ``scan`` skips them)."""


@dataclass
class _InFlight:
    upload: Upload
    stat: tuple[int, int]
    ready: Ready


class Watcher:
    def __init__(self, config: WatchConfig, context: ScanContext, metrics: Metrics | None = None) -> None:
        self.config, self.context = config, context
        self.metrics = metrics or Metrics()
        self.roots = [os.path.abspath(r) for r in config.roots]
        self.waker = Waker()
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.settle = SettleHandler(config.settle)
        self.ready: collections.deque[Ready] = collections.deque()
        self.ready_paths: set[str] = set()
        self.inflight: dict[str, _InFlight] = {}
        self.recorded: dict[str, tuple[int, int]] = {}
        self.summary = Summary()
        self.stopping = False
        self.reconcile_now = False
        self.next_reconcile = 0.0
        self.next_action_check = 0.0
        self._outbox_full_until = 0.0
        self._commands: dict[str, tuple[J.ActionRow, Future]] = {}
        self._failing: set[str] = set()
        """Actions whose last attempt failed (still pending): counted as failed by ``--once``."""
        self._executor: ThreadPoolExecutor | None = None
        self.journal: J.Journal | None = None
        self.pool: LocalPool | None = None
        self.outbox: Outbox | None = None
        self.sender: OutboxSender | None = None
        self.observers: Observers | None = None
        self.alarm = OverflowAlarm(self._events_lost)
        self.root_monitor = RootMonitor(self.roots)
        self.canary = Canary()
        self.health = STARTING
        """The last health decision (:mod:`scanner.watch.health`), taken by housekeeping."""
        self._deafen = False
        self._follow_up = 0.0
        """Monotonic time of the listing that follows a re-arm (see :meth:`_rearm`)."""
        self.next_housekeeping = 0.0
        self.library_watch: LibraryWatch | None = None
        self.next_context: ScanContext | None = None
        """A reloaded library's context, used once the running scans are recorded."""
        self.leases: Leases | None = None
        """This daemon's claims, on a state it may share (PostgreSQL); None on SQLite."""
        self.elsewhere: dict[str, tuple[float, Ready]] = {}
        """Files another daemon has claimed: asked for again at this monotonic time."""
        self._log_fd: int | None = None

    # ------------------------------------------------------------------ control (any thread / signal handler)
    def request_stop(self) -> None:
        self.stopping = True
        self.waker.wake()

    def request_reconcile(self) -> None:
        self.reconcile_now = True
        self.waker.wake()

    def _events_lost(self) -> None:
        """inotify overflowed (observer thread): files changed until now are not suspects of a
        deaf watch, and a listing finds them at once."""
        self.canary.events_lost(time.time())
        self.request_reconcile()

    def request_deafen(self) -> None:
        """Test hook (``MESHSCAN_WATCH_TEST_HOOKS``, SIGUSR2): every watch stops delivering
        events while it still runs, as a lost inotify watch does - for the canary's tests."""
        self._deafen = True
        self.waker.wake()

    # ------------------------------------------------------------------ run
    def run(self) -> Summary:
        cfg = self.config
        limits = self.context.settings.limits
        self.pool = LocalPool(self.context, cfg.jobs, limits.max_seconds, limits.max_memory_bytes, deaf_to_sigterm=True)
        self.pool.start()  # fork the workers before any thread or database exists in this process
        try:
            self.journal = J.Journal(cfg.state)
            self.recorded = self.journal.recorded(
                __version__, self.context.library_version, getattr(self.context, "model_version", None)
            )
            if is_postgres_url(cfg.state):
                self.leases = Leases(self.journal.conn, cfg.lease)
            if cfg.log:
                self._open_log(cfg.log)
            webhooks = any(i.kind == "webhook" for i in cfg.plan.intents)
            if self.leases is not None:
                self.outbox = SharedOutbox(cfg.state, cfg.webhook, cfg.outbox_max, cfg.lease)
            else:
                self.outbox = Outbox(cfg.state, cfg.webhook, cfg.outbox_max)
            if webhooks or self.outbox.pending():
                self.sender = OutboxSender(self.outbox)
                self.sender.start()
            self._check_quarantines()
            revived = self.journal.revive_actions()
            if revived:
                log.info("retrying pending actions", extra={"fields": {"actions": revived}})
            if any(i.kind == "command" for i in cfg.plan.intents) or self.journal.pending_action_count():
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="meshscan-command")
            self._actions()
            if not cfg.once:
                self._test_hooks()
                self.alarm.install()
                self._start_observers()
            fields = {"roots": self.roots, "state": display_name(cfg.state), "jobs": cfg.jobs,
                      "recorded": len(self.recorded), "once": cfg.once}  # fmt: skip
            if self.leases is not None:
                fields |= {"daemon": self.leases.owner, "lease_s": cfg.lease}
            log.info("watching", extra={"fields": fields})
            self.metrics.started(__version__, self.context.library_version,
                                 getattr(self.context, "model_version", None), self.roots)  # fmt: skip
            library = self.context.library
            if cfg.reload_library and not cfg.once and library is not None and library.path is not None:
                self.library_watch = LibraryWatch(library.path, self.context.library_version)
            self._reconcile()
            notify("READY=1")
            self._loop()
        finally:
            self._shutdown()
        self.summary.failed_actions = len(self._failing)
        return self.summary

    def _open_log(self, path: str) -> None:
        """Append verdicts to ``path``. On a shared state each daemon keeps its own log's end
        (by machine and path), and holds the log locked: two daemons writing one log would
        overwrite each other's lines."""
        if self.leases is None:
            self.journal.open_log(path)
            return
        import fcntl

        self._log_fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._log_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise StartError(f"another meshscan watch writes the log {path}: give each daemon its own --log") from None
        self.journal.open_log(path, key=f"log_position:{socket.gethostname()}:{path}")

    def _loop(self) -> None:
        while True:
            self.waker.clear()
            if self.leases is not None:
                self.leases.renew_due()
            self._drain_events()
            if not self.config.once and time.monotonic() >= self.next_housekeeping:
                self._housekeeping()
            if self.reconcile_now or (not self.config.once and time.monotonic() >= self.next_reconcile):
                self._reconcile()
            for r in self.settle.due() + self._asked_again():
                if r.path not in self.ready_paths:
                    self.ready.append(r)
                    self.ready_paths.add(r.path)
            if self.next_context is not None and not self.inflight and not self.stopping:
                self._switch_library()
            if not self.stopping:
                self._submit()
            self.metrics.queue(len(self.settle) + len(self.ready) + len(self.inflight))
            done = self.pool.collect(self._wait_timeout(), also=[self.waker.read_fd])
            if done:
                self._record(done)
            self._actions()
            if self.stopping and not self.inflight:
                break
            if self.config.once and self._idle():
                break

    def _idle(self) -> bool:
        return not (
            len(self.settle) or self.ready or self.inflight or self.elsewhere or self._commands or self._actions_due()
        )

    def _actions_due(self) -> bool:
        nxt = self.journal.next_action_at()
        return nxt is not None and nxt <= time.time()

    def _wait_timeout(self) -> float:
        if self.stopping:
            return 0.2
        waits = [1.0]
        nxt = self.settle.next_check()
        if nxt is not None:
            waits.append(nxt)
        if not self.config.once:
            waits.append(self.next_reconcile - time.monotonic())
        if self.ready and self.pool.idle and time.monotonic() < self._outbox_full_until:
            waits.append(self._outbox_full_until - time.monotonic())
        if self._commands:
            waits.append(0.1)
        if self.elsewhere:
            waits.append(min(t for t, _ in self.elsewhere.values()) - time.monotonic())
        if self.leases is not None:
            waits.append(self.leases.next_renewal - time.monotonic())
        waits.append(self.next_action_check - time.time())
        if not self.config.once:
            waits.append(self.next_housekeeping - time.monotonic())
        return max(0.0, min(waits))

    # ------------------------------------------------------------------ health
    def _test_hooks(self) -> None:
        """With ``MESHSCAN_WATCH_TEST_HOOKS`` set (tests only): SIGUSR2 deafens the watches."""
        if os.environ.get("MESHSCAN_WATCH_TEST_HOOKS") and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGUSR2, lambda *_: self.request_deafen())

    def _start_observers(self) -> None:
        polled = poll_plan(self.roots, self.config.poll)
        for root, every in polled.items():
            log.info("polling folder", extra={"fields": {"root": root, "every_s": every}})
        self.observers = Observers(self.events, self.waker, polled)
        self.observers.start(self.roots)
        for root in self.roots:
            self.canary.armed(root, time.time(), polled.get(root, 0.0))

    def _rearm(self, root: str) -> bool:
        """Watch ``root`` anew; False (logged, tried again at the next check) if it fails."""
        try:
            self.observers.rearm(root)
        except OSError as exc:
            log.error("cannot watch the folder again", extra={"fields": {"root": root, "error": str(exc)}})
            return False
        lag = self.observers.poll.get(root, 0.0)
        self.canary.armed(root, time.time(), lag)
        # the new watch starts in its own thread: a file arriving before it is armed has no event,
        # and may come after the listing asked for now - a second listing once it surely is armed
        self._follow_up = time.monotonic() + CANARY_GRACE + lag
        self.next_reconcile = min(self.next_reconcile, self._follow_up)
        return True

    def _housekeeping(self) -> None:
        """Once a second: are the roots still watched (re-arm those back, and watches that
        stopped or went deaf), the health gauges, the health decision and the systemd watchdog
        ping - sent only while healthy."""
        self.next_housekeeping = time.monotonic() + HOUSEKEEPING_EVERY
        if self._deafen:
            self._deafen = False
            self.observers.handler.deaf = self.observers.polled_handler.deaf = True
        for root, change in self.root_monitor.check():
            self._forget_under(root)  # whatever is there now is new: a new folder, new uploads
            if change == DOWN:
                log.error("watched folder gone", extra={"fields": {"root": root,
                          "detail": "files put there are not seen until it is back"}})  # fmt: skip
                continue
            if not self._rearm(root):
                self.root_monitor.armed[root] = None  # tried again at the next check
                continue
            log.warning("watched folder back", extra={"fields": {"root": root, "detail": "watching it again"}})
            self.request_reconcile()
        self._check_watches()
        self._check_library()
        self._assess()

    def _check_watches(self) -> None:
        """A watch whose emitter stopped, or that the listing caught missing files (the
        canary): an error line, the metric, and the folder watched anew."""
        for root in self.roots:
            if self.root_monitor.up(root) and not self.observers.alive(root):
                log.error("watch of the folder stopped; watching it again", extra={"fields": {"root": root}})
                if self._rearm(root):
                    self.request_reconcile()
        for root, paths in self.canary.due(time.time()).items():
            self.metrics.events_missed(root, len(paths))  # counted before the alarm line is seen
            log.error("events missed: the folder's watch is not delivering; watching it again",
                      extra={"fields": {"root": root, "files": len(paths), "examples": sorted(paths)[:3]}})  # fmt: skip
            self._rearm(root)

    def _assess(self) -> None:
        """The health decision (one definition: :func:`scanner.watch.health.assess`), its
        gauges, ``/healthz``, and the watchdog ping."""
        roots_up = {root: self.root_monitor.up(root) for root in self.roots}
        for root, up in roots_up.items():
            self.metrics.root_up(root, up)
        actions = self.journal.pending_by_kind()
        self.metrics.actions_pending(actions)
        oldest = self._oldest_waiting()
        self.metrics.oldest_pending(oldest)
        health = assess(roots_up, oldest, actions, self.config.stuck_after, self.config.actions_stuck_after)
        if health.ok != self.health.ok:
            level = logging.INFO if health.ok else logging.ERROR
            log.log(level, "healthy" if health.ok else "unhealthy", extra={"fields": {"reasons": list(health.reasons)}})
        self.health = health
        self.metrics.health(health)
        if not health.restart_helps:
            notify("WATCHDOG=1")

    # ------------------------------------------------------------------ library reload
    def _check_library(self) -> None:
        """Has the library on disk changed to another version? Then stop handing out files
        until the running scans are recorded (:meth:`_switch_library`); refuse a bad one."""
        if self.library_watch is None or self.next_context is not None:
            return
        found = self.library_watch.check()
        if found is None:
            return
        running = self.context.library_version
        if isinstance(found, Refusal):
            self.metrics.library(__version__, running, self.context.model_version, "refused")
            log.error("library reload refused; keeping the running library",
                      extra={"fields": {"library_version": running, "refused_version": found.library_version,
                                        "error": found.error}})  # fmt: skip
            return
        self.next_context = ScanContext(settings=self.context.settings, library=found, model=self.context.model)
        fields = {"from": running, "to": found.library_version, "running": len(self.inflight)}
        log.info("library changed; switching once the running scans are recorded", extra={"fields": fields})

    def _switch_library(self) -> None:
        """Fork the workers again with the new library (none is scanning: nothing is lost)."""
        new, old = self.next_context, self.context
        assert new is not None
        self.next_context = None
        self.pool.switch(new)
        self.context = new
        self.library_watch.accepted(new.library_version)
        self.metrics.library(__version__, new.library_version, new.model_version, "swapped")
        log.info("library reloaded", extra={"fields": {"library_version": new.library_version,
                 "was": old.library_version, "signatures": len(new.library)}})  # fmt: skip

    def _oldest_waiting(self) -> float:
        """Seconds the oldest file has waited for its verdict (0 when none waits)."""
        now = time.monotonic()
        firsts = [p.first_seen for p in self.settle.pending.values() if not self.settle.waits_for_writer(p)]
        firsts += [r.first_seen for r in self.ready] + [i.ready.first_seen for i in self.inflight.values()]
        return max(0.0, now - min(firsts)) if firsts else 0.0

    def _forget_under(self, root: str) -> None:
        """The folder's files are gone (or are another folder's): nothing recorded there stands."""
        prefix = root.rstrip(os.sep) + os.sep
        gone = [p for p in self.recorded if p.startswith(prefix)]
        for path in gone:
            self.recorded.pop(path, None)
            self.journal.conn.execute(
                "UPDATE watch_files SET state = ? WHERE path = ? AND state = ?", (J.DELETED, path, J.SCANNED)
            )
        if gone:
            self.journal.commit()

    # ------------------------------------------------------------------ intake
    def _drain_events(self) -> None:
        deleted = []
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
            self.settle.dispatch(event)
            self.canary.heard(os.fsdecode(event.src_path))
            if event.event_type == "moved":
                self.canary.heard(os.fsdecode(event.dest_path))
            if event.event_type in ("deleted", "moved"):  # the path no longer holds what was scanned
                gone = os.fsdecode(event.src_path)
                if event.is_directory:
                    prefix = gone.rstrip(os.sep) + os.sep
                    deleted += [p for p in self.recorded if p.startswith(prefix)]
                elif gone in self.recorded:
                    deleted.append(gone)
                if event.event_type == "moved" and not event.is_directory:
                    self.recorded.pop(os.fsdecode(event.dest_path), None)  # renamed over: new content
        for path in deleted:
            self.recorded.pop(path, None)
        if deleted:
            for path in deleted:
                self.journal.conn.execute(
                    "UPDATE watch_files SET state = ? WHERE path = ? AND state = ?", (J.DELETED, path, J.SCANNED)
                )
            self.journal.commit()

    def _reconcile(self) -> None:
        """List the folders; queue every wanted file that has no verdict for its current state."""
        started, listed_at = time.monotonic(), time.time()
        self.metrics.reconciled(listed_at)
        self.reconcile_now = False
        self.next_reconcile = started + self.config.reconcile_every
        if self._follow_up > started:  # a watch armed just now: list again once it surely runs
            self.next_reconcile = min(self.next_reconcile, self._follow_up)
        busy = set(self.settle.pending) | self.ready_paths | set(self.inflight) | set(self.elsewhere)
        exclude = tuple(e.rstrip(os.sep) for e in self.config.settle.exclude)
        queued = files = 0
        for root in self.roots:
            for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if os.path.join(dirpath, d) not in exclude)
                for name in sorted(filenames):
                    path = os.path.join(dirpath, name)
                    if path in busy or self.settle.excluded(path):
                        continue
                    wanted = self.settle.wanted(path)
                    if not wanted and not self.config.stale_partial:
                        continue
                    st = regular_file_stat(path)
                    if st is None:
                        continue
                    if not wanted:  # a temporary name: an upload only if abandoned under it
                        if time.time() - st[1] / 1e9 < self.config.stale_partial:
                            continue
                        if self.recorded.get(path) != st:
                            log.info("stale temporary file", extra={"fields": {"path": path}})
                    files += 1
                    if self.recorded.get(path) == st:
                        continue
                    self.settle.seen(path, st)
                    queued += 1
                    if wanted and self.observers is not None:
                        self._cross_check(root, path, listed_at)
        level = logging.INFO if queued else logging.DEBUG
        log.log(level, "reconciled", extra={"fields": {"files": files, "queued": queued,
                                                       "ms": round(1000 * (time.monotonic() - started))}})  # fmt: skip

    def _cross_check(self, root: str, path: str, listed_at: float) -> None:
        """The listing queued a file no event announced: a suspect for the canary."""
        try:
            ctime = os.lstat(path).st_ctime
        except OSError:
            return
        self.canary.listed(root, path, ctime, listed_at, self.observers.poll.get(root, 0.0))

    # ------------------------------------------------------------------ scanning
    def _root_of(self, path: str) -> str:
        return max(
            (r for r in self.roots if path.startswith(r.rstrip(os.sep) + os.sep)), key=len, default=self.roots[0]
        )

    def _submit(self) -> None:
        if self.next_context is not None:
            return  # a new library is waiting for the running scans to finish
        if self.ready and self.pool.idle and self.outbox is not None and self.sender is not None:
            now = time.monotonic()
            if now < self._outbox_full_until:
                return
            if self.outbox.full():
                self._outbox_full_until = now + 1.0
                log.warning("webhook outbox full: not scanning until it drains",
                            extra={"fields": {"pending": self.outbox.max_pending}})  # fmt: skip
                return
        held = []
        while self.ready and self.pool.idle:
            r = self.ready.popleft()
            if r.path in self.inflight:
                held.append(r)  # scanned again once the running scan is in
                continue
            self.ready_paths.discard(r.path)
            try:
                lst = os.lstat(r.path)
            except OSError:
                log.debug("dropped", extra={"fields": {"path": r.path, "why": "deleted before its scan"}})
                continue
            st = regular_file_stat(r.path)
            if st is None:
                log.info(
                    "skipped", extra={"fields": {"path": r.path, "why": "not a regular file", "mode": lst.st_mode}}
                )
                continue
            if self.recorded.get(r.path) == st:
                continue  # nothing changed since its verdict (an attribute change, a duplicate event)
            if r.path in self.settle.pending:
                continue  # written again since it fell due: the new write decides when it is complete
            if r.stat is not None and st != r.stat:
                self.settle.seen(r.path)  # changed since it was judged complete: let it settle again
                continue
            upload = Upload(r.path, self._root_of(r.path))
            why = self._skip_reason(upload)
            if why is not None:  # the same rule as `scan DIR` (scanner.batch.walk_skip_reason)
                self.recorded[r.path] = st  # not looked at again until it changes
                self.summary.skipped += 1
                log.info("skipped", extra={"fields": {"path": r.path, "why": why}})
                continue
            if self.leases is not None and not self._claim(r, st):
                continue
            self.inflight[r.path] = _InFlight(upload, st, r)
            self.pool.submit(upload)
            log.debug("scanning", extra={"fields": {"path": r.path, "how": r.how}})
        for r in held:
            self.ready.append(r)

    def _claim(self, r: Ready, st: tuple[int, int]) -> bool:
        """Claim the file before scanning it (a shared state): False when another daemon holds
        it (asked for again when its lease runs out), has recorded it meanwhile, or it changed."""
        got = self.leases.take(FILE + r.path)
        if isinstance(got, Held):
            wait = min(got.remaining, self.config.lease) + 0.25
            self.elsewhere[r.path] = (time.monotonic() + wait, r)
            log.debug("claimed elsewhere", extra={"fields": {"path": r.path, "by": got.owner, "ask_in_s": wait}})
            return False
        if got.previous:
            log.info("claim taken over", extra={"fields": {"path": r.path, "from": got.previous}})
        now = regular_file_stat(r.path)
        done = self.journal.recorded_one(r.path, __version__, self.context.library_version,
                                         getattr(self.context, "model_version", None))  # fmt: skip
        if now is not None and now == st and done == st:
            self.leases.drop(FILE + r.path)
            self.recorded[r.path] = st  # another daemon's verdict stands
            log.debug("recorded elsewhere", extra={"fields": {"path": r.path}})
            return False
        if now != st:
            self.leases.drop(FILE + r.path)
            if now is not None:
                self.settle.seen(r.path)  # changed since it was judged complete: let it settle again
            return False
        return True

    def _asked_again(self) -> list[Ready]:
        """Files another daemon held whose lease has run out since: ask for them again."""
        now = time.monotonic()
        due = [path for path, (at, _) in self.elsewhere.items() if at <= now]
        return [self.elsewhere.pop(path)[1] for path in due]

    def _skip_reason(self, upload: Upload) -> str | None:
        return walk_skip_reason(upload.path, upload.root, self.config.exclude_globs)[0]

    def _record(self, done: list[Done]) -> None:
        """Record finished scans (unless the file changed or vanished meanwhile) in one
        transaction with their log lines and action intents; see :mod:`scanner.watch.journal`."""
        keep = []
        for d in done:
            item = self.inflight.pop(d.upload.path)
            path = d.upload.path
            after = regular_file_stat(path)
            if after is None:
                log.debug("dropped", extra={"fields": {"path": path, "why": "deleted during its scan"}})
                self._drop_claim(FILE + path)
                continue
            if after != item.stat:
                log.info("rescan", extra={"fields": {"path": path, "why": "changed during its scan"}})
                self._drop_claim(FILE + path)
                self.settle.seen(path)
                continue
            keep.append((d, item, self.config.plan.for_verdicts(d.verdicts)))
        if not keep:
            return
        self.journal.durable(any(intents for _, _, intents in keep))
        lines, kept = [], []
        for d, item, intents in keep:
            if self.leases is not None and not self.leases.release(FILE + d.upload.path):
                log.warning("claim lost; verdict not recorded", extra={"fields": {"path": d.upload.path,
                            "why": "its lease ran out and another daemon took the file over"}})  # fmt: skip
                continue
            kept.append((d, item, intents))
            seen_wall = time.time() - (time.monotonic() - item.ready.since)
            self.journal.record_scan(d.upload.path, d.upload.root, item.stat, d.verdicts, intents, seen_wall)
            self.recorded[d.upload.path] = item.stat
            lines += [json.dumps(v.to_dict()) for v in d.verdicts]
        if self.config.log:
            self.journal.append_log(lines)
        self.journal.commit()
        if not self.config.log:
            sys.stdout.write("".join(line + "\n" for line in lines))
            sys.stdout.flush()
        now = time.monotonic()
        for d, item, intents in kept:
            self._count(d.verdicts)
            worst = min((v.verdict for v in d.verdicts), key=("flag", "review", "unscannable", "clear").index)
            latency = self._latency(d.upload.path, now - item.ready.since)
            self.metrics.scanned(worst, latency, d.seconds)
            fields = {"path": d.upload.path, "verdict": worst, "how": item.ready.how,
                      "scan_ms": round(1000 * d.seconds), "latency_ms": round(1000 * latency)}  # fmt: skip
            if worst == "unscannable":
                fields["reason"] = d.verdicts[0].reason
            if intents:
                fields["actions"] = [i.kind for i in intents]
            log.info("scanned", extra={"fields": fields})
            if any(i.kind != "webhook" for i in intents):
                self.next_action_check = 0.0
            if any(i.kind == "webhook" for i in intents) and self.sender is not None:
                self.sender.notify()

    @staticmethod
    def _latency(path: str, since_noticed: float) -> float:
        """Seconds from the file's completion to now: from its last change as the file system
        recorded it (ctime: its last write, or its rename into place - which no uploader can
        set back, unlike mtime), so time the file waited unnoticed (a dead watch, a stopped
        daemon) counts; ``since_noticed`` when it cannot be read."""
        try:
            st = os.lstat(path)
        except OSError:
            return since_noticed
        return max(since_noticed, time.time() - max(st.st_ctime, st.st_mtime))

    def _count(self, verdicts: list[Verdict]) -> None:
        self.summary.files += 1
        for v in verdicts:
            self.summary.counts[v.verdict] = self.summary.counts.get(v.verdict, 0) + 1
            self.summary.errors += v.is_error

    # ------------------------------------------------------------------ actions
    def _actions(self) -> None:
        """Carry out due quarantines (here) and commands (in the helper thread); harvest commands."""
        self._harvest_commands()
        if time.time() < self.next_action_check:
            return
        changed = held = False
        for a in self.journal.due_actions(time.time()):
            running = a.kind == "command" and (a.id in self._commands or self.stopping)
            if a.kind not in ("quarantine", "command") or running:
                continue
            if self.leases is not None:
                a = self._claim_action(a)
                if a is None:
                    held = True
                    continue
            if a.kind == "quarantine":
                self._quarantine(a)
                changed = True
            else:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(1, thread_name_prefix="meshscan-command")
                runner = CommandRunner(self.config.command_timeout)
                self._commands[a.id] = (a, self._executor.submit(runner.run, a.spec, a.payload, a.id))
        if changed:
            self.journal.commit()
        nxt = self.journal.next_action_at()
        pending_commands = bool(self._commands)
        self.next_action_check = float("inf") if nxt is None else nxt
        if pending_commands:
            self.next_action_check = max(self.next_action_check, time.time() + 0.1)
        if self.leases is not None:  # others' actions: held ones looked at again, new ones noticed
            now = time.time()
            self.next_action_check = min(max(self.next_action_check, now + (0.5 if held else 0.0)), now + ACTION_POLL)

    def _claim_action(self, a: J.ActionRow) -> J.ActionRow | None:
        """Claim a due action (a shared state); None when another daemon holds it or has just
        done it. The row is read again once claimed: that is the one to perform."""
        got = self.leases.take(ACTION + a.id)
        if isinstance(got, Held):
            return None
        fresh = self.journal.pending_action(a.id, time.time())
        if fresh is None:
            self.leases.drop(ACTION + a.id)
            return None
        if got.previous:
            log.info("action taken over", extra={"fields": {"path": a.path, "id": a.id, "action": a.kind,
                                                            "from": got.previous}})  # fmt: skip
        return fresh

    def _drop_claim(self, key: str) -> None:
        """Give a claim back now: the work is not to be done (a shared state; nothing on SQLite)."""
        if self.leases is not None:
            self.leases.drop(key)

    def _unclaim(self, key: str) -> None:
        """Give a claim back in the transaction that journals what became of the work (a
        shared state; nothing on SQLite)."""
        if self.leases is not None:
            self.leases.release(key)

    def _quarantine(self, a: J.ActionRow) -> None:
        doc = json.loads(a.payload)
        verdicts = [Verdict.from_dict(v) for v in doc["verdicts"]]
        fields = {"path": a.path, "id": a.id}
        try:
            target = quarantine_once(a.path, a.root, a.spec, verdicts, a.id, a.sha256)
        except (ContentChanged, SourceGone) as exc:
            self._unclaim(ACTION + a.id)
            self.journal.finish_action(a.id, J.SKIPPED, error=str(exc))
            self.metrics.action("quarantine", J.SKIPPED)
            log.info("quarantine skipped", extra={"fields": {**fields, "why": str(exc)}})
            return
        except (QuarantineError, OSError) as exc:
            self._action_failed(a, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a bug must not crash-loop the daemon; reported, retried
            self._action_failed(a, f"internal error: {exc!r}")
            return
        self._failing.discard(a.id)
        self._unclaim(ACTION + a.id)
        self.journal.finish_action(a.id, J.DONE, result=str(target))
        self.journal.set_file_state(a.path, J.QUARANTINED, str(target))
        self.recorded.pop(a.path, None)  # whatever appears there next is a new upload
        self.metrics.action("quarantine", J.DONE)
        log.info("quarantined", extra={"fields": {**fields, "to": str(target)}})

    def _check_quarantines(self) -> None:
        """A quarantine that cannot be written would leave flagged files where they are: refuse
        to start (or, with ``quarantine_check="warn"``, say so loudly and keep them pending)."""
        for folder in sorted({i.spec for i in self.config.plan.intents if i.kind == "quarantine"}):
            why = quarantine_problem(folder)
            if why is None:
                continue
            if self.config.quarantine_check == "refuse":
                raise StartError(f"quarantine folder {folder} {why}")
            log.error("quarantine folder unusable; quarantines stay pending until it is fixed",
                      extra={"fields": {"folder": folder, "why": why}})  # fmt: skip

    def _action_failed(self, a: J.ActionRow, error: str) -> None:
        """Never give up: the action stays pending, retried with capped exponential backoff."""
        wait = backoff(a.attempts, cap=self.config.action_backoff_cap)
        fields = {"path": a.path, "id": a.id, "action": a.kind, "error": error, "attempt": a.attempts + 1,
                  "retry_in_s": round(wait, 1)}  # fmt: skip
        self._unclaim(ACTION + a.id)
        self.journal.retry_action(a.id, error, time.time() + wait)
        self._failing.add(a.id)
        self.metrics.action(a.kind, "retry")
        log.error("action failed; will retry", extra={"fields": fields})

    def _harvest_commands(self) -> None:
        finished = [i for i, (_, f) in self._commands.items() if f.done()]
        for ident in finished:
            a, future = self._commands.pop(ident)
            result = future.result()
            if result.ok:
                self._failing.discard(ident)
                self._unclaim(ACTION + ident)
                self.journal.finish_action(ident, J.DONE, result=result.detail)
                self.metrics.action("command", J.DONE)
                log.info("command done", extra={"fields": {"path": a.path, "id": ident}})
            else:
                self._action_failed(a, result.detail)
        if finished:
            self.journal.commit()
            self.next_action_check = 0.0

    # ------------------------------------------------------------------ stop
    def _shutdown(self) -> None:
        """Stop intake, let running scans finish and be recorded (done in the loop), then wait
        for a running command, close the outbox sender and the database."""
        notify("STOPPING=1")
        if self.observers is not None:
            self.observers.stop(10)
            self.alarm.remove()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            if self.journal is not None:
                self._harvest_commands()
        if self.sender is not None:
            self.sender.stop()
            self.sender.join(self.config.webhook.timeout + 5)
            if self.config.once and self.outbox is not None:
                self.outbox.deliver_due()  # one attempt for what this run queued; the rest next run
        if self.pool is not None:
            self.pool.close()
        if self.outbox is not None:
            self.outbox.close()
        if self.leases is not None:
            try:
                self.leases.release_all()
            except DB_ERRORS as exc:  # they run out by themselves
                log.warning("cannot give the claims back", extra={"fields": {"error": str(exc)}})
        if self.journal is not None:
            self.journal.close()
        if self._log_fd is not None:
            os.close(self._log_fd)
        self.waker.close()
        log.info("stopped", extra={"fields": {"files": self.summary.files, "skipped": self.summary.skipped,
                                              **self.summary.counts}})  # fmt: skip
