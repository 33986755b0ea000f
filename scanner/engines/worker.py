"""The worker side of every engine, written once: how a scan worker prepares itself, scans one
upload so that nothing but a crash can end it, and serves tasks until its parent goes.

Two transports carry the same messages (:mod:`scanner.engines.messages`):

- a forked worker (:func:`pipe_worker`) reads tasks from a ``multiprocessing`` pipe; the
  library, model and indexes are inherited copy-on-write from the parent, warmed up before
  the fork (:func:`warm_up`);
- a fresh child (``python -m scanner.engines.worker SPEC MEMORY``, :func:`stdin_worker`)
  reads one task per line on stdin and answers one line on stdout; it builds its own context
  from a :class:`~scanner.context.ContextSpec` and says ``ready`` before its first task, so
  the parent's per-file clock does not include loading the library.
"""

from __future__ import annotations

import functools
import gc
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, BinaryIO

from scanner.context import ContextSpec, ScanContext
from scanner.engines.messages import decode_task, encode_reply
from scanner.errors import CORRUPT, LIMIT_MEMORY, UnreadableInput
from scanner.pipeline import scan_one, unscannable_verdict
from scanner.verdict import Verdict

FAULT_INJECTION_ENV = "MESHSCAN_FAULT_INJECT"
"""Testing hook: ``crash:NAME`` makes a worker abort on a file whose base name is NAME, and
``hang:NAME`` makes it never finish, so the crash and time-limit paths can be tested without a
real crashing or hanging input."""

