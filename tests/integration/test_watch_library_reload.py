"""`meshscan watch` picks up an updated library without a restart and without losing a file
(issue 14, item 2): a real daemon watches a folder with a library subscribed from a signed
bundle; uploads keep arriving while `signatures update` swaps the library; every upload gets
exactly one verdict, the switch is logged and counted, a file of the newly published
signature flags - and a library that cannot be used is refused while scanning goes on."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from scanner.engines.worker import FAULT_INJECTION_ENV
from tests.integration._publishing import Publisher
from tests.integration.test_watch_daemon import (  # noqa: F401 - daemons: a fixture
    DEMO,
    Daemon,
    daemons,
    free_port,
    query,
    verdict_lines,
    wait_for,
)

pytestmark = pytest.mark.timeout(300)

FIRST = DEMO / "proxy-barrel-s1-000.stl"
SECOND = DEMO / "proxy-slide_or_cylinder-s1-000.obj"


class Uploader:
    """Copies of the first proxy, one every ``pause`` seconds, each renamed into place."""

    def __init__(self, folder: Path, pause: float = 0.15) -> None:
        self.folder, self.pause = folder, pause
        self.names: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        data = FIRST.read_bytes()
        while not self._stop.is_set():
            name = f"copy-{len(self.names):03d}.stl"
            part = self.folder / f".{name}.part"
            part.write_bytes(data)
            os.rename(part, self.folder / name)
            self.names.append(name)
            time.sleep(self.pause)

    def __enter__(self) -> Uploader:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def by_name(log: Path) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for record in verdict_lines(log):
        out.setdefault(Path(record["path"]).name, []).append(record)
    return out


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def test_an_update_is_picked_up_between_files_and_none_is_lost(
    tmp_path: Path,
    daemons: list,  # noqa: F811 - a fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(FAULT_INJECTION_ENV, "hang:slow.stl")  # a scan still running when the update lands
    publisher = Publisher(tmp_path / "publisher")
    publisher.enrol(FIRST, "barrel")
    subscribed = tmp_path / "subscribed"
    publisher.update(subscribed, publisher.publish())
    up, state, log, port = tmp_path / "up", tmp_path / "state.sqlite", tmp_path / "verdicts.jsonl", free_port()
    up.mkdir()
    d = Daemon(
        tmp_path,
        str(up),
        "--state",
        str(state),
        "--log",
        str(log),
        "--library",
        str(subscribed),
        "--no-model",
        "--jobs",
        "2",
        "--settle",
        "0.3",
        "--metrics-port",
        str(port),
        "--limit-seconds",
        "20",
        "-v",
    )  # fmt: skip  (the hang outlasts a slow enrol + publish + update)
    daemons.append(d.start())
    d.wait_started()

    with Uploader(up) as uploads:
        wait_for(lambda: len(verdict_lines(log)) >= 3, 60, "scans before the update", d.proc)
        old_version = verdict_lines(log)[0]["library_version"]
        shutil.copy(FIRST, up / "slow.stl")
        wait_for(lambda: [x for x in d.logs("scanning") if x["path"].endswith("slow.stl")], 30, "slow.stl", d.proc)
        publisher.enrol(SECOND, "slide_or_cylinder")
        assert "added 1 slide_or_cylinder" in publisher.update(subscribed, publisher.publish())
        changed = wait_for(lambda: d.logs("library changed; switching once the running scans are recorded"), 30,
                           "the library change", d.proc)  # fmt: skip
        assert changed[0]["running"] >= 1 and changed[0]["to"] != old_version
        assert "slow.stl" not in by_name(log), "the hanging scan should still be running"
        switched = wait_for(lambda: d.logs("library reloaded"), 60, "the library reload", d.proc)
        assert "slow.stl" in by_name(log), "the switch must wait for the running scan to be recorded"
        new_version = switched[0]["library_version"]
        assert new_version != old_version and switched[0]["was"] == old_version and switched[0]["signatures"] == 2
        wait_for(lambda: sum(r["library_version"] == new_version for r in verdict_lines(log)) >= 3, 60,
                 "scans after the update", d.proc)  # fmt: skip
    shutil.copy(SECOND, up / "second.obj")  # a file of the newly published signature

    expected = {*uploads.names, "slow.stl", "second.obj"}
    wait_for(lambda: expected <= set(by_name(log)), 60, "a verdict for every upload", d.proc)
    records = by_name(log)
    assert set(records) == expected
    assert all(len(rs) == 1 for rs in records.values()), "a file was scanned twice"
    copies = [records[name][0] for name in uploads.names]
    assert all(r["verdict"] == "flag" for r in copies)
    versions = [r["library_version"] for r in sorted(copies, key=lambda r: r["scanned_at"])]
    assert versions[0] == old_version and versions[-1] == new_version
    assert set(versions) == {old_version, new_version}
    slow = records["slow.stl"][0]  # finished (at its time limit) with the library it started with
    assert slow["verdict"] == "unscannable" and slow["reason"] == "limit:time"
    assert slow["library_version"] == old_version
    second = records["second.obj"][0]
    assert second["verdict"] == "flag" and second["category"] == "slide_or_cylinder"
    assert second["library_version"] == new_version
    assert second["matches"][0]["publisher"] == publisher.name
    # the journal agrees with the log (committed just after the log line): one scanned row per upload
    rows = wait_for(lambda: len(found := query(state, "SELECT path, state FROM watch_files")) == len(expected)
                    and found, 30, "the journal", d.proc)  # fmt: skip
    assert sorted(Path(p).name for p, _ in rows) == sorted(expected)
    assert {s for _, s in rows} == {"scanned"}
    changed = d.logs("library changed; switching once the running scans are recorded")
    assert [x["to"] for x in changed] == [new_version]
    text = metrics(port)
    assert 'meshscan_watch_library_reloads_total{result="swapped"} 1.0' in text
    assert f'library="{new_version}"' in text and f'library="{old_version}"' not in text

    # a library that does not verify is refused: the running one stays, scanning goes on
    bad = tmp_path / "bad-library"
    shutil.copytree(subscribed.resolve(), bad)
    (bad / "signatures.json").write_text("[]", "utf-8")  # no longer what the manifest's checksum says
    manifest = json.loads((bad / "manifest.json").read_text("utf-8"))
    (bad / "manifest.json").write_text(json.dumps({**manifest, "library_version": "0badc0ffee00"}), "utf-8")
    link = tmp_path / ".subscribed.tmp-link"
    os.symlink(bad, link)
    os.replace(link, subscribed)
    refused = wait_for(lambda: d.logs("library reload refused; keeping the running library"), 30, "the refusal",
                       d.proc)  # fmt: skip
    assert refused[0]["library_version"] == new_version and "failed verification" in refused[0]["error"]
    assert refused[0]["refused_version"] == "0badc0ffee00"
    shutil.copy(SECOND, up / "after-refusal.obj")
    wait_for(lambda: "after-refusal.obj" in by_name(log), 60, "a scan after the refusal", d.proc)
    after = by_name(log)["after-refusal.obj"][0]
    assert after["verdict"] == "flag" and after["library_version"] == new_version
    assert 'meshscan_watch_library_reloads_total{result="refused"} 1.0' in metrics(port)
    assert len(d.logs("library reloaded")) == 1
    assert d.stop() == 0
