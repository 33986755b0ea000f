"""Every command of the README's "Sharing libraries" section runs as written, in order, and
ends with the exit code the README gives it (``# exit N``; 0 when none is given): a publisher
makes and signs bundles, a platform subscribes and scans, and the threatexchange CLI hashes and
matches meshes with meshscan's signals."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SECTION = (REPO / "README.md").read_text(encoding="utf-8").split("\n## Sharing libraries\n", 1)[1].split("\n## ", 1)[0]
BLOCKS = re.findall(r"```sh\n(.*?)```", SECTION, flags=re.S)
COMMANDS = [line for block in BLOCKS for line in block.splitlines() if line.strip()]


def expected_exit(line: str) -> int:
    found = re.search(r"#\s*exit (\d+)\s*$", line)
    return int(found.group(1)) if found else 0


def test_the_section_shows_publisher_subscriber_and_hma() -> None:
    text = " ".join(COMMANDS)
    needed = ("signatures keygen", "export --library", "--sign", "signatures verify", "signatures update",
              "threatexchange config extensions add scanner.exchange.tx", "threatexchange match mesh")  # fmt: skip
    for command in needed:
        assert command in text


def test_every_command_runs_as_written(tmp_path: Path) -> None:
    pytest.importorskip("threatexchange", reason="the [threatexchange] extra is not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, module in (("meshscan", "scanner.cli"), ("threatexchange", "threatexchange")):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m {module} "$@"\n')
        shim.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    (work / "fixtures").symlink_to(REPO / "fixtures")
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(REPO),
           "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    outputs = {}
    for line in COMMANDS:
        done = subprocess.run(["bash", "-c", line], cwd=work, env=env, capture_output=True, text=True, timeout=300,
                              check=False)  # fmt: skip
        assert done.returncode == expected_exit(line), f"{line}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr, done.stderr
        outputs[line] = done.stdout + done.stderr
    refused = next(out for line, out in outputs.items() if line.endswith("# exit 3"))
    assert "[rollback]" in refused
    match = next(out for line, out in outputs.items() if line.startswith("threatexchange match"))
    assert "mesh_geometry_hash" in match and "mesh_descriptor" in match and "(meshscan)" in match
    assert (work / "subscribed").is_symlink()
