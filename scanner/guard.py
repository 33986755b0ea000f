"""A guarded scanner: one child process that scans one file at a time under the per-file time
and memory limits, for engines whose own tasks cannot be interrupted.

A Dask task runs in a worker thread: it cannot be stopped when a file hangs, and a file that
allocates without bound takes the whole worker (and its other tasks) down with it. So each
Dask worker keeps one of these: a plain ``python -m scanner.guard`` child (a subprocess, not
``multiprocessing``, because Dask's worker processes are daemons and may not fork children
through it), fed one path per line on stdin and answering one JSON line of verdicts on stdout.
The child loads the library and model once, says ``ready``, and only then does the per-file
clock start. A file past ``max_seconds`` gets ``limit:time`` and the child is killed and
restarted; a child past its ``RLIMIT_AS`` reports ``limit:memory`` (or dies, which is reported
as ``worker-crashed``); either way only that file is lost.

The protocol is JSON both ways: the child is where untrusted bytes are parsed, so nothing it
sends back may be able to execute code in the parent.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from dataclasses import dataclass

from scanner.errors import LIMIT_TIME, WORKER_CRASHED, UnreadableInput
from scanner.verdict import Verdict
from scanner.workers import SINGLE_THREAD_ENV

READY = "ready"
"""Key of the child's first line: ``{"ready": true, "library_version": ..., "model_version": ...}``."""
START_TIMEOUT_S = 300.0
"""Loading the library and refitting the model in a fresh child: generous, and not per file."""


@dataclass(frozen=True)
class ContextSpec:
    """What a child needs to build its own scan context: plain strings, no objects."""

    library: str | None
    settings_json: str
    model: str | None = None

    def to_json(self) -> str:
        return json.dumps([self.library, self.settings_json, self.model])

    @classmethod
    def from_json(cls, text: str) -> ContextSpec:
        library, settings_json, model = json.loads(text)
        return cls(library, settings_json, model)


class GuardedScanner:
    def __init__(self, spec: ContextSpec, timeout_s: float, memory_bytes: int | None) -> None:
        self.spec, self.timeout_s, self.memory_bytes = spec, timeout_s, memory_bytes
        self.proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self.versions: dict[str, str | None] = {}
        """Library and model versions the child scans with, and its size (it says them when ready)."""

    def scan(self, path: str) -> list[Verdict]:
        """Verdicts for one upload, never raising: limits and crashes become verdicts."""
        try:
            self._ensure_started()
            assert self.proc is not None and self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(path).encode() + b"\n")
            self.proc.stdin.flush()
            line = self._read_line(self.timeout_s)
        except _ChildDied as died:
            return self._failed(path, UnreadableInput(WORKER_CRASHED, str(died)))
        except OSError as exc:  # a broken pipe: the child is gone
            return self._failed(path, UnreadableInput(WORKER_CRASHED, f"the scan process died ({exc})"))
        if line is None:
            return self._failed(path, UnreadableInput(LIMIT_TIME, f"no result within {self.timeout_s:g} s"))
        return [Verdict.from_dict(r) for r in json.loads(line)]

    def _failed(self, path: str, err: UnreadableInput) -> list[Verdict]:
        from scanner.pipeline import ScanContext, unscannable_verdict

        self.close()
        verdict = unscannable_verdict(path, ScanContext(), err)
        verdict.library_version = self.versions.get("library_version")
        verdict.model_version = self.versions.get("model_version")
        return [verdict]

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            for stream in (self.proc.stdin, self.proc.stdout):
                if stream is not None:
                    stream.close()
        self.proc, self._buffer = None, b""

    def _ensure_started(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.close()
        args = [sys.executable, "-m", "scanner.guard", self.spec.to_json(), str(self.memory_bytes or 0)]
        env = dict(os.environ, **SINGLE_THREAD_ENV)
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        line = self._read_line(START_TIMEOUT_S)
        try:
            hello = json.loads(line or b"null")
            assert isinstance(hello, dict) and hello.pop(READY) is True
        except (ValueError, AssertionError, KeyError):
            raise _ChildDied(f"the scan process did not start (it said {line!r})") from None
        self.versions = hello

    def _read_line(self, timeout_s: float) -> bytes | None:
        """One line from the child, or None on timeout; _ChildDied if it exits."""
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
                    code = self.proc.wait(10)
                    raise _ChildDied(f"the scan process died (exit code {code})")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line


class _ChildDied(Exception):
    pass


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


def _child(spec: ContextSpec, memory_bytes: int) -> None:
    from scanner.dask_engine import _worker_context
    from scanner.workers import FAULT_INJECTION_ENV, scan_contained, warm_up

    context = _worker_context(spec.library, spec.settings_json, spec.model)
    warm_up(context)
    if memory_bytes:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    fault = os.environ.get(FAULT_INJECTION_ENV, "")
    out = os.fdopen(os.dup(1), "wb")  # the protocol's own stdout; stray prints go to stderr
    os.dup2(2, 1)
    model_version = getattr(getattr(context, "model", None), "version", None)
    hello = {READY: True, "library_version": context.library_version, "model_version": model_version,
             "vm_bytes": _vm_bytes()}  # fmt: skip
    out.write(json.dumps(hello).encode() + b"\n")
    out.flush()
    for raw in sys.stdin.buffer:
        verdicts = scan_contained(json.loads(raw), context, fault)
        out.write(json.dumps([v.to_dict() for v in verdicts]).encode() + b"\n")
        out.flush()


if __name__ == "__main__":
    _child(ContextSpec.from_json(sys.argv[1]), int(sys.argv[2]))
