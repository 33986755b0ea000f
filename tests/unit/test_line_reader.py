"""The guarded children's task reader (scanner.engines.worker.LineReader): lines already
buffered are answered at once, and only a real wait for work gives the kept heap back."""

from __future__ import annotations

import os
import threading
import time

from scanner.engines.worker import LineReader


def test_buffered_lines_come_without_waiting_and_idle_is_called_only_on_a_real_wait() -> None:
    read, write = os.pipe()
    try:
        os.write(write, b"one\ntwo\nthr")  # two whole lines and a part in one chunk
        lines = LineReader(read, idle_after_s=0.3)
        idle: list[float] = []
        started = time.monotonic()
        assert lines.readline(idle=lambda: idle.append(time.monotonic())) == b"one\n"
        assert lines.readline(idle=lambda: idle.append(time.monotonic())) == b"two\n"
        assert not idle and time.monotonic() - started < 0.25  # the second was buffered: no wait
        threading.Timer(0.6, os.write, (write, b"ee\n")).start()
        assert lines.readline(idle=lambda: idle.append(time.monotonic())) == b"three\n"
        assert len(idle) == 1 and 0.25 <= idle[0] - started < 0.6  # once, after the idle time
        os.write(write, b"last, no newline")
        os.close(write)
        write = -1
        assert lines.readline() == b"last, no newline"
        assert lines.readline() == b""
    finally:
        os.close(read)
        if write >= 0:
            os.close(write)
