"""contrib/meshscan-watch.service: `systemd-analyze verify` passes, `systemd-analyze security`
rates it 2.0 or lower, and its ExecStart line - with the example environment file - is a
command line `meshscan watch` accepts and runs."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration.test_watch_daemon import DEMO, MESHSCAN, free_port, verdict_lines, watch_library  # noqa: F401 - a fixture

UNIT = REPO / "contrib" / "meshscan-watch.service"
ENV = REPO / "contrib" / "meshscan-watch.env"
BINARY = "/opt/meshscan/bin/meshscan"

needs_systemd = pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")


def directives(text: str) -> list[tuple[str, str]]:
    """``(key, value)`` of every directive, continuation lines joined, comments left out."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.append((key, value))
    return out


def env_file(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line.strip() and not line.startswith("#"))


@needs_systemd
def test_unit_verifies_with_its_binary_in_place() -> None:
    """`verify` checks that ExecStart's binary exists: it is put at its documented place in a
    private mount namespace (a tmpfs on /opt), so nothing is installed on this machine."""
    script = f'mount -t tmpfs none /opt && mkdir -p {Path(BINARY).parent} && ln -s "$1" {BINARY} && exec systemd-analyze verify "$0"'  # noqa: E501
    cmd = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]
    proc = subprocess.run([*cmd, "sh", "-c", script, str(UNIT), sys.executable], capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr


@needs_systemd
def test_unit_exposure_is_at_most_2() -> None:
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", str(UNIT)], capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    level = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert level, proc.stdout + proc.stderr
    assert float(level.group(1)) <= 2.0, proc.stdout


def test_unit_is_a_notify_service_with_a_watchdog_and_the_operators_library() -> None:
    d = dict(directives(UNIT.read_text()))
    assert d["Type"] == "notify" and int(d["WatchdogSec"]) > 0 and d["EnvironmentFile"] == "/etc/meshscan/watch.env"
    assert "fixtures" not in UNIT.read_text() and "${MESHSCAN_LIBRARY}" in d["ExecStart"]


def test_exec_start_with_the_example_environment_runs(
    tmp_path: Path,
    watch_library: Path,  # noqa: F811 - a fixture
) -> None:
    """ExecStart expanded as systemd would ($VAR split on spaces, ${VAR} one word) with the
    example environment, its paths moved into tmp_path, run with --once on a real file."""
    env = env_file(ENV.read_text())
    up, q, lib_state = tmp_path / "up", tmp_path / "q", tmp_path / "state"
    up.mkdir()
    lib_state.mkdir()
    shutil.copy(DEMO / "benign-pipe-s1-002.stl", up / "a.stl")
    env.update(MESHSCAN_ROOTS=str(up), MESHSCAN_QUARANTINE=str(q), MESHSCAN_LIBRARY=str(watch_library))
    env["MESHSCAN_OPTIONS"] = env["MESHSCAN_OPTIONS"].replace("9108", str(free_port())) + " --once --no-model"
    line = dict(directives(UNIT.read_text()))["ExecStart"].replace("/var/lib/meshscan", str(lib_state))
    line = re.sub(r"\$\{(\w+)\}", lambda m: shlex.quote(env[m.group(1)]), line)
    line = re.sub(r"\$(\w+)", lambda m: env[m.group(1)], line)
    argv = shlex.split(line)
    assert argv[0] == BINARY and argv[1] == "watch"
    proc = subprocess.run([*MESHSCAN, *argv[1:]], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [r["verdict"] for r in verdict_lines(lib_state / "verdicts.jsonl")] == ["clear"]
