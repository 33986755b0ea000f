"""``meshscan signatures upgrade``: a format-1 library rewritten in format 2 keeps every
signature, verifies, and gives the same verdicts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scanner.cli", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=600)  # fmt: skip


def test_upgrade_converts_the_shipped_library_and_keeps_its_verdicts(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    shutil.copytree(REPO / "signatures", lib)
    listed = run("signatures", "list", "--library", str(lib), "--json")
    done = run("signatures", "upgrade", "--library", str(lib))
    assert done.returncode == 0 and "from format 1 to 2" in done.stdout, done.stderr
    assert json.loads((lib / "manifest.json").read_text())["format_version"] == 2
    again = run("signatures", "upgrade", "--library", str(lib))
    assert again.returncode == 0 and "already in format 2" in again.stdout
    verified = run("signatures", "verify", "--library", str(lib))
    assert verified.returncode == 0 and verified.stdout.startswith("OK:"), verified.stderr
    assert run("signatures", "list", "--library", str(lib), "--json").stdout == listed.stdout
    demo = REPO / "fixtures" / "demo"
    before = run("scan", str(demo), "--format", "json")
    after = run("scan", str(demo), "--format", "json", "--library", str(lib))
    strip = lambda out: [  # noqa: E731 - verdicts without times and the library version
        {k: v for k, v in r.items() if k not in ("scanned_at", "library_version", "elapsed_s")} for r in json.loads(out)
    ]
    assert before.returncode == after.returncode == 1
    assert strip(after.stdout) == strip(before.stdout) and len(strip(before.stdout)) > 10


def test_upgrade_refuses_a_tampered_library(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    shutil.copytree(REPO / "signatures", lib)
    (lib / "signatures.json").write_text("[]")
    done = run("signatures", "upgrade", "--library", str(lib))
    assert done.returncode == 3 and "signatures.json does not match its checksum" in done.stderr
    assert json.loads((lib / "manifest.json").read_text())["format_version"] == 1
