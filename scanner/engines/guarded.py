"""A guarded scanner: one child process that scans one file at a time under the per-file time
and memory limits, for engines whose own tasks cannot be interrupted.

A Dask task runs in a worker thread: it cannot be stopped when a file hangs, and a file that
allocates without bound takes the whole worker (and its other tasks) down with it. So each
Dask worker keeps one of these: a plain ``python -m scanner.engines.worker`` child (a
subprocess, not ``multiprocessing``, because Dask's worker processes are daemons and may not
fork children through it), fed one task per line on stdin and answering one JSON line on
stdout (:mod:`scanner.engines.messages`). The child loads the library and model once, says
``ready``, and only then does the per-file clock start. A file past ``timeout_s`` gets
``limit:time`` and the child is killed and restarted; a child past its ``RLIMIT_AS`` reports
``limit:memory`` (or dies, which is reported as ``worker-crashed``); either way only that
file is lost.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from typing import Any

from scanner.context import ContextSpec, ScanContext
from scanner.engines.messages import decode_records, encode_task, from_wire, to_wire
from scanner.engines.parent import DIED, LATE, late_detail, lost
from scanner.engines.worker import READY, SINGLE_THREAD_ENV
from scanner.verdict import Verdict

QUEUED = 2
"""Paths sent to the child ahead of its answers: the one it scans and the next (as
:data:`scanner.engines.local.QUEUED_PER_WORKER`)."""
START_TIMEOUT_S = 300.0
"""Loading the library and refitting the model in a fresh child: generous, and not per file."""


class _ChildDied(Exception):
    pass


class GuardedScanner:
    """``zygote``: the socket of a :class:`~scanner.engines.zygote.Zygote` on this machine to
    fork the child from (already loaded), instead of starting a fresh Python."""

    def __init__(self, spec: ContextSpec, timeout_s: float, memory_bytes: int | None,
                 zygote: str | None = None) -> None:  # fmt: skip
        self.spec, self.timeout_s, self.memory_bytes, self.zygote = spec, timeout_s, memory_bytes, zygote
        self.proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._pidfd: int | None = None
        self._buffer = b""
        self._tasks = 0
        self._stopped = False
        self.versions: dict[str, str | None] = {}
        """Library and model versions the child scans with, and its size (it says them when ready)."""

    def __enter__(self) -> GuardedScanner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def scan(self, path: str) -> list[Verdict]:
        """Verdicts for one upload, never raising: limits and crashes become verdicts."""
        return from_wire(self.scan_wire([path])[0])

    def scan_wire(self, paths: list[str]) -> list[list[dict[str, Any]]]:
        """The verdicts of each upload as the child sent them (:func:`~scanner.engines.messages.to_wire`
        records, not decoded: a Dask task passes them on as they are), never raising.

        Up to :data:`QUEUED` paths are sent ahead, so the child starts its next file the
        moment it answers instead of waiting for this thread to be scheduled and send it
        (measured in a Dask worker thread on the loaded 2-core machine: 6 ms between files
        one at a time, most of it that wait, against 3-5 ms in the local engine). As there,
        each file's clock starts when the one before it was answered; a file that is late or
        kills the child loses only itself, and the files sent behind it go to the next child."""
        out: list[list[dict[str, Any]]] = []
        sent: deque[str] = deque()
        todo = deque(paths)
        while todo or sent:
            try:
                self._ensure_started()
                while todo and len(sent) < QUEUED:
                    self._tasks += 1
                    self._send(encode_task(self._tasks, todo[0]) + b"\n")
                    sent.append(todo.popleft())
                line = self._read_line(self.timeout_s)
                if line is None:
                    fate, detail = LATE, late_detail(self.timeout_s)
                else:
                    out.append(decode_records(line))
                    sent.popleft()
                    continue
            except _ChildDied as died:
                fate, detail = DIED, str(died)
            except OSError as exc:  # a broken pipe: the child is gone
                fate, detail = DIED, f"the scan process died ({exc})"
            except ValueError as exc:  # not a reply: nothing more it says can be trusted
                fate, detail = DIED, f"the scan process answered garbage ({exc})"
            if not sent:  # the child died before the first path could be sent
                sent.append(todo.popleft())
            out.append(to_wire(self._lost(sent.popleft(), fate, detail)))
            todo.extendleft(reversed(sent))  # for the next child, in their order
            sent.clear()
        return out

    def _lost(self, path: str, fate: str, detail: str) -> list[Verdict]:
        self.close()
        verdicts = lost(path, ScanContext(), fate, detail)
        for verdict in verdicts:  # which library and model would have judged it
            verdict.library_version = self.versions.get("library_version")
            verdict.model_version = self.versions.get("model_version")
        return verdicts

    def stop(self) -> None:
        """From another thread: kill the child and start no other, so a scan in progress ends
        now (its files lost), not after its files or their time limits. The thread that scans
        with this guard still closes it (its socket or pipes).

        The flag is set before the child is looked up, and a starting child is named (its pidfd
        or process) before the starter reads the flag, so one of the two always sees the other:
        a stop that lands while a child is forked and says hello (a window of milliseconds that
        grows on a loaded machine) used to find nothing to kill, and the child then scanned a
        hanging file for its whole time limit while the interrupted run waited for it."""
        self._stopped = True
        try:
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            if self.proc is not None:
                self.proc.kill()
        except OSError:  # already gone, or closed meanwhile by its thread
            pass

    def close(self) -> None:
        if self._sock is not None:  # a zygote's child: not ours to wait for; the pidfd names it exactly
            if self._pidfd is not None:
                try:
                    signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
                except OSError:  # already gone
                    pass
                os.close(self._pidfd)
            self._sock.close()
        self._sock = self._pidfd = None
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream is not None:
                    stream.close()
        self.proc, self._buffer = None, b""

    def _send(self, data: bytes) -> None:
        if self._sock is not None:
            self._sock.sendall(data)
            return
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def _ensure_started(self) -> None:
        if self._sock is not None or (self.proc is not None and self.proc.poll() is None):
            return
        self.close()
        if self._stopped:
            raise _ChildDied("the run was stopped")
        if not (self.zygote and self._fork_from_zygote()):
            args = [sys.executable, "-m", "scanner.engines.worker", self.spec.to_json(), str(self.memory_bytes or 0)]
            env = dict(os.environ, **SINGLE_THREAD_ENV)
            self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
            self.versions = self._hello()
        if self._stopped:  # stop() came while the child was starting, before it could name it
            self.close()
            raise _ChildDied("the run was stopped")

    def _hello(self) -> dict:
        line = self._read_line(START_TIMEOUT_S)
        try:
            hello = json.loads(line or b"null")
            assert isinstance(hello, dict) and hello.pop(READY) is True
        except (ValueError, AssertionError, KeyError):
            raise _ChildDied(f"the scan process did not start (it said {line!r})") from None
        return hello

    def _fork_from_zygote(self) -> bool:
        """A child forked by the zygote; False (start a fresh one) when the zygote is gone."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.zygote or "")
        except OSError:
            sock.close()
            return False
        self._sock = sock
        self.versions = self._hello()
        try:
            self._pidfd = os.pidfd_open(int(self.versions["pid"]))
        except (OSError, KeyError, ValueError, TypeError):
            self.close()
            raise _ChildDied("the forked scan process went before its first file") from None
        return True

    def _read_line(self, timeout_s: float) -> bytes | None:
        """One line from the child, or None on timeout; _ChildDied if it exits."""
        if self._sock is not None:
            fd = self._sock.fileno()
        else:
            assert self.proc is not None and self.proc.stdout is not None
            fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                if not sel.select(left):
                    continue
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    code = self.proc.wait(10) if self.proc is not None else "unknown: a zygote's child"
                    raise _ChildDied(f"the scan process died (exit code {code})")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line
