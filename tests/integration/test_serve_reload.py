"""`meshscan serve --reload-library` (issue 13, item 2): the real server in a subprocess on a
loopback port serves a library folder in tmp_path; the folder is changed with the real
`meshscan signatures` commands and the server is told with SIGHUP (or notices the manifest)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from scanner.engines.worker import FAULT_INJECTION_ENV
from tests.conftest import REPO
from tests.integration.test_serve import Server, multipart, start_server

pytestmark = pytest.mark.timeout(180)

DEMO = REPO / "fixtures" / "demo"
FIRST = DEMO / "proxy-barrel-s1-000.stl"
SECOND = DEMO / "proxy-slide_or_cylinder-s1-000.obj"
serving = contextlib.contextmanager(start_server)
HANGING = "hang:upload.off"
"""The workers' fault hook: the worker never finishes an upload named ``*.off`` (spooled as
``upload.off``), so a request is reliably in flight while the library is swapped."""


def signatures(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "scanner.cli", "signatures", *args],
                          capture_output=True, text=True, timeout=120, cwd=REPO)  # fmt: skip
    assert done.returncode == 0, done.stderr


def enrol(lib: Path, path: Path, category: str) -> None:
    signatures("add", "--library", str(lib), "--category", category, "--source", "test-reload", str(path))


def scan_one(server: Server, name: str, data: bytes) -> dict:
    body, headers = multipart(name, data)
    status, answer = server.json("POST", "/v1/scan", body, **headers)
    assert status == 200, answer
    (record,) = answer["records"]
    return record


def wait_for(server: Server, done: Callable[[dict], bool], what: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status, answer = server.json("GET", "/v1/status")
        assert status == 200
        if done(answer):
            return answer
        assert server.proc.poll() is None, server.log.read_text(errors="replace")
        assert time.monotonic() < deadline, f"{what}: {answer}\n{server.log.read_text(errors='replace')}"
        time.sleep(0.2)


@pytest.fixture
def library(tmp_path: Path) -> Path:
    lib = tmp_path / "lib"
    signatures("init", "--library", str(lib), "--name", "reload test")
    enrol(lib, FIRST, "barrel")
    return lib


def test_sighup_swaps_in_the_new_library_and_refuses_a_corrupt_one(tmp_path: Path, library: Path) -> None:
    args = ("--library", str(library), "--no-model", "--workers", "2", "--reload-library", "--reload-poll", "0",
            "--limit-seconds", "20")  # fmt: skip
    with serving(tmp_path, *args, env={FAULT_INJECTION_ENV: HANGING}) as server:
        before = wait_for(server, lambda s: True, "status")
        old_version = before["library_version"]
        assert before["library_reload"] == {"enabled": True, "poll_seconds": 0, "attempts": 0, "last": None}
        assert before["library_loaded_at"].endswith("Z")
        assert scan_one(server, "first.stl", FIRST.read_bytes())["verdict"] == "flag"
        unknown = scan_one(server, SECOND.name, SECOND.read_bytes())
        assert unknown["verdict"] == "clear" and not unknown["matches"]

        # a request in flight across the swap: it hangs in its worker until the 20 s time limit
        in_flight: dict = {}
        slow = threading.Thread(target=lambda: in_flight.update(scan_one(server, "slow.off", b"OFF\n")))
        slow.start()
        wait_for(server, lambda s: s["in_flight"] == 1, "the hanging upload never started")

        enrol(library, SECOND, "slide_or_cylinder")
        server.proc.send_signal(signal.SIGHUP)
        after = wait_for(server, lambda s: s["library_version"] != old_version, "the library was not reloaded")
        assert slow.is_alive(), "the in-flight request must still be running when the swap is done"
        last = after["library_reload"]["last"]
        assert last["ok"] is True and last["swapped"] is True and last["trigger"] == "SIGHUP"
        assert last["library_version"] == after["library_version"]
        assert after["library_loaded_at"] >= before["library_loaded_at"]

        flagged = scan_one(server, SECOND.name, SECOND.read_bytes())
        assert flagged["verdict"] == "flag" and flagged["category"] == "slide_or_cylinder"
        assert flagged["library_version"] == after["library_version"]
        assert scan_one(server, "first.stl", FIRST.read_bytes())["verdict"] == "flag"

        slow.join(60)
        assert not slow.is_alive()
        # answered, by the old generation's worker, with the library it started with
        assert in_flight["verdict"] == "unscannable" and in_flight["reason"] == "limit:time"
        assert in_flight["library_version"] == old_version
        wait_for(server, lambda s: f"workers of library {old_version} stopped" in server.log.read_text(),
                 "the old workers were not stopped after their last request")  # fmt: skip

        # a corrupt library is refused: the running one stays and /v1/status says why
        (library / "signatures.json").write_bytes(b"garbage, not the checksummed content")
        server.proc.send_signal(signal.SIGHUP)
        refused = wait_for(server, lambda s: s["library_reload"]["attempts"] == 2, "the corrupt library was not tried")
        last = refused["library_reload"]["last"]
        assert last["ok"] is False and last["swapped"] is False
        assert last["error"].startswith("[library]") and "failed verification" in last["error"]
        assert "signatures.json" in last["error"]
        assert refused["library_version"] == after["library_version"]
        assert refused["library_loaded_at"] == after["library_loaded_at"]
        assert scan_one(server, SECOND.name, SECOND.read_bytes())["verdict"] == "flag"
        assert server.proc.poll() is None
        assert "refused" in server.log.read_text(errors="replace")


def test_a_changed_manifest_is_reloaded_without_a_signal(tmp_path: Path, library: Path) -> None:
    args = ("--library", str(library), "--no-model", "--workers", "1", "--reload-library", "--reload-poll", "0.5")
    with serving(tmp_path, *args) as server:
        old_version = wait_for(server, lambda s: True, "status")["library_version"]
        assert scan_one(server, SECOND.name, SECOND.read_bytes())["verdict"] == "clear"
        enrol(library, SECOND, "slide_or_cylinder")
        after = wait_for(server, lambda s: s["library_version"] != old_version, "the manifest change was missed")
        assert after["library_reload"]["last"]["trigger"] == "manifest changed"
        assert scan_one(server, SECOND.name, SECOND.read_bytes())["verdict"] == "flag"

        # a valid but empty library (every signature gone) is refused: never an empty library
        from scanner.library import SignatureLibrary

        SignatureLibrary.create(library, name="emptied").save(library)
        refused = wait_for(server, lambda s: s["library_reload"]["attempts"] == 2, "the emptied manifest was missed")
        last = refused["library_reload"]["last"]
        assert last["ok"] is False and "holds no signatures" in last["error"]
        assert refused["library_version"] == after["library_version"]
        assert scan_one(server, SECOND.name, SECOND.read_bytes())["verdict"] == "flag"
        status, _, metrics = server.request("GET", "/metrics")
        assert status == 200
        assert b'meshscan_serve_library_reloads_total{result="swapped"} 1.0' in metrics
        assert b'meshscan_serve_library_reloads_total{result="refused"} 1.0' in metrics


def test_reloading_is_opt_in(tmp_path: Path, library: Path) -> None:
    """The flag is opt-in: status says reloading is off."""
    with serving(tmp_path, "--library", str(library), "--no-model", "--workers", "1") as server:
        status = wait_for(server, lambda s: True, "status")
        assert status["library_reload"]["enabled"] is False and status["library_reload"]["attempts"] == 0
