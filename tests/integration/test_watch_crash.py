"""The crash test: 2,000 uploads arrive while `meshscan watch` is killed with SIGKILL twice
mid-burst and restarted.

A writer process (this file, run as a script) produces the uploads from a seeded plan: most
are small non-mesh files (scanned fast, ``unscannable``), some copies of benign fixtures, and
some byte copies of the proxies the test library enrols (flagged, quarantined). Uploads are
written in one go, slowly in chunks (kept open for up to a second), or under a temporary name
then renamed; some are later rewritten (in place or by rename over) - a few of those into a
flagged proxy - and some deleted.

At the end, with the daemon stopped by SIGTERM:

* every surviving upload has exactly one verdict for its final content (state DB and log);
* no (path, content) pair was ever given two verdicts, and no verdict was ever given for
  content the writer had not finished writing (a half-written file), or under a temporary name;
* every upload whose final content is flagged sits in quarantine exactly once, with its
  sidecar, and nothing else is there;
* every flagged verdict was posted to a webhook endpoint (127.0.0.1) that refused its first
  answers: one outbox entry per verdict, every one delivered.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __name__ != "__main__":
    import pytest

    from tests.integration.test_watch_daemon import (  # noqa: F401 - fixtures
        DEMO,
        PROXIES,
        Daemon,
        Receiver,
        daemons,
        query,
        verdict_lines,
        wait_for,
        watch_library,
    )

N_FILES = 2000
RATE = 100.0  # uploads started per second by the writer
SEED = 20261129


# ---------------------------------------------------------------------------------------------- the plan


def content(spec: dict) -> bytes:
    """The bytes of one version of an upload (the writer and the test compute the same)."""
    if spec["kind"] == "garbage":
        rng = random.Random(spec["seed"])
        # unknown binary (a NUL: never text, which a content-judging walk skips as no model)
        return b"not a mesh\x00" + rng.randbytes(spec["size"])
    return Path(spec["src"]).read_bytes()


def make_plan(demo: Path, seed: int = SEED, n: int = N_FILES) -> list[dict]:
    rng = random.Random(seed)
    proxies = [str(p) for p in sorted(demo.glob("proxy-*-s1-000.*"))]
    benign = [str(p) for p in sorted(demo.glob("benign-*"))]
    kinds = ["proxy"] * 40 + ["benign"] * 80 + ["garbage"] * (n - 120)
    rng.shuffle(kinds)
    plan = []
    for i, kind in enumerate(kinds):
        if kind == "proxy":
            v1 = {"kind": "file", "src": rng.choice(proxies)}
        elif kind == "benign":
            v1 = {"kind": "file", "src": rng.choice(benign)}
        else:
            v1 = {"kind": "garbage", "seed": rng.getrandbits(64), "size": rng.randint(20, 400)}
        ext = os.path.splitext(v1.get("src", ""))[1] or rng.choice([".stl", ".bin", ".obj"])
        item = {
            "path": f"u{i % 23:02d}/s{(i // 7) % 5}/f{i:04d}{ext}",
            "v1": v1,
            "mode": rng.choices(["direct", "slow", "rename"], [0.65, 0.15, 0.2])[0],
            "after": None,
        }
        roll = rng.random()
        if kind != "proxy" and roll < 0.10:
            to_proxy = rng.random() < 0.1
            v2 = {"kind": "file", "src": rng.choice(proxies)} if to_proxy else {
                "kind": "garbage", "seed": rng.getrandbits(64), "size": rng.randint(20, 400)}  # fmt: skip
            item["after"] = {"op": "modify", "delay": rng.uniform(0.1, 2.0), "v2": v2,
                             "mode": rng.choice(["direct", "slow", "rename"])}  # fmt: skip
        elif kind != "proxy" and roll < 0.15:
            item["after"] = {"op": "delete", "delay": rng.uniform(0.0, 1.5)}
        plan.append(item)
    return plan


def expected(plan: list[dict], proxy_shas: set[str]) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Final sha256 of every surviving upload, and every complete version of each path."""
    final, complete = {}, {}
    for item in plan:
        shas = [hashlib.sha256(content(item["v1"])).hexdigest()]
        after = item["after"]
        if after and after["op"] == "modify":
            shas.append(hashlib.sha256(content(after["v2"])).hexdigest())
        complete[item["path"]] = set(shas)
        if not (after and after["op"] == "delete"):
            final[item["path"]] = shas[-1]
    return final, complete


