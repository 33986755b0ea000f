"""A fork server for guarded children on this machine: the Dask engine's start-up without
reloading the library and the model in every worker's child.

Why: a guarded child started fresh (``python -m scanner.engines.worker``) imports numpy,
scipy and scikit-learn, loads the library and refits the component model - about 2.7 s of CPU
each, measured on the 2-core bench machine, before its first file. On a ``LocalCluster`` the
client process already holds all of that, so the engine forks one *zygote* from it before
Dask starts any thread; the zygote listens on a Unix socket in a private temporary folder, and
each Dask worker's :class:`~scanner.engines.guarded.GuardedScanner` connects to it and gets
a child forked from the loaded zygote in milliseconds (library, model and indexes shared
copy-on-write, as in the local engine). The child speaks the same line protocol as a fresh
one (:func:`~scanner.engines.worker.serve_lines`), caps its own memory and runs one BLAS
thread. The zygote itself is single-threaded (a fork keeps only the forking thread), so the
forks it makes are safe; it reaps its children itself and leaves when its parent does. Asked
to stop (SIGTERM, :meth:`Zygote.close`), it waits a moment for its children - stopped by
their guards first - before it exits, so the CPU they used is counted in the parent's
``RUSAGE_CHILDREN`` as a local worker's is (children the kernel reaps for an ignored SIGCHLD
are counted nowhere: ``bench/throughput.py`` read a third of the Dask run's CPU).

Workers on other machines (``--scheduler``) cannot reach the socket: they start fresh
children as before.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time

from scanner.context import ScanContext
from scanner.engines.worker import cap_memory, keep_freed_memory, one_blas_thread, serve_lines, warm_up

SOCKET_NAME = "zygote.sock"
STOP_WAIT_S = 2.0
"""How long :meth:`Zygote.close` waits for the zygote to reap its children and exit."""


class _Stop(Exception):
    """SIGTERM in the zygote: stop forking, reap, exit."""


def _stop(signum: int, frame: object) -> None:
    raise _Stop


class Zygote:
    """The fork server of one engine run (a context manager): ``path`` is its socket."""

    def __init__(self, context: ScanContext) -> None:
        self.context = context
        self.path = ""
        self._folder = ""
        self._process: multiprocessing.process.BaseProcess | None = None

    def __enter__(self) -> Zygote:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._folder = tempfile.mkdtemp(prefix="meshscan-zygote-")  # mode 0700: only this user connects
        self.path = os.path.join(self._folder, SOCKET_NAME)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(64)
        mp = multiprocessing.get_context("fork")
        memory_bytes = self.context.settings.limits.max_memory_bytes
        self._process = mp.Process(target=_serve, args=(listener, self.context, memory_bytes), daemon=True)
        self._process.start()
        listener.close()

    def close(self) -> None:
        if self._process is not None:
            self._process.terminate()  # it reaps its children, then exits
            self._process.join(STOP_WAIT_S)
            if self._process.is_alive():  # a child still running: not worth waiting for
                self._process.kill()
                self._process.join(5)
            self._process = None
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)  # the socket folder this run made, nothing else
            self._folder = ""


def _serve(listener: socket.socket, context: ScanContext, memory_bytes: int | None) -> None:
    """The zygote's life: warm up, then fork a child per connection until the parent goes.

    The warm-up (imports, indexes: ~0.25 s of CPU) happens here, once, shared by every child,
    not in the parent before the fork: the parent does not scan, and meanwhile it starts the
    cluster (connections wait in the listener's backlog, the guards for the ready line)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warm_up(context)
    signal.signal(signal.SIGTERM, _stop)
    parent = os.getppid()
    listener.settimeout(1.0)
    try:
        while os.getppid() == parent:
            _reap()
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            if os.fork() == 0:
                listener.close()
                code = 0
                try:
                    _child(conn, context, memory_bytes)
                except BaseException:  # noqa: BLE001 - the guard reports a child that ends early
                    code = 1
                finally:
                    os._exit(code)
            conn.close()
    except _Stop:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        deadline = time.monotonic() + STOP_WAIT_S / 2
        while not _reap() and time.monotonic() < deadline:  # a child still serving a guard: left to it
            time.sleep(0.01)


def _reap() -> bool:
    """Collect the children that ended, so their CPU counts; True when none is left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:  # some still running
            return False


def _child(conn: socket.socket, context: ScanContext, memory_bytes: int | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    conn.settimeout(None)
    one_blas_thread()
    keep_freed_memory()
    cap_memory(memory_bytes)
    with conn.makefile("rb") as reader, conn.makefile("wb") as writer:
        serve_lines(context, reader, writer)
