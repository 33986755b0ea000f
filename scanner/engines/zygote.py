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

Workers of a cluster the engine did not start (``--scheduler``, perhaps on other machines)
cannot reach that socket, and cannot fork a zygote from themselves either: a Dask worker runs
threads, and a fork keeps only the forking thread (with any lock another thread held). Each
such worker process starts a :class:`SpawnedZygote` instead - a fresh interpreter that loads the
context once, pays the 2.7 s once, and then forks every guarded child of that worker, including
the one that replaces a child a crashing file took down.
"""

from __future__ import annotations

import multiprocessing
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from scanner.context import ContextSpec, ScanContext
from scanner.engines.guarded import START_TIMEOUT_S
from scanner.engines.worker import (
    SINGLE_THREAD_ENV,
    cap_memory,
    keep_freed_memory,
    one_blas_thread,
    serve_lines,
    warm_up,
)

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


class SpawnedZygote:
    """A zygote started as a fresh interpreter (``python -m scanner.engines.zygote``) for one
    context spec: the fork server of a process that cannot fork one from itself (a Dask worker
    of a cluster the engine did not start). It leaves when the process that started it does."""

    READY = b"zygote ready"

    def __init__(self, spec: ContextSpec, memory_bytes: int | None) -> None:
        self.spec, self.memory_bytes = spec, memory_bytes
        self.path = ""
        self._folder = ""
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> bool:
        """Start it and wait until it listens; False (and nothing left running) when it cannot
        start - the guards then start fresh children, as before."""
        self._folder = tempfile.mkdtemp(prefix="meshscan-zygote-")  # mode 0700: only this user connects
        path = os.path.join(self._folder, SOCKET_NAME)
        args = [sys.executable, "-m", "scanner.engines.zygote", self.spec.to_json(), str(self.memory_bytes or 0), path]
        env = dict(os.environ, **SINGLE_THREAD_ENV)
        self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env)
        assert self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], START_TIMEOUT_S)  # as a fresh child's
        line = self._process.stdout.readline() if ready else b""  # the line, or b"" once it exited
        self._process.stdout.close()
        if line.strip() != self.READY:
            self.close()
            return False
        self.path = path
        return True

    def close(self) -> None:
        if self._process is not None:
            self._process.terminate()  # it reaps its children, then exits
            try:
                self._process.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
            self._process = None
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = ""
        self.path = ""


def spawned_main(spec_json: str, memory_bytes: int, path: str) -> None:
    """A spawned zygote's life: load the context, listen, say ready, serve forks."""
    context = ContextSpec.from_json(spec_json).load()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints go to stderr, never into a child's protocol
    out.write(SpawnedZygote.READY + b"\n")
    out.close()
    _serve(listener, context, memory_bytes or None)


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
    from scanner import parallel

    parallel.configure(False)  # a Dask worker's guarded child: the cluster decides what runs where
    one_blas_thread()
    keep_freed_memory()  # it gives the heap back when idle (serve_lines)
    cap_memory(memory_bytes)
    with conn.makefile("wb") as writer:
        serve_lines(context, conn.fileno(), writer)


if __name__ == "__main__":
    spawned_main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