# ---------------------------------------------------------------------------------------------- the writer


def _write(path: Path, data: bytes, mode: str, rng: random.Random) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "rename":
        tmp = path.with_name(rng.choice([f".{path.name}.part", f"{path.name}.part", f".~{path.name}"]))
        tmp.write_bytes(data)
        os.rename(tmp, path)
    elif mode == "slow":
        chunks = rng.randint(3, 6)
        step = max(1, -(-len(data) // chunks))
        with open(path, "wb") as fh:
            for i in range(0, len(data), step):
                fh.write(data[i : i + step])
                fh.flush()
                time.sleep(rng.uniform(0.05, 0.2))
    else:
        path.write_bytes(data)


def run_writer(root: Path, plan_path: Path, progress_path: Path) -> None:
    plan = json.loads(plan_path.read_text())
    rng_lock = threading.Lock()
    later: list[tuple[float, int]] = []
    later_cv = threading.Condition()
    progress = open(progress_path, "a", buffering=1)

    def note(line: str) -> None:
        with rng_lock:
            progress.write(line + "\n")

    def first(i: int) -> None:
        item = plan[i]
        _write(root / item["path"], content(item["v1"]), item["mode"], random.Random(i))
        note(f"wrote {i}")
        if item["after"]:
            with later_cv:
                heapq.heappush(later, (time.monotonic() + item["after"]["delay"], i))
                later_cv.notify()

    def second(i: int) -> None:
        item, after = plan[i], plan[i]["after"]
        path = root / item["path"]
        if after["op"] == "delete":
            path.unlink()
        else:
            _write(path, content(after["v2"]), after["mode"], random.Random(-i))
        note(f"{after['op']} {i}")

    pool = ThreadPoolExecutor(24)
    t0 = time.monotonic()
    futures = []
    done_first = threading.Event()

    def scheduler() -> None:
        while True:
            with later_cv:
                while not later and not done_first.is_set():
                    later_cv.wait(0.1)
                if not later and done_first.is_set():
                    return
                when, i = later[0]
                if when > time.monotonic():
                    later_cv.wait(min(0.05, when - time.monotonic()))
                    continue
                heapq.heappop(later)
            futures.append(pool.submit(second, i))

    sched = threading.Thread(target=scheduler)
    sched.start()
    for i in range(len(plan)):
        delay = t0 + i / RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        futures.append(pool.submit(first, i))
    for f in list(futures):
        f.result()
    done_first.set()
    sched.join()
    for f in list(futures):
        f.result()
    pool.shutdown()
    note("done")
    progress.close()


# ---------------------------------------------------------------------------------------------- the test

if __name__ != "__main__":

    @pytest.fixture
    def receiver():
        """A webhook endpoint on 127.0.0.1 that fails its first five answers."""
        r = Receiver(fail_first=5)
        yield r
        r.close()

    @pytest.mark.timeout(280)
    def test_kill_9_mid_burst_loses_nothing_and_repeats_nothing(tmp_path: Path, watch_library: Path,
                                                                daemons: list, receiver: Receiver) -> None:  # fmt: skip
        import subprocess

        up, q = tmp_path / "uploads", tmp_path / "quarantine"
        state, log = tmp_path / "state.sqlite", tmp_path / "verdicts.jsonl"
        up.mkdir()
        plan = make_plan(DEMO)
        plan_path, progress = tmp_path / "plan.json", tmp_path / "progress.txt"
        plan_path.write_text(json.dumps(plan))
        proxy_shas = {hashlib.sha256(p.read_bytes()).hexdigest() for p in PROXIES}
        final, complete = expected(plan, proxy_shas)
        flagged = {p for p, s in final.items() if s in proxy_shas}
        assert len(flagged) >= 30 and len(final) < N_FILES  # the plan exercises what it should

        d = Daemon(tmp_path, str(up), "--quarantine", str(q), "--state", str(state), "--log", str(log),
                   "--library", str(watch_library), "--no-model", "--jobs", "2", "--settle", "1",
                   "--reconcile-every", "5", "--action", "quarantine",
                   "--action", f"webhook:{receiver.url}")  # fmt: skip
        daemons.append(d.start())
        d.wait_started()
        writer_err = tmp_path / "writer.err"
        with open(writer_err, "wb") as err:
            writer = subprocess.Popen([sys.executable, __file__, str(up), str(plan_path), str(progress)], stderr=err)
        try:

            def written() -> int:
                return progress.read_text().count("wrote") if progress.exists() else 0

            wait_for(lambda: written() >= 600, 60, "600 uploads", d.proc)
            d.kill9()  # mid-burst; the writer goes on while the daemon is down
            wait_for(lambda: written() >= 800, 60, "uploads while the daemon is down")
            d.start()
            wait_for(lambda: written() >= 1400, 60, "1400 uploads", d.proc)
            d.kill9()
            d.start()
            assert writer.wait(120) == 0, writer_err.read_text()
        finally:
            if writer.poll() is None:
                writer.kill()
                writer.wait()

        def converged() -> bool:
            rows = query(state, "SELECT path, sha256 FROM results")
            got = {p.removeprefix(str(up) + "/"): s for p, s in rows}
            pending = query(state, "SELECT COUNT(*) FROM watch_actions WHERE state = 'pending'")
            undelivered = query(state, "SELECT COUNT(*) FROM webhook_outbox WHERE state != 'delivered'")
            return all(got.get(p) == s for p, s in final.items()) and pending == [(0,)] and undelivered == [(0,)]

        wait_for(converged, 120, "a verdict for the final content of every upload", d.proc)
        assert d.stop() == 0
        for run in range(1, d.runs + 1):
            err = (tmp_path / f"daemon-{run}.err").read_text()
            assert "Traceback" not in err, err[-3000:]
            for line in err.splitlines():  # structured log lines only
                assert isinstance(json.loads(line), dict), line

        # exactly one verdict per surviving upload, for its final content (state DB)
        rows = query(state, "SELECT path, sha256, verdict FROM results")
        by_path = Counter(p for p, _, _ in rows)
        assert max(by_path.values()) == 1
        got = {p.removeprefix(str(up) + "/"): (s, v) for p, s, v in rows}
        for path, digest in final.items():
            assert got[path][0] == digest, path
            assert (got[path][1] == "flag") == (path in flagged), path

        # the log: never two verdicts for the same content of a path, never a half-written or temporary file
        lines = verdict_lines(log)
        pairs = Counter((r["path"].removeprefix(str(up) + "/"), r["sha256"]) for r in lines)
        twice = [k for k, c in pairs.items() if c > 1]
        assert not twice, f"scanned twice: {twice[:5]}"
        for (path, digest), _ in pairs.items():
            assert path in complete, f"verdict for a temporary name: {path}"
            assert digest in complete[path], f"verdict for a half-written {path}"
        for path, digest in final.items():
            assert pairs[(path, digest)] == 1, path

        # quarantine: every flagged upload exactly once, with its sidecar; nothing else
        moved = sorted(str(p.relative_to(q)) for p in q.rglob("*") if p.is_file() and not p.name.endswith(".json"))
        assert moved == sorted(flagged)
        for path in flagged:
            assert not (up / path).exists()
            assert hashlib.sha256((q / path).read_bytes()).hexdigest() == final[path]
            assert json.loads((q / (path + ".meshscan.json")).read_text())["sha256"] == final[path]
        for path in set(final) - flagged:
            assert hashlib.sha256((up / path).read_bytes()).hexdigest() == final[path]

        # webhook: one post enqueued per flagged verdict, each delivered (retried with the same id
        # after failures; sent again only if a kill fell between the answer and its record)
        outbox = dict(query(state, "SELECT id, body FROM webhook_outbox"))
        flag_lines = [r for r in lines if r["verdict"] == "flag"]
        assert len(outbox) == len(flag_lines) >= len(flagged)
        delivered = receiver.delivered()
        assert set(delivered) == set(outbox)
        assert sorted(b["path"] for b in delivered.values()) == sorted(r["path"] for r in flag_lines)
        assert sum(s != 200 for _, _, s in receiver.requests) == 5


if __name__ == "__main__":
    run_writer(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
