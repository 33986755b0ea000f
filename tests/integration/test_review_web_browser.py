"""The web review queue in a real browser: Debian's Chromium driven by Playwright (pointed at
the system browser; no browser is downloaded), against the real server started as
`meshscan review DB --web` over a database written by a real `meshscan scan --db`.

Log in, open the queue, open an item, see its preview load, decide with a reason, verify the
audit log with `meshscan review DB --verify`; a second reviewer sees the item decided and is
kept off an item the first one claimed; a decision made with the keyboard alone (Tab to the
button, Enter); an appeal: a confirmation that enrolled a signature is appealed by its
reviewer, who is then refused its outcome (four eyes), and a second reviewer overturns it, which
disables the signature (a rescan no longer matches it). With ``MESHSCAN_SCREENSHOTS=DIR`` set,
it also saves the screenshots shown in the README (``docs/screenshots.py`` sets it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

playwright_api = pytest.importorskip(
    "playwright.sync_api", reason="Playwright is not installed (pip install playwright)"
)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"
)

DEMO = REPO / "fixtures" / "demo"
MESHSCAN = [sys.executable, "-m", "scanner.cli"]
UPLOADS = {  # where each demo file is "uploaded": folders as a platform might lay them out
    "2026-11-28/user-1042/proxy-barrel-s1-002.obj": "proxy-barrel-s1-002.obj",
    "2026-11-28/user-1042/proxy-accessory-s1-001.stl": "proxy-accessory-s1-001.stl",
    "2026-11-29/user-7731/proxy-barrel-s1-000.stl": "proxy-barrel-s1-000.stl",
    "2026-11-29/user-7731/bracket.stl": "benign-bracket-s1-001.stl",
    "2026-11-29/<script>alert(1)</script>.stl": "proxy-accessory-s1-002.stl",
    "2026-11-30/user-0007/toy.stl": "benign-toy-s1-000.stl",
}
PASSWORDS = {"Ann Moderator": "ann-secret", "Bo": "bo-secret"}


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([*MESHSCAN, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=240)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Scanned uploads (their previews rendered by the scan, but for the last item), a reviewers file."""
    tmp = tmp_path_factory.mktemp("web")
    for dest, src in UPLOADS.items():
        (tmp / "uploads" / dest).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(DEMO / src, tmp / "uploads" / dest)
    scan = run("scan", "uploads", "--db", "results.sqlite", "--jobs", "1", cwd=tmp)
    assert scan.returncode == 1, scan.stderr
    from scanner.review import ReviewStore
    from scanner.review.web.auth import hash_password

    reviewers = "".join(
        f'[reviewers."{name}"]\npassword = "{hash_password(pw)}"\n' for name, pw in PASSWORDS.items()
    )  # fmt: skip
    (tmp / "reviewers.toml").write_text(reviewers, encoding="utf-8")
    assert run("signatures", "init", "--library", "lib", cwd=tmp).returncode == 0
    with ReviewStore(tmp / "results.sqlite", readonly=True) as store:
        queue = store.queue(("review", "flag"))
    assert len(queue) >= 4
    with sqlite3.connect(tmp / "results.sqlite") as conn:
        # the scan rendered a preview of every waiting file (scanner/preview.py) ...
        stored = {sha for (sha,) in conn.execute("SELECT sha256 FROM previews")}
        assert {i.sha256 for i in queue} <= stored
        # ... and the last one's is removed, as in a database written with --no-previews
        conn.execute("DELETE FROM previews WHERE sha256 = ?", (queue[-1].sha256,))
    return {"tmp": tmp, "db": tmp / "results.sqlite", "queue": queue, "library": tmp / "lib"}