SINGLE_THREAD_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""For child processes started fresh: one BLAS thread each, set before numpy loads."""

READY = "ready"
"""Key of a fresh child's first line: ``{"ready": true, "library_version": ..., "model_version": ...,
"vm_bytes": ...,
"blas_threads": ..., "pid": ...}``."""


def one_blas_thread() -> None:
    """One BLAS/OpenMP thread in this worker. The pool already uses every core, one file per
    worker; on the small matrices of one file a threaded BLAS only adds contention (measured
    2-4x slower shape features and descriptors with the default thread count).

    The libraries are looked up now, never taken from a controller made before the fork: a
    BLAS or OpenMP library loaded since (scipy's own OpenBLAS on first use of
    ``scipy.linalg``, scikit-learn's OpenMP when a model is refitted) would keep its threads
    (a worker forked after ``test_startup.py`` had warmed up the test process kept 2).
    :func:`prepare_worker_setup` imported threadpoolctl and let it find libc in the parent,
    so the lookup costs ~1 ms here."""
    controller = _blas_controller()
    if controller is not None:
        controller.limit(limits=1)


def _blas_controller() -> Any:
    """threadpoolctl's view of the BLAS/OpenMP libraries loaded now (None without it)."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # comes with scikit-learn; without it, the default threads
        return None
    return ThreadpoolController()


@functools.cache
def _libc() -> Any:
    """glibc, for ``mallopt`` and ``malloc_trim`` (None elsewhere). ``find_library`` runs
    ``ldconfig -p`` in a subprocess, so this is looked up once, before the workers fork, not
    in each of them."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallopt, libc.malloc_trim  # noqa: B018 - both, or neither
    except (OSError, AttributeError, TypeError):
        return None
    return libc


def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt`` (None elsewhere)."""
    libc = _libc()
    return None if libc is None else libc.mallopt


def prepare_worker_setup() -> None:
    """Do before the fork what each worker's set-up would otherwise repeat after it: import
    threadpoolctl and let it find libc (its first library scan), find libc's ``mallopt``,
    import ``resource``. Measured on a one-file scan: about 20-30 ms of every forked worker's
    start (most of it ``find_library``'s subprocess and threadpoolctl's first scan), on the
    one-file critical path. The scan's result is not kept: a worker looks the libraries up
    again (:func:`one_blas_thread`), since some may be loaded after this."""
    import resource  # noqa: F401 - cap_memory's

    _blas_controller()
    _libc()


MMAP_THRESHOLD = 32 * 1024 * 1024
"""glibc's largest mmap threshold: arrays below it come from the heap, which is kept."""
TRIM_THRESHOLD = 256 * 1024 * 1024
"""Free heap a worker keeps for its next file instead of giving it back to the kernel."""
M_ARENA_MAX = -8
"""glibc's ``mallopt`` parameter for the most malloc arenas (malloc.h)."""


IDLE_RELEASE_S = 1.0
"""A worker that has waited this long for its next task gives its kept heap back
(:func:`release_freed_memory`); a parent or guard a little late with the next file does not
cost the worker its heap."""


def keep_freed_memory() -> None:
    """Let this worker's allocator reuse freed arrays instead of returning them to the kernel.

    Why: by default glibc maps every array above 128 kB afresh and unmaps it when freed, so
    each temporary of a large mesh is page-faulted and zeroed by the kernel again - measured
    on three 500k-triangle scans, 105-111k page faults and 1.0-1.2 s of system time against
    4.2-4.5 s of user time; with these two settings 25k faults and 0.44 s. Two workers zeroing
    pages at once also compete for memory bandwidth, which is what large files scale on.
    The address-space cap counts what is kept, as it counts everything. Not glibc (musl,
    macOS): nothing to tune.

    Also: numpy asks the kernel for transparent huge pages on every array of 4 MB or more, and
    a huge page is faulted in (and, under ``defrag=madvise``, compacted for) 2 MB at a time:
    on this 2-core VM describing a 1M-triangle mesh spent 0.30 s of system time on the
    sampler's two 72 MB moment matrices alone (1,095 faults), 0.08 s with normal pages, for no
    measured gain in user time. Workers take normal pages.

    Arrays above 32 MB come from the kept heap too (glibc's ``M_MMAP_MAX`` 0: no array is
    mapped on its own); every worker gives the heap back when it has waited a second for work
    (:func:`release_freed_memory`: the forked workers' ``receive``, the guarded children's
    :func:`serve_lines`). Why: a 500k-triangle file makes arrays of 36-72
    MB (float64 corners, the weighted copy of a Gram product, the whitened surface of the
    affine row), each mapped, page-faulted and zeroed afresh. Measured on the bench's
    500k-triangle files in one worker, after the first: 8.8k page faults a file -> 0-2k,
    system time 0.024 -> 0.010 s a file, peak RSS 361 -> 336 MB. The address-space cap still
    counts everything: kept heap as before, and a heap holding holes may reach it somewhat
    sooner than separate mappings would on a file near the cap."""
    _no_huge_pages()
    mallopt = _mallopt()
    if mallopt is None:
        return
    m_trim_threshold, m_mmap_threshold, m_mmap_max = -1, -3, -4  # from glibc's malloc.h
    mallopt(m_mmap_threshold, MMAP_THRESHOLD)
    mallopt(m_trim_threshold, TRIM_THRESHOLD)
    mallopt(m_mmap_max, 0)
    # one heap for every thread: the describing helper thread (scanner.parallel) frees arrays
    # the scan's thread then reuses, and reserves no 64 MB arena of its own under the
    # address-space cap
    mallopt(M_ARENA_MAX, 1)


def release_freed_memory() -> None:
    """Give the free heap back to the kernel (glibc's ``malloc_trim``; nothing elsewhere): a
    worker that keeps freed memory (:func:`keep_freed_memory`) calls it when it has no next
    file waiting, so an idle worker (the watch daemon's, between uploads) does not sit on the
    largest file's arrays. A batch scan keeps a next file queued, so its workers do not (a
    forked worker releases after a second without work: a parent late to send the next file
    must not cost the worker its heap)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def _no_huge_pages() -> None:
    """Turn off numpy's ``madvise(MADV_HUGEPAGE)`` of large arrays in this process (see
    :func:`keep_freed_memory`); nothing when this numpy has no such switch."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    switch = getattr(multiarray, "_set_madvise_hugepage", None)
    if switch is not None:
        switch(False)


