"""A throwaway PostgreSQL server for the tests: Debian's binaries, a cluster in a temporary folder.

``initdb`` and ``postgres`` refuse to run as root, so as root the cluster belongs to the
``postgres`` system user and every command runs through ``runuser -u postgres --``. The
server listens on 127.0.0.1 only, on a free port, with its unix socket in the cluster's own
folder, trusts local connections (nothing else can reach it) and runs without fsync (it is
thrown away). The fixtures in ``tests/conftest.py`` start one per test session and give each
test a database of its own; they skip, saying why, only when the binaries are absent or the
server cannot start.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from itertools import count
from pathlib import Path

_NAMES = count(1)


def find_bindir() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: on PATH, else Debian's newest /usr/lib/postgresql/N/bin."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One throwaway cluster: :meth:`start`, :meth:`new_database`, :meth:`stop`."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="meshscan-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}"

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if self.as_root else list(args)

    def _run(self, *args: str) -> None:
        done = subprocess.run(self._cmd(*args), capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed: {(done.stderr or done.stdout).strip()[-600:]}")

    def start(self) -> None:
        """initdb, then start the server and wait until it accepts connections."""
        if self.as_root:
            user = pwd.getpwnam("postgres")  # KeyError: no postgres user to run it as
            os.chown(self.root, user.pw_uid, user.pw_gid)
        initdb = str(self.bindir / "initdb")
        self._run(initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60"
        log = str(self.root / "server.log")
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", log, "-o", options, "-w", "-t", "60", "start"
        )

    def new_database(self) -> str:
        """A fresh, empty database's URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(_NAMES)}"
        with psycopg.connect(f"{self.url}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"{self.url}/{name}"

    def stop(self) -> None:
        """Stop the server (fast shutdown) and delete the cluster."""
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"),
                capture_output=True,
                timeout=60,
                check=False,
            )
        shutil.rmtree(self.root, ignore_errors=True)


def copy_results(source: str | Path, target: str) -> int:
    """Copy every row of the results database ``source`` into ``target`` (through the store,
    as a scan records them): a test's SQLite fixture database, served from PostgreSQL too.
    Returns how many paths were copied."""
    import json

    from scanner.store.results import ResultsStore
    from scanner.verdict import Verdict

    files: dict[str, tuple[int | None, int | None, list[Verdict]]] = {}
    with ResultsStore.open_existing(source) as reader:
        for text, size, mtime_ns in reader.records_with_stat():
            verdict = Verdict.from_dict(json.loads(text))
            files.setdefault(verdict.path, (size, mtime_ns, []))[2].append(verdict)
    with ResultsStore(target) as writer:
        for path, (size, mtime_ns, verdicts) in files.items():
            writer.record(path, size, mtime_ns, verdicts)
    return len(files)
