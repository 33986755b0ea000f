"""`meshscan serve --reload-library` over a *subscribed* library (issue 14, item 2): the library
is a symlink that `signatures update` swaps to a new folder; the server notices (its manifest
poll), loads the new version and serves it - with scans running all along, none failing."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.integration._publishing import Publisher
from tests.integration.test_serve import Server, multipart, start_server
from tests.integration.test_serve_reload import wait_for

pytestmark = pytest.mark.timeout(240)

DEMO = REPO / "fixtures" / "demo"
FIRST = DEMO / "proxy-barrel-s1-000.stl"
SECOND = DEMO / "proxy-slide_or_cylinder-s1-000.obj"
serving = contextlib.contextmanager(start_server)


def scan(server: Server, path: Path) -> tuple[int, dict]:
    body, headers = multipart(path.name, path.read_bytes())
    return server.json("POST", "/v1/scan", body, **headers)


class Traffic:
    """Scans of the first proxy in a loop, from another thread, each checked as it is answered."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.answers: list[tuple[int, str, str | None]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status, answer = scan(self.server, FIRST)
            except Exception as exc:  # noqa: BLE001 - recorded and asserted on below
                self.failures.append(repr(exc))
                continue
            record = answer.get("records", [{}])[0] if status == 200 else {}
            self.answers.append((status, record.get("verdict", ""), record.get("library_version")))
            if status != 200 or record.get("verdict") != "flag":
                self.failures.append(f"{status}: {answer}")

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def test_an_update_is_served_without_a_restart_and_no_request_fails(tmp_path: Path) -> None:
    publisher = Publisher(tmp_path / "publisher")
    publisher.enrol(FIRST, "barrel")
    subscribed = tmp_path / "subscribed"
    publisher.update(subscribed, publisher.publish())
    assert subscribed.is_symlink()

    args = ("--library", str(subscribed), "--no-model", "--workers", "2", "--reload-library", "--reload-poll", "0.3")
    with serving(tmp_path, *args) as server:
        before = wait_for(server, lambda s: True, "status")
        old_version = before["library_version"]
        status, answer = scan(server, SECOND)
        assert status == 200 and answer["records"][0]["verdict"] == "clear"

        with Traffic(server) as traffic:
            wait_for(server, lambda s: len(traffic.answers) >= 3, "no scan was answered before the update")
            publisher.enrol(SECOND, "slide_or_cylinder")
            report = publisher.update(subscribed, publisher.publish())
            assert "added 1 slide_or_cylinder" in report
            after = wait_for(server, lambda s: s["library_version"] != old_version, "the update was not picked up")
            seen = len(traffic.answers)
            wait_for(server, lambda s: len(traffic.answers) >= seen + 3, "no scan was answered after the update")

        assert traffic.failures == []
        versions = [v for _, _, v in traffic.answers]
        assert versions[0] == old_version and versions[-1] == after["library_version"]
        last = after["library_reload"]["last"]
        assert last["ok"] is True and last["swapped"] is True and last["trigger"] == "manifest changed"
        assert after["library_version"] == last["library_version"]

        status, answer = scan(server, SECOND)
        (record,) = answer["records"]
        assert status == 200 and record["verdict"] == "flag" and record["category"] == "slide_or_cylinder"
        assert record["library_version"] == after["library_version"]
        assert record["matches"][0]["publisher"] == publisher.name
        assert f"(published by {publisher.name})" in record["explanation"]
        assert server.proc.poll() is None
