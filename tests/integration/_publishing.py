"""A publisher and a subscriber driven through the real commands, for the tests that update a
library under a running ``serve`` or ``watch``: keygen, enrol, export --sign, update."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO


def meshscan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scanner.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=REPO, check=False)  # fmt: skip


def ok(*args: str) -> str:
    done = meshscan(*args)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@dataclass
class Publisher:
    """A publisher's key pair and own library; :meth:`publish` signs its next bundle."""

    root: Path
    name: str = "Example authority"
    bundles: int = 0

    def __post_init__(self) -> None:
        ok("signatures", "keygen", "--out", str(self.keys), "--name", "authority")
        ok("signatures", "init", "--library", str(self.library), "--name", self.name)

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    @property
    def library(self) -> Path:
        return self.root / "authority-lib"

    @property
    def public_key(self) -> Path:
        return self.keys / "authority.pub"

    def enrol(self, path: Path, category: str) -> None:
        ok("signatures", "add", str(path), "--library", str(self.library), "--category", category, "--source", "case")

    def publish(self) -> Path:
        """Sign the library as the next bundle version; returns the bundle's path."""
        self.bundles += 1
        out = self.root / f"authority-{self.bundles}.bundle"
        previous = ["--previous", str(self.root / f"authority-{self.bundles - 1}.bundle")] if self.bundles > 1 else []
        ok("signatures", "export", "--library", str(self.library), "--sign", str(self.keys / "authority.key"),
           "--publisher", self.name, *previous, "--out", str(out))  # fmt: skip
        return out

    def update(self, subscribed: Path, bundle: Path) -> str:
        """``signatures update`` of ``subscribed`` from ``bundle`` (exit 0: updated)."""
        return ok("signatures", "update", str(bundle), "--library", str(subscribed), "--trust", str(self.public_key))
