"""`meshscan serve` under load (issue 13, item 3): requests/s and p50/p99 latency for small
uploads at concurrency 1, 8 and 32, and at a fixed 20 requests/s, against
``meshscan serve --workers 2``, next to ``meshscan scan --jobs 2`` files/s on the same files in
the same run.

    python bench/serve.py [--files 120] [--requests 200] [--rate 20] [--rate-seconds 10] [--seed 7]

Uploads: synthetic meshes from ``fixtures/generate.py`` (STL, OBJ, 3MF), keeping those of 1-5k
triangles, in a temporary folder. Each client holds one keep-alive connection and sends raw
bodies (``POST /v1/scan?name=...``); a 503 is counted and retried after its ``Retry-After`` (as a
well-behaved client would), and the latency of that request runs from its first attempt.
``scan --jobs 2`` is timed as a process on the whole folder (with its library/model start-up)
and, for the ratios, without it: the extra time the same command takes on a folder holding
every upload twice (no ``--db``, so copies are scanned again) is the time of N files, as the
server has paid its start-up before the first request. Targets (issue 13): concurrency 8 at
>= 80% of ``scan --jobs 2`` files/s; p99 <= 150 ms at 20 requests/s; no error at concurrency 32.
Standard library only on the client side (http.client + threads). Prints one table.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MESH_SUFFIXES = (".stl", ".obj", ".3mf")


def small_uploads(out: Path, count: int, seed: int) -> list[Path]:
    """``count`` meshes of 1-5k triangles from fixtures/generate.py (most of its shapes are
    coarser, so it is run with growing seeds until enough are found)."""
    import trimesh

    out.mkdir(parents=True)
    kept: list[Path] = []
    round_ = 0
    while len(kept) < count:
        gen = out.parent / f"gen-{round_}"
        subprocess.run([sys.executable, "-m", "fixtures.generate", "--out", str(gen), "--per-class", "20",
                        "--seed", str(seed + round_)], cwd=REPO, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        for path in sorted(gen.rglob("*")):
            if path.suffix.lower() not in MESH_SUFFIXES or len(kept) >= count:
                continue
            triangles = len(trimesh.load(path, force="mesh").faces)
            if 1000 <= triangles <= 5000:
                dest = out / f"u{len(kept):04d}-{path.name}"
                shutil.copy(path, dest)
                kept.append(dest)
        shutil.rmtree(gen)
        round_ += 1
    return kept


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(workers: int, log: Path) -> tuple[subprocess.Popen[bytes], int, float]:
    port = free_port()
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "scanner.cli", "serve", "--port", str(port),
                                 "--workers", str(workers)], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONPATH=str(REPO)))  # fmt: skip
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"meshscan serve exited: {log.read_text(errors='replace')}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/v1/status")
            if conn.getresponse().status == 200:
                conn.close()
                return proc, port, time.monotonic() - started
        except OSError:
            time.sleep(0.2)


@dataclass
class Run:
    label: str
    latencies: list[float] = field(default_factory=list)
    refused: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, latency: float) -> None:
        with self.lock:
            self.latencies.append(latency)

    def error(self, kind: str) -> None:
        with self.lock:
            self.errors += 1
            self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1

    def percentile(self, p: float) -> float:
        data = sorted(self.latencies)
        if not data:
            return float("nan")
        return data[min(len(data) - 1, max(0, round(p / 100 * len(data) + 0.5) - 1))]  # nearest rank

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


class Client:
    """One keep-alive connection; a 503 is counted and retried after Retry-After."""

    def __init__(self, port: int, run: Run) -> None:
        self.port, self.run = port, run
        self.conn: http.client.HTTPConnection | None = None

    def scan(self, path: Path, body: bytes) -> None:
        first = time.monotonic()
        url = "/v1/scan?name=" + urllib.parse.quote(path.name)
        while True:
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
                self.conn.request("POST", url, body, {"Content-Type": "application/octet-stream"})
                resp = self.conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                self.run.error(type(exc).__name__)
                return
            if resp.status == 503:
                with self.run.lock:
                    self.run.refused += 1
                time.sleep(float(resp.headers.get("Retry-After", "1")))
                continue
            if resp.status != 200 or "records" not in json.loads(data):
                self.run.error(f"HTTP {resp.status}")
                return
            self.run.ok(time.monotonic() - first)
            return

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def closed_loop(port: int, uploads: list[tuple[Path, bytes]], concurrency: int, requests: int) -> Run:
    """``concurrency`` clients, each sending its next upload as soon as the last is answered."""
    run = Run(f"serve, concurrency {concurrency}")
    counter = iter(range(requests))
    take = threading.Lock()

    def client() -> None:
        c = Client(port, run)
        while True:
            with take:
                i = next(counter, None)
            if i is None:
                break
            c.scan(*uploads[i % len(uploads)])
        c.close()

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.seconds = time.monotonic() - started
    return run


def open_loop(port: int, uploads: list[tuple[Path, bytes]], rate: float, seconds: float) -> Run:
    """Requests sent on a fixed schedule (``rate`` per second), whatever the answers: the
    latency a platform sees at that arrival rate."""
    run = Run(f"serve, {rate:g} requests/s")
    total = int(rate * seconds)
    local = threading.local()

    def one(i: int) -> None:
        if not hasattr(local, "client"):
            local.client = Client(port, run)
        local.client.scan(*uploads[i % len(uploads)])

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=64) as pool:
        for i in range(total):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(one, i)
    run.seconds = time.monotonic() - started
    return run


def time_scan(folder: Path, jobs: int) -> tuple[float, int]:
    """Seconds of ``meshscan scan --jobs N --format jsonl`` on ``folder`` and records written."""
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "scanner.cli", "scan", "--jobs", str(jobs), "--format", "jsonl",
                             str(folder)], cwd=REPO, capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))  # fmt: skip
    seconds = time.monotonic() - started
    if result.returncode not in (0, 1):
        raise SystemExit(f"meshscan scan failed ({result.returncode}): {result.stderr[-2000:]}")
    return seconds, sum(1 for line in result.stdout.splitlines() if line.strip())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=120, help="distinct uploads of 1-5k triangles")
    ap.add_argument("--requests", type=int, default=200, help="requests per concurrency level")
    ap.add_argument("--rate", type=float, default=20.0, help="arrival rate of the open-loop run")
    ap.add_argument("--rate-seconds", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="meshscan-bench-serve-") as tmp:
        folder = Path(tmp) / "uploads"
        files = small_uploads(folder, args.files, args.seed)
        uploads = [(p, p.read_bytes()) for p in files]
        size_kb = sum(len(b) for _, b in uploads) / len(uploads) / 1024

        doubled = Path(tmp) / "doubled"
        doubled.mkdir()
        for path in files:
            shutil.copy(path, doubled / path.name)
            shutil.copy(path, doubled / ("again-" + path.name))
        scan_s, records = time_scan(folder, 2)
        doubled_s, _ = time_scan(doubled, 2)
        scan_wall = len(files) / scan_s
        scan_warm = len(files) / max(doubled_s - scan_s, 1e-9)  # N more files cost this much more

        proc, port, startup = start_server(2, Path(tmp) / "serve.log")
        try:
            closed_loop(port, uploads, 2, min(10, len(uploads)))  # warm-up: first forks, caches
            runs = [closed_loop(port, uploads, c, args.requests) for c in (1, 8, 32)]
            runs.append(open_loop(port, uploads, args.rate, args.rate_seconds))
        finally:
            proc.terminate()
            proc.wait(30)

    print(f"{len(files)} uploads of 1-5k triangles (fixtures/generate.py; STL, OBJ, 3MF; mean {size_kb:.0f} KiB), "
          f"{os.cpu_count()} CPUs; server start-up {startup:.1f} s")  # fmt: skip
    head = f"{'run':<34} {'done':>5} {'503':>5} {'errors':>6} {'files/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'vs scan':>8}"
    print(head)
    print("-" * len(head))
    print(f"{'scan --jobs 2 (wall, with start-up)':<34} {records:>5} {'':>5} {'':>6} {scan_wall:>8.1f} "
          f"{'':>7} {'':>7} {scan_wall / scan_warm:>7.0%}")  # fmt: skip
    print(f"{'scan --jobs 2 (without start-up)':<34} {records:>5} {'':>5} {'':>6} {scan_warm:>8.1f} "
          f"{'':>7} {'':>7} {1:>7.0%}")  # fmt: skip
    for run in runs:
        p50, p99 = run.percentile(50) * 1000, run.percentile(99) * 1000
        print(f"{run.label:<34} {len(run.latencies):>5} {run.refused:>5} {run.errors:>6} {run.rate:>8.1f} "
              f"{p50:>7.0f} {p99:>7.0f} {run.rate / scan_warm:>7.0%}")  # fmt: skip
    c8, c32, paced = runs[1], runs[2], runs[3]
    print()
    print(f"target: concurrency 8 >= 80% of scan --jobs 2 files/s: {c8.rate / scan_warm:.0%} "
          f"({'met' if c8.rate >= 0.8 * scan_warm else 'missed'})")  # fmt: skip
    print(f"target: p99 <= 150 ms at {args.rate:g} requests/s: {paced.percentile(99) * 1000:.0f} ms "
          f"({'met' if paced.percentile(99) <= 0.150 and not paced.errors else 'missed'})")  # fmt: skip
    kinds = ", ".join(f"{k} x{n}" for k, n in sorted(c32.error_kinds.items())) or "none"
    print(f"target: no error at concurrency 32: {c32.errors} error(s) ({kinds}); {c32.refused} answered 503 "
          f"and retried ({'met' if not c32.errors else 'missed'})")  # fmt: skip


if __name__ == "__main__":
    main()