@pytest.fixture(scope="module")
def server(world: dict) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = ["review", str(world["db"]), "--web", "--port", str(port), "--reviewers", "reviewers.toml",
            "--library", str(world["library"])]  # fmt: skip
    proc = subprocess.Popen([*MESHSCAN, *args], cwd=world["tmp"], env=env, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with contextlib.closing(urllib.request.urlopen(f"{base}/review/login", timeout=2)) as answer:
                    assert answer.status == 200
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"the review server did not start: {proc.stderr.read()}") from None
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def signed_in(browser, base: str, name: str, width: int = 1280, height: int = 900):  # noqa: ANN001, ANN201
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.goto(f"{base}/review/")
    assert page.url.startswith(f"{base}/review/login")
    page.fill("#name", name)
    page.fill("#password", PASSWORDS[name])
    page.click("button[type=submit] >> text=Sign in")
    page.wait_for_url(f"{base}/review/")
    assert f"Signed in as {name}" in page.inner_text("header")
    return page


def shoot(page, name: str) -> None:  # noqa: ANN001
    where = os.environ.get("MESHSCAN_SCREENSHOTS")
    if where:
        page.screenshot(path=str(Path(where) / name), full_page=True)


def verify(world: dict) -> str:
    verified = run("review", str(world["db"]), "--verify", cwd=world["tmp"])
    assert verified.returncode == 0, verified.stderr
    return verified.stdout


def test_review_in_the_browser_end_to_end(world: dict, server: str, browser) -> None:  # noqa: ANN001
    ann = signed_in(browser, server, "Ann Moderator")
    rows = ann.locator("table.queue tbody tr")
    assert rows.count() == len(world["queue"])
    assert "&lt;script&gt;" not in ann.inner_text("table.queue")  # escaped once, shown as text
    assert "2026-11-29/<script>alert(1)<" in ann.inner_text("table.queue")  # the folder, as text
    assert ann.evaluate("document.querySelectorAll('script').length") == 0
    shoot(ann, "review-queue.png")
    phone = signed_in(browser, server, "Ann Moderator", width=390, height=844)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    shoot(phone, "review-queue-phone.png")
    phone.goto(f"{server}/review/items/{world['queue'][0].id}")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390  # hashes and paths wrap
    phone.context.close()

    top = world["queue"][0]
    ann.click(f"a[href='/review/items/{top.id}']")
    ann.wait_for_url(f"{server}/review/items/{top.id}")
    img = ann.locator("figure.preview img")
    img.wait_for()
    assert ann.evaluate("() => document.querySelector('figure.preview img').naturalWidth") > 0
    shoot(ann, "review-item.png")
    ann.check("input[name=decision][value=confirm]")
    ann.fill("#reason", "component proxy: matches case 17")
    with ann.expect_navigation():
        ann.click("#decide")
    assert "confirm by Ann Moderator" in ann.inner_text("#main")
    assert verify(world).startswith("OK: 1 decision(s), hash chain intact")

    bo = signed_in(browser, server, "Bo")
    assert bo.locator(f"a[href='/review/items/{top.id}']").count() == 0  # no longer waiting
    bo.goto(f"{server}/review/items/{top.id}")
    assert "confirm by Ann Moderator" in bo.inner_text("#main") and bo.locator("#decide").count() == 0

    # a claim keeps Bo off the item Ann is looking at
    second = world["queue"][1]
    ann.goto(f"{server}/review/items/{second.id}")
    with ann.expect_navigation():
        ann.click("text=Claim it")
    bo.goto(f"{server}/review/items/{second.id}")
    assert "Claimed by Ann Moderator" in bo.inner_text("#main") and bo.locator("#decide").count() == 0
    bo.goto(f"{server}/review/")
    assert "Ann Moderator" in bo.inner_text("table.queue")