def cap_memory(memory_bytes: int | None) -> None:
    """Cap this process's address space (RLIMIT_AS): past it an allocation fails with
    MemoryError (the upload's ``limit:memory``) instead of the machine swapping."""
    if memory_bytes:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))


def warm_up(context: ScanContext) -> None:
    """Import what a scan needs and build the index before forking, so every worker shares
    them (copy-on-write) instead of paying for them inside its first file's time limit.

    The collector is off while it runs, and what is loaded is then frozen out of it
    (``gc.disable`` then ``gc.freeze``, as the gc documentation advises before a fork):
    modules and indexes live as long as the process, so collections during the imports only
    walk them, a worker's collections no longer walk - and so copy - the parent's pages of
    long-lived objects, and the collections at exit skip them. Measured on a one-file scan:
    about 35 ms of CPU in the imports and 60-100 ms at interpreter exit, with numpy and scipy
    loaded. A second warm-up (a reloaded library) first unfreezes and collects, so what the
    previous context left in cycles is still freed."""
    if gc.get_freeze_count():
        gc.unfreeze()
        gc.collect()
    collecting = gc.isenabled()
    gc.disable()  # what is made now lives as long as the process: nothing to collect
    try:
        # not scipy.spatial (0.1 s): the hull volume is a compiled kernel; Qhull is for what it
        # declines (sheets), the convex-piece rule's solidity and G-code, which import it then
        import scipy.sparse.csgraph  # noqa: F401 - bodies
        import scipy.special  # noqa: F401 - descriptor

        import scanner.features  # noqa: F401

        if context.library is not None:
            context.matcher  # noqa: B018 - builds the indexes
        prepare_worker_setup()
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


def scan_contained(path: str, context: ScanContext, fault: str = "") -> list[Verdict]:
    """``scan_one`` inside a worker: running out of memory or a bug becomes this file's
    verdict, never the worker's end. ``fault`` is the FAULT_INJECTION_ENV testing hook."""
    if fault == f"crash:{os.path.basename(path)}":
        os.abort()
    if fault == f"hang:{os.path.basename(path)}":
        time.sleep(3600)  # a file that never finishes: only the time limit ends it
    try:
        return scan_one(path, context)
    except MemoryError:
        return [unscannable_verdict(path, context, UnreadableInput(LIMIT_MEMORY, "memory cap reached"))]
    except Exception as exc:  # noqa: BLE001 - a bug must not take the run down; it is reported
        return [unscannable_verdict(path, context, UnreadableInput(CORRUPT, f"internal error: {exc!r}"))]


def serve_tasks(receive: Callable[[], bytes | None], send: Callable[[bytes], None], context: ScanContext) -> None:
    """Answer tasks until ``receive`` says there are no more (None)."""
    fault = os.environ.get(FAULT_INJECTION_ENV, "")
    while (message := receive()) is not None:
        task, path = decode_task(message)
        send(encode_reply(task, scan_contained(path, context, fault)))


def pipe_worker(conn: Connection, parent_end: Connection, context: ScanContext, memory_bytes: int | None,
                deaf_to_sigterm: bool = False, workers: int | None = None) -> None:  # fmt: skip
    """A forked worker's life. The parent decides when to stop (SIGINT is ignored); with
    ``deaf_to_sigterm`` (the watch daemon) SIGTERM too, since a service manager signals the
    whole process group on stop and the daemon wants its running scans finished and recorded.
    ``workers``: how many workers the parent runs, this one included (None: unknown, taken as
    every core busy): a large mesh is described on two threads only when they leave a core
    idle (:mod:`scanner.parallel`; ``--jobs 1`` on a 2-core machine does, ``--jobs 2`` not)."""
    from scanner import parallel

    parallel.configure(workers is not None and parallel.spare_cores(workers))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if deaf_to_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent_end.close()  # the fork copied it; holding it would keep our own pipe open forever
    parent_pid = os.getppid()
    one_blas_thread()
    keep_freed_memory()
    cap_memory(memory_bytes)

    def receive() -> bytes | None:
        try:
            waited = False
            while not conn.poll(IDLE_RELEASE_S):
                if os.getppid() != parent_pid:  # the parent was killed (kill -9): do not linger
                    return None
                if not waited:  # a second without work: the kept heap goes back while we wait
                    release_freed_memory()
                    waited = True
            return conn.recv_bytes()
        except (EOFError, OSError):
            return None

    try:
        serve_tasks(receive, conn.send_bytes, context)
    except (BrokenPipeError, EOFError, OSError):
        pass  # the parent went away mid-answer: nobody is left to tell


def _vm_bytes() -> int | None:
    """This process's address-space size (what RLIMIT_AS caps), where /proc says it."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def hello(context: ScanContext) -> bytes:
    """A fresh or forked child's first line: ready, with the versions it scans with, its
    address-space size and how many BLAS threads it runs (one: :data:`SINGLE_THREAD_ENV`)."""
    import json

    return json.dumps({READY: True, "library_version": context.library_version,
                       "model_version": context.model_version, "vm_bytes": _vm_bytes(),
                       "blas_threads": blas_threads(), "pid": os.getpid()}).encode()  # fmt: skip


def blas_threads() -> int | None:
    """The most threads any BLAS/OpenMP pool of this process may use (None: threadpoolctl
    is not installed to say)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    return max((int(pool.get("num_threads", 1)) for pool in threadpool_info()), default=1)


def stdin_worker(spec: ContextSpec, memory_bytes: int) -> None:
    """A fresh child's life: load the context, warm up, cap memory, say ready, serve lines."""
    from scanner import parallel

    parallel.configure(False)  # a Dask worker's child: the cluster decides what runs on which core
    context = spec.load()
    warm_up(context)
    one_blas_thread()  # the env already says so (SINGLE_THREAD_ENV); this holds without it
    keep_freed_memory()  # it gives the heap back when idle (serve_lines)
    cap_memory(memory_bytes)
    out = os.fdopen(os.dup(1), "wb")  # the protocol's own stdout; stray prints go to stderr
    os.dup2(2, 1)
    serve_lines(context, sys.stdin.fileno(), out)


def serve_lines(context: ScanContext, fd: int, writer: BinaryIO) -> None:
    """Say ready, then answer one task per line read from ``fd`` until it ends; a second
    without a task waiting gives the kept heap back (:func:`release_freed_memory`), as the
    forked workers do."""

    def send(message: bytes) -> None:
        writer.write(message + b"\n")
        writer.flush()

    send(hello(context))
    lines = LineReader(fd)
    serve_tasks(lambda: lines.readline(idle=release_freed_memory) or None, send, context)


class LineReader:
    """Lines from a file descriptor (a pipe or a socket), knowing whether the next one is
    already buffered: a worker waits for its next task with a timeout only when none is (a
    buffered reader would let ``select`` wait a second beside a line it holds already)."""

    def __init__(self, fd: int, idle_after_s: float = IDLE_RELEASE_S) -> None:
        self.fd, self.idle_after_s = fd, idle_after_s
        self.buffer = bytearray()

    def readline(self, idle: Callable[[], None] | None = None) -> bytes:
        """The next line with its newline; at the end, what is left (``b""`` when nothing).
        ``idle`` is called once when no line has come for ``idle_after_s``."""
        while (end := self.buffer.find(b"\n")) < 0:
            if idle is not None and not select.select([self.fd], [], [], self.idle_after_s)[0]:
                idle()
                idle = None
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                line = bytes(self.buffer)
                self.buffer.clear()
                return line
            self.buffer += chunk
        line = bytes(self.buffer[: end + 1])
        del self.buffer[: end + 1]
        return line


if __name__ == "__main__":
    stdin_worker(ContextSpec.from_json(sys.argv[1]), int(sys.argv[2]))