def test_deciding_with_the_keyboard_alone(world: dict, server: str, browser) -> None:  # noqa: ANN001
    bo = signed_in(browser, server, "Bo")
    item = world["queue"][-1]  # neither decided nor claimed by the other test
    bo.goto(f"{server}/review/items/{item.id}")
    assert "no preview stored" in bo.inner_text("figure.preview")

    def focused(selector: str, limit: int = 40) -> None:
        for _ in range(limit):
            bo.keyboard.press("Tab")
            if bo.evaluate(f"document.activeElement.matches({selector!r})"):
                return
        raise AssertionError(f"Tab never reached {selector}")

    focused("input[name=decision]")
    bo.keyboard.press("ArrowDown")  # the radio group: confirm -> dismiss
    assert bo.evaluate("document.activeElement.value") == "dismiss"
    focused("#reason", 3)
    bo.keyboard.type("a printer spare part, not a component")
    focused("#decide", 5)
    outline = bo.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"  # focus is visible
    with bo.expect_navigation():
        bo.keyboard.press("Enter")
    assert "dismiss by Bo" in bo.inner_text("#main")
    assert "decision(s), hash chain intact" in verify(world)
    with sqlite3.connect(world["db"]) as conn:
        (entry,) = conn.execute("SELECT entry FROM review_decisions WHERE item_id = ?", (item.id,)).fetchone()
    assert '"by":"Bo"' in entry and '"decision":"dismiss"' in entry


def rescan(world: dict, path: str) -> dict:
    """`meshscan scan FILE --library LIB`: the file's one result."""
    scan = run("scan", path, "--library", str(world["library"]), "--format", "jsonl", cwd=world["tmp"])
    assert scan.returncode in (0, 1), scan.stderr
    (result,) = [json.loads(line) for line in scan.stdout.splitlines() if line.strip()]
    return result


def test_appeal_decided_by_a_second_reviewer(world: dict, server: str, browser) -> None:  # noqa: ANN001
    item = world["queue"][2]  # neither decided nor claimed by the other tests
    url = f"{server}/review/items/{item.id}"
    ann = signed_in(browser, server, "Ann Moderator")
    ann.goto(url)
    ann.check("input[name=decision][value=confirm]")
    ann.check("input[name=enrol]")
    ann.fill("#reason", "component proxy: enrol it")
    with ann.expect_navigation():
        ann.click("#decide")
    assert "confirm by Ann Moderator" in ann.inner_text("#main")
    (signature_id,) = ann.locator("section[aria-labelledby=h-decision] dd.wrap").inner_text().split(" as ")[1:]
    assert signature_id in [m["signature_id"] for m in rescan(world, item.path)["matches"]]

    # Ann files an appeal (for the uploader, say), then may not decide it
    ann.fill("#appeal-reason", "uploader: it is a telescope tube")
    with ann.expect_navigation():
        ann.click("#appeal")
    main = ann.inner_text("#main")
    assert "Contested decision" in main and "Filed by Ann Moderator" in main and "telescope tube" in main
    assert ann.locator("#decide-appeal").count() == 0 and "[same-reviewer]" in main
    token = ann.locator("input[name=csrf]").first.get_attribute("value")
    forced = ann.request.post(f"{url}/decide-appeal", form={"csrf": token, "outcome": "overturned", "reason": "x"})
    assert forced.status == 403 and "[same-reviewer]" in forced.text()

    # Bo sees it first in the queue, marked as an appeal, and overturns it
    bo = signed_in(browser, server, "Bo")
    first = bo.locator("table.queue tbody tr").first
    assert "appeal" in first.get_attribute("class") and "of confirm by Ann Moderator" in first.inner_text()
    with bo.expect_navigation():
        first.locator("td.file a").click()
    assert bo.url == url
    shoot(bo, "review-appeal.png")
    bo.check("input[name=outcome][value=overturned]")
    bo.fill("#appeal-outcome-reason", "optical part, not a component")
    with bo.expect_navigation():
        bo.click("#decide-appeal")
    main = bo.inner_text("#main")
    assert "Appeal overturned by Bo" in main and "signature disabled" in main and signature_id in main
    assert verify(world).startswith("OK: ")
    after = rescan(world, item.path)
    assert signature_id not in [m["signature_id"] for m in after["matches"]]
    bo.context.close()
    ann.context.close()
