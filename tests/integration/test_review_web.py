"""The web review queue (scanner/review/web) through FastAPI's TestClient, over a results
database written by a real `meshscan scan --db` of demo proxies: authentication, the queue's
order and filters, escaping of hostile paths, CSRF, claims, decisions in the audit log, previews."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx (the test extra installs it)")
from fastapi.testclient import TestClient  # noqa: E402

from scanner.review import ReviewStore  # noqa: E402
from scanner.review.claims import ClaimBook  # noqa: E402
from scanner.review.web.app import WebSettings, create_review_app  # noqa: E402
from scanner.review.web.auth import Reviewers, ReviewersError, hash_password  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.postgres_server import copy_results  # noqa: E402

DEMO = REPO / "fixtures" / "demo"
BOTH = pytest.mark.parametrize("site", ["sqlite", "postgresql"], indirect=True)
"""The core flows run on a PostgreSQL results database too."""
MESHSCAN = [sys.executable, "-m", "scanner.cli"]
HOSTILE = "<script>alert(1)</script>.stl"  # a folder '<script>alert(1)<' holding 'script>.stl'
BO_KEY = "bo-api-key-0123456789"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([*MESHSCAN, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=240)


def tiny_png(width: int = 8, height: int = 6) -> bytes:
    """A valid RGB PNG, written by hand (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + bytes([40, 120, 200]) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def write_reviewers(path: Path) -> Path:
    import hashlib

    path.write_text(
        '[reviewers."Ann Moderator"]\n'
        f'password = "{hash_password("ann-secret")}"\n'
        "[reviewers.Bo]\n"
        f'password = "{hash_password("bo-secret")}"\n'
        f'api_key_sha256 = "{hashlib.sha256(BO_KEY.encode()).hexdigest()}"\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results database from a real scan: three proxies the shipped classifier sends to
    review (one under a hostile name), one benign file."""
    tmp = tmp_path_factory.mktemp("scanned")
    up = tmp / "uploads"
    (up / "<script>alert(1)<").mkdir(parents=True)
    for name in ("proxy-barrel-s1-002.obj", "proxy-accessory-s1-001.stl", "benign-toy-s1-000.stl"):
        shutil.copy(DEMO / name, up / name)
    shutil.copy(DEMO / "proxy-barrel-s1-000.stl", up / HOSTILE)
    scan = run("scan", "uploads", "--db", "r.sqlite", "--jobs", "1", cwd=tmp)
    assert scan.returncode == 1, scan.stderr
    return tmp


@pytest.fixture()
def site(scanned: Path, tmp_path: Path, request: pytest.FixtureRequest) -> dict:
    """A fresh copy of the database and a client of the standalone app over it: a SQLite file,
    or (``indirect`` parameter ``"postgresql"``) a PostgreSQL database holding the same rows."""
    if getattr(request, "param", "sqlite") == "postgresql":
        db = request.getfixturevalue("pg_url")
        assert copy_results(scanned / "r.sqlite", db) == 4
    else:
        db = tmp_path / "r.sqlite"
        shutil.copy(scanned / "r.sqlite", db)  # the files stay where they were scanned (paths are absolute)
    reviewers = Reviewers.load(write_reviewers(tmp_path / "reviewers.toml"))
    settings = WebSettings(db=db, reviewers=reviewers, library=None, claim_minutes=30)
    app = create_review_app(settings)
    with ReviewStore(db, readonly=True) as store:
        queue = store.queue(("review", "flag"))
    return {"db": db, "app": app, "queue": queue, "tmp": tmp_path, "uploads": scanned.resolve() / "uploads"}


def client(site: dict) -> TestClient:
    return TestClient(site["app"], base_url="http://127.0.0.1", follow_redirects=False)


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html).group(1)


def login(site: dict, name: str, password: str) -> TestClient:
    c = client(site)
    page = c.get("/review/login")
    assert page.status_code == 200
    answer = c.post("/review/login", data={"name": name, "password": password, "csrf": csrf_of(page.text),
                                           "next": "/review/"})  # fmt: skip
    assert answer.status_code == 303 and answer.headers["location"] == "/review/", answer.text
    return c


def decide_form(c: TestClient, item: str, **fields: str) -> tuple[int, str]:
    page = c.get(f"/review/items/{item}")
    answer = c.post(f"/review/items/{item}/decide", data={"csrf": csrf_of(page.text), **fields})
    return answer.status_code, answer.text


def test_every_page_needs_a_reviewer(site: dict) -> None:
    c = client(site)
    item = site["queue"][0].id
    queue = c.get("/review/?verdict=review")
    assert queue.status_code == 303
    assert queue.headers["location"] == "/review/login?next=%2Freview%2F%3Fverdict%3Dreview"
    assert c.get(f"/review/items/{item}").status_code == 303
    assert c.get(f"/review/items/{item}/preview.png").status_code == 401
    assert c.get("/review/api/items").status_code == 401
    assert c.get("/review/api/items", headers={"Authorization": "Bearer wrong"}).status_code == 401
    posted = c.post(f"/review/items/{item}/decide", data={"decision": "confirm", "reason": "x"})
    assert posted.status_code == 303 and posted.headers["location"].startswith("/review/login")
    api = c.get("/review/api/items", headers={"Authorization": f"Bearer {BO_KEY}"})
    assert api.status_code == 200 and [i["item_id"] for i in api.json()] == [i.id for i in site["queue"]]
    page = c.get("/review/login")
    wrong = c.post("/review/login", data={"name": "Bo", "password": "nope", "csrf": csrf_of(page.text)})
    assert wrong.status_code == 401 and "Unknown name or wrong password" in wrong.text
    nobody = c.post("/review/login", data={"name": "Mallory", "password": "bo-secret", "csrf": csrf_of(page.text)})
    assert nobody.status_code == 401 and "meshscan_review_session" not in nobody.headers.get("set-cookie", "")
    # a login may only send the browser back into the queue, never to another site
    off_site = c.post("/review/login", data={"name": "Bo", "password": "bo-secret", "csrf": csrf_of(page.text),
                                             "next": "//evil.example/"})  # fmt: skip
    assert off_site.status_code == 303 and off_site.headers["location"] == "/review/"


def test_queue_is_highest_score_first_with_filters_counts_and_headers(site: dict) -> None:
    c = login(site, "Bo", "bo-secret")
    queue = site["queue"]
    assert len(queue) == 3
    scores = [i.top[1] for i in queue]
    assert scores == sorted(scores, reverse=True)
    page = c.get("/review/")
    assert page.status_code == 200
    links = re.findall(r'href="/review/items/([0-9a-f]{64})"', page.text)
    assert links == [i.id for i in queue]
    assert "<strong>3</strong> waiting" in page.text and "<strong>0</strong> decided" in page.text
    headers = page.headers
    assert "default-src 'none'" in headers["content-security-policy"] and "script-src" not in headers[
        "content-security-policy"]  # fmt: skip
    assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "no-referrer"
    assert '<meta name="viewport"' in page.text

    folder = str(site["uploads"] / "<script>alert(1)<")
    only = c.get("/review/", params={"folder": folder})
    assert re.findall(r'href="/review/items/([0-9a-f]{64})"', only.text) == [
        i.id for i in queue if i.path.startswith(folder)
    ]
    assert len(re.findall(r'href="/review/items/', only.text)) == 1
    category = queue[0].category or queue[0].top[0]
    by_cat = c.get("/review/", params={"category": category})
    assert re.findall(r'href="/review/items/([0-9a-f]{64})"', by_cat.text) == [
        i.id for i in queue if (i.category or i.top[0]) == category
    ]
    flags = c.get("/review/", params={"verdict": "flag"})
    flagged = [i.id for i in queue if i.verdict == "flag"]
    assert flagged and re.findall(r'href="/review/items/([0-9a-f]{64})"', flags.text) == flagged
    assert len(flagged) < len(queue)
    none = c.get("/review/", params={"folder": "/nowhere/"})
    assert "/review/items/" not in none.text and "Nothing waits under these filters" in none.text


def test_hostile_path_is_escaped_everywhere(site: dict) -> None:
    c = login(site, "Bo", "bo-secret")
    (hostile,) = [i for i in site["queue"] if i.path.endswith(HOSTILE)]
    for page in (c.get("/review/"), c.get(f"/review/items/{hostile.id}")):
        assert page.status_code == 200
        assert "<script" not in page.text.lower()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;.stl" in page.text


@BOTH
def test_decision_is_recorded_by_the_logged_in_reviewer_and_verifies(site: dict) -> None:
    c = login(site, "Ann Moderator", "ann-secret")
    item = site["queue"][0]
    status, _ = decide_form(c, item.id, decision="confirm", reason="matches case 17", by="Mallory")
    assert status == 303
    with ReviewStore(site["db"], readonly=True) as store:
        (row,) = store.decisions()
        assert store.verify().ok
    assert (row["by"], row["decision"], row["reason"], row["item_id"]) == (
        "Ann Moderator", "confirm", "matches case 17", item.id)  # fmt: skip
    verified = run("review", str(site["db"]), "--verify", cwd=site["tmp"])
    assert verified.returncode == 0 and verified.stdout.startswith("OK: 1 decision(s), hash chain intact")

    page = c.get(f"/review/items/{item.id}")
    assert "Decided" in page.text and "matches case 17" in page.text and 'id="decide"' not in page.text
    again, text = decide_form(c, item.id, decision="dismiss", reason="second thoughts")
    assert again == 409 and "[already-decided]" in text
    listed = c.get("/review/")
    assert item.id not in listed.text and "<strong>1</strong> decided" in listed.text


def test_reason_is_required(site: dict) -> None:
    c = login(site, "Bo", "bo-secret")
    status, text = decide_form(c, site["queue"][0].id, decision="dismiss", reason="   ")
    assert status == 422 and "needs a reason" in text
    with ReviewStore(site["db"], readonly=True) as store:
        assert store.decisions() == []


def test_post_without_or_with_a_wrong_csrf_token_is_refused(site: dict) -> None:
    c = login(site, "Bo", "bo-secret")
    item = site["queue"][0].id
    missing = c.post(f"/review/items/{item}/decide", data={"decision": "dismiss", "reason": "r"})
    wrong = c.post(f"/review/items/{item}/decide", data={"decision": "dismiss", "reason": "r", "csrf": "0" * 64})
    claim = c.post(f"/review/items/{item}/claim", data={"csrf": "nope"})
    assert (missing.status_code, wrong.status_code, claim.status_code) == (403, 403, 403)
    # a token is tied to its browser's cookie: Ann's page token does not work for Bo
    ann = login(site, "Ann Moderator", "ann-secret")
    stolen = csrf_of(ann.get(f"/review/items/{item}").text)
    assert c.post(f"/review/items/{item}/decide", data={"decision": "dismiss", "reason": "r",
                                                        "csrf": stolen}).status_code == 403  # fmt: skip
    with ReviewStore(site["db"], readonly=True) as store:
        assert store.decisions() == [] and ClaimBook(store.results).active() == {}
    # an API client authenticates with its key, not a cookie: no token needed
    api = client(site).post(f"/review/items/{item}/decide", data={"decision": "dismiss", "reason": "by API"},
                            headers={"Authorization": f"Bearer {BO_KEY}"})  # fmt: skip
    assert api.status_code == 303
    with ReviewStore(site["db"], readonly=True) as store:
        assert [(d["by"], d["reason"]) for d in store.decisions()] == [("Bo", "by API")]


@BOTH
def test_a_claim_blocks_another_reviewer_until_released(site: dict) -> None:
    ann, bo = login(site, "Ann Moderator", "ann-secret"), login(site, "Bo", "bo-secret")
    item = site["queue"][1].id
    page = ann.get(f"/review/items/{item}")
    assert ann.post(f"/review/items/{item}/claim", data={"csrf": csrf_of(page.text)}).status_code == 303
    assert "Ann Moderator" in bo.get("/review/").text  # the queue says who holds it
    bo_page = bo.get(f"/review/items/{item}")
    assert "Claimed by <strong>Ann Moderator</strong>" in bo_page.text and 'id="decide"' not in bo_page.text
    refused = bo.post(f"/review/items/{item}/decide", data={"csrf": csrf_of(bo_page.text), "decision": "dismiss",
                                                           "reason": "not a part"})  # fmt: skip
    assert refused.status_code == 409 and "claimed by Ann Moderator" in refused.text
    grab = bo.post(f"/review/items/{item}/claim", data={"csrf": csrf_of(bo_page.text)})
    steal = bo.post(f"/review/items/{item}/release", data={"csrf": csrf_of(bo_page.text)})
    assert grab.status_code == 409 and steal.status_code == 409
    with ReviewStore(site["db"], readonly=True) as store:
        assert store.decisions() == []
    assert ann.post(f"/review/items/{item}/release", data={"csrf": csrf_of(page.text)}).status_code == 303
    status, _ = decide_form(bo, item, decision="dismiss", reason="not a part")
    assert status == 303


@BOTH
def test_an_expired_claim_does_not_block(site: dict) -> None:
    item = site["queue"][2].id
    with ReviewStore(site["db"]) as store:
        ClaimBook(store.results, minutes=30).claim(item, "Ann Moderator", now=datetime.now(UTC) - timedelta(hours=1))
        assert ClaimBook(store.results).holder(item) is None
    bo = login(site, "Bo", "bo-secret")
    assert "Claimed by" not in bo.get(f"/review/items/{item}").text
    status, _ = decide_form(bo, item, decision="confirm", reason="component proxy")
    assert status == 303
    with ReviewStore(site["db"], readonly=True) as store:
        assert [d["by"] for d in store.decisions()] == ["Bo"]
        assert ClaimBook(store.results).active() == {}  # deciding drops the item's claim


def test_preview_is_served_when_stored_and_a_placeholder_otherwise(site: dict) -> None:
    c = login(site, "Bo", "bo-secret")
    with_png, without = site["queue"][0], site["queue"][1]
    png = tiny_png()
    with sqlite3.connect(site["db"]) as conn:
        # the scan stored real previews of the waiting items (scanner/preview.py)
        stored = dict(conn.execute("SELECT sha256, png FROM previews").fetchall())
        assert {with_png.sha256, without.sha256} <= set(stored)
        assert all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in stored.values())
        # a database written before previews, or with --no-previews, has none for an item
        conn.execute("DELETE FROM previews WHERE sha256 = ?", (without.sha256,))
        conn.execute(
            "INSERT OR REPLACE INTO previews VALUES (?, ?, ?)", (with_png.sha256, png, "2026-01-01T00:00:00+00:00")
        )
    served = c.get(f"/review/items/{with_png.id}/preview.png")
    assert served.status_code == 200 and served.headers["content-type"] == "image/png" and served.content == png
    page = c.get(f"/review/items/{with_png.id}")
    assert f'<img src="/review/items/{with_png.id}/preview.png" alt="Rendered preview of ' in page.text
    assert c.get(f"/review/items/{without.id}/preview.png").status_code == 404
    other = c.get(f"/review/items/{without.id}")
    assert "no preview stored" in other.text and "<img" not in other.text


def test_item_page_shows_evidence_versions_and_file(site: dict) -> None:
    c = login(site, "Bo", "bo-secret")
    item = site["queue"][0]
    page = c.get(f"/review/items/{item.id}")
    rec = item.record
    for text in (item.sha256, rec["scanner_version"], rec["library_version"], rec["model_version"], rec["format"]):
        assert text and str(text) in page.text
    assert item.explanation.split(":")[0] in page.text
    size = Path(item.path).stat().st_size
    assert f"{size:,} bytes" in page.text
    unknown = c.get("/review/items/0000deadbeef")
    assert unknown.status_code == 404 and "[unknown-id]" in unknown.text


def test_reviewers_file_is_checked(tmp_path: Path) -> None:
    bad = tmp_path / "r.toml"
    for text, message in (
        ("", "names no reviewer"),
        ('[reviewers.x]\npassword = "plain"\n', "scrypt"),
        ('[reviewers.x]\napi_key_sha256 = "abc"\n', "64 hex"),
        ("[reviewers.x]\n", "api_key_sha256 or password"),
        ('[reviewers.x]\nby = "y"\n', "unknown key"),
    ):
        bad.write_text(text)
        with pytest.raises(ReviewersError, match=message):
            Reviewers.load(bad)
    bad.write_text(json.dumps({"reviewers": {"J": {"password": hash_password("pw")}}}))
    people = Reviewers.load(bad)
    assert people.login("J", "pw") == "J" and people.login("J", "px") is None


def test_cli_refuses_what_it_cannot_serve_safely(site: dict) -> None:
    tmp, db = site["tmp"], str(site["db"])
    no_reviewers = run("review", db, "--web", cwd=tmp)
    assert no_reviewers.returncode == 3 and "--reviewers" in no_reviewers.stderr
    remote = run("review", db, "--web", "--reviewers", "reviewers.toml", "--host", "0.0.0.0", cwd=tmp)
    assert remote.returncode == 3 and "--allow-remote" in remote.stderr
    stray = run("review", db, "--port", "9999", cwd=tmp)
    assert stray.returncode == 3 and "--port go(es) with --web" in stray.stderr
    (tmp / "broken.toml").write_text("[reviewers.x]\n")
    broken = run("review", db, "--web", "--reviewers", "broken.toml", cwd=tmp)
    assert broken.returncode == 3 and "[config]" in broken.stderr and "Traceback" not in broken.stderr


def test_serve_mounts_the_queue_under_review(scanned: Path, tmp_path: Path) -> None:
    """`meshscan serve --review-db DB --reviewers FILE`: the same pages beside the scan API."""
    import http.cookiejar
    import socket
    import time
    import urllib.error
    import urllib.parse
    import urllib.request

    write_reviewers(tmp_path / "reviewers.toml")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = ["serve", "--port", str(port), "--workers", "1", "--no-model", "--review-db", str(scanned / "r.sqlite"),
            "--reviewers", "reviewers.toml"]  # fmt: skip
    proc = subprocess.Popen([*MESHSCAN, *args], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                status = json.load(opener.open(f"{base}/v1/status", timeout=2))
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
                time.sleep(0.3)
        assert status["scanner_version"]
        assert not any(p.startswith("/review") for p in json.load(opener.open(f"{base}/openapi.json"))["paths"])
        login_page = opener.open(f"{base}/review/")  # redirected to the login page
        assert login_page.url.startswith(f"{base}/review/login") and login_page.headers["X-Frame-Options"] == "DENY"
        token = csrf_of(login_page.read().decode())
        form = urllib.parse.urlencode({"name": "Bo", "password": "bo-secret", "csrf": token, "next": "/review/"})
        queue = opener.open(f"{base}/review/login", data=form.encode())
        html = queue.read().decode()
        assert queue.url == f"{base}/review/" and "Signed in as <strong>Bo</strong>" in html
        assert len(re.findall(r'href="/review/items/[0-9a-f]{64}"', html)) == 3
    finally:
        proc.terminate()
        proc.wait(30)
    refused = run("serve", "--review-db", str(scanned / "r.sqlite"), "--no-model", cwd=tmp_path)
    assert refused.returncode == 3 and "--review-db needs --reviewers" in refused.stderr


def test_enrol_and_allowlist_from_the_form_change_the_library(site: dict) -> None:
    tmp = site["tmp"]
    assert run("signatures", "init", "--library", "lib", cwd=tmp).returncode == 0
    reviewers = Reviewers.load(tmp / "reviewers.toml")
    site["app"] = create_review_app(WebSettings(db=site["db"], reviewers=reviewers, library=str(tmp / "lib")))
    c = login(site, "Ann Moderator", "ann-secret")
    first, second = (i for i in site["queue"] if i.verdict == "review")
    page = c.get(f"/review/items/{first.id}")
    assert 'name="enrol"' in page.text and 'name="allowlist"' in page.text
    mixed, text = decide_form(c, first.id, decision="dismiss", reason="r", enrol="on")
    assert mixed == 422 and "[bad-action]" in text
    status, _ = decide_form(c, first.id, decision="confirm", reason="case 9", enrol="on", category="")
    assert status == 303
    status, _ = decide_form(c, second.id, decision="dismiss", reason="a spare part", allowlist="on")
    assert status == 303
    with ReviewStore(site["db"], readonly=True) as store:
        enrolled, allowed = store.decisions()
    assert enrolled["actions"][0]["action"] == "enrol" and enrolled["actions"][0]["status"] == "added"
    assert enrolled["actions"][0]["category"] == (first.category or first.top[0])
    assert allowed["actions"][0]["action"] == "allowlist" and allowed["by"] == "Ann Moderator"
    listed = run("signatures", "list", "--library", "lib", "--json", cwd=tmp)
    assert enrolled["actions"][0]["signature_id"] in listed.stdout
    allow = run("allowlist", "list", "--library", "lib", cwd=tmp)
    assert second.sha256 in allow.stdout and "Ann Moderator" in allow.stdout


def test_auth_helper_prints_a_usable_api_key_entry(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    made = subprocess.run([sys.executable, "-m", "scanner.review.web.auth", "triage bot", "--api-key"],
                          capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    assert made.returncode == 0, made.stderr
    (tmp_path / "r.toml").write_text(made.stdout)
    key = made.stdout.rsplit(": ", 1)[1].strip()
    people = Reviewers.load(tmp_path / "r.toml")
    assert people.by_api_key(key) == "triage bot" and people.by_api_key(key + "x") is None


# ---------------------------------------------------------------------- appeals
def with_library(site: dict, *extra: str) -> Path:
    """Serve ``site`` with a fresh signature library (and reviewers ``extra``, password
    '<name>-secret', besides Ann and Bo); returns the library's directory."""
    tmp = site["tmp"]
    assert run("signatures", "init", "--library", "lib", cwd=tmp).returncode == 0
    path = write_reviewers(tmp / "reviewers.toml")
    with path.open("a", encoding="utf-8") as out:
        for name in extra:
            out.write(f'[reviewers."{name}"]\npassword = "{hash_password(name + "-secret")}"\n')
    settings = WebSettings(db=site["db"], reviewers=Reviewers.load(path), library=str(tmp / "lib"))
    site["app"] = create_review_app(settings)
    return tmp / "lib"


def post_form(c: TestClient, item: str, action: str, **fields: str) -> tuple[int, str]:
    """POST one of the item page's forms, with the page's CSRF token."""
    page = c.get(f"/review/items/{item}")
    answer = c.post(f"/review/items/{item}/{action}", data={"csrf": csrf_of(page.text), **fields})
    return answer.status_code, answer.text


def entries(site: dict) -> list[dict]:
    with ReviewStore(site["db"], readonly=True) as store:
        return store.decisions()


def test_appeal_then_four_eyes_then_overturn_disables_the_signature(site: dict) -> None:
    lib = with_library(site)
    ann, bo = login(site, "Ann Moderator", "ann-secret"), login(site, "Bo", "bo-secret")
    item = next(i for i in site["queue"] if i.verdict == "review")
    assert post_form(ann, item.id, "decide", decision="confirm", reason="case 9", enrol="on")[0] == 303
    page = ann.get(f"/review/items/{item.id}")
    assert 'id="appeal"' in page.text and 'id="decide-appeal"' not in page.text

    # the appellant is the logged-in reviewer, whatever the form says
    status, _ = post_form(ann, item.id, "appeal", reason="uploader 4711: it is a telescope tube", by="Mallory")
    assert status == 303
    decision, appeal = entries(site)
    assert (appeal["decision"], appeal["by"], appeal["reason"], appeal["appeals"]) == (
        "appeal", "Ann Moderator", "uploader 4711: it is a telescope tube", decision["decision_id"])  # fmt: skip

    queue = bo.get("/review/")
    first = re.findall(r'href="/review/items/([0-9a-f]{64})"', queue.text)[0]
    assert first == item.id  # an open appeal comes first, marked as one
    assert "badge appeal" in queue.text and "of confirm by Ann Moderator, filed by Ann Moderator" in queue.text
    api = client(site).get("/review/api/items", headers={"Authorization": f"Bearer {BO_KEY}"}).json()
    assert api[0]["item_id"] == item.id and "appeal" not in api[1]
    assert (api[0]["appeal"]["appeal_id"], api[0]["appeal"]["by"]) == (appeal["appeal_id"], "Ann Moderator")
    assert api[0]["appeal"]["decision"]["decision_id"] == decision["decision_id"]
    cli = run("review", str(site["db"]), "--format", "json", cwd=site["tmp"])
    assert json.loads(cli.stdout)[0]["appeal"] == api[0]["appeal"]  # the same shape as the command line's

    # the original reviewer sees the contested decision and the appeal, but no decide form
    mine = ann.get(f"/review/items/{item.id}")
    assert "Contested decision" in mine.text and "case 9" in mine.text and "telescope tube" in mine.text
    assert 'id="decide-appeal"' not in mine.text and "You cannot decide this appeal" in mine.text
    assert "[same-reviewer]" in mine.text and 'id="appeal"' not in mine.text
    refused, text = post_form(ann, item.id, "decide-appeal", outcome="overturned", reason="I was wrong")
    assert refused == 403 and "[same-reviewer]" in text
    claim, text = post_form(ann, item.id, "claim")
    assert claim == 403 and "[same-reviewer]" in text
    assert [e["decision"] for e in entries(site)] == ["confirm", "appeal"]

    # a second reviewer claims it and overturns it: the enrolled signature is disabled
    assert 'id="decide-appeal"' in bo.get(f"/review/items/{item.id}").text
    assert post_form(bo, item.id, "claim")[0] == 303
    missing, text = post_form(bo, item.id, "decide-appeal", outcome="overturned", reason="  ")
    assert missing == 422 and "[missing-reason]" in text
    status, _ = post_form(bo, item.id, "decide-appeal", outcome="overturned", reason="optical part", by="Ann Moderator")
    assert status == 303
    outcome = entries(site)[-1]
    assert (outcome["decision"], outcome["outcome"], outcome["by"]) == ("appeal-outcome", "overturned", "Bo")
    signature_id = decision["actions"][0]["signature_id"]
    assert outcome["actions"][0]["action"] == "disable" and outcome["actions"][0]["signature_id"] == signature_id
    listed = run("signatures", "list", "--library", str(lib), "--json", cwd=site["tmp"])
    (sig,) = [json.loads(line) for line in listed.stdout.splitlines() if signature_id in line]
    assert sig["disabled"]["by"] == "Bo" and "optical part" in sig["disabled"]["why"]
    verified = run("review", str(site["db"]), "--verify", cwd=site["tmp"])
    assert verified.returncode == 0, verified.stdout + verified.stderr
    with ReviewStore(site["db"], readonly=True) as store:
        assert ClaimBook(store.results).active() == {}  # the outcome drops the claim

    shown = bo.get(f"/review/items/{item.id}")
    assert "Appeal <strong>overturned</strong> by <strong>Bo</strong>" in shown.text
    assert "signature disabled" in shown.text and signature_id in shown.text
    assert item.id not in re.findall(r'href="/review/items/([0-9a-f]{64})"', bo.get("/review/").text)
    again, text = post_form(bo, item.id, "appeal", reason="one more time")
    assert again == 409 and "[appeal-closed]" in text


def test_the_appellant_cannot_decide_the_appeal_either(site: dict) -> None:
    with_library(site)
    ann, bo = login(site, "Ann Moderator", "ann-secret"), login(site, "Bo", "bo-secret")
    item = site["queue"][0].id
    assert post_form(ann, item, "decide", decision="dismiss", reason="a spare part")[0] == 303
    undecided = site["queue"][1].id
    not_decided, text = post_form(bo, undecided, "appeal", reason="why not")
    assert not_decided == 409 and "[not-decided]" in text
    empty, text = post_form(bo, item, "appeal", reason=" ")
    assert empty == 422 and "[missing-reason]" in text
    assert post_form(bo, item, "appeal", reason="for the uploader: it is a part")[0] == 303
    twice, text = post_form(bo, item, "appeal", reason="and again")
    assert twice == 409 and "[appeal-open]" in text
    page = bo.get(f"/review/items/{item}")
    assert "[same-appellant]" in page.text and 'id="decide-appeal"' not in page.text
    refused, text = post_form(bo, item, "decide-appeal", outcome="upheld", reason="mine")
    assert refused == 403 and "[same-appellant]" in text
    assert [e["decision"] for e in entries(site)] == ["dismiss", "appeal"]


def test_a_claim_holds_an_appeal_and_upheld_changes_nothing(site: dict) -> None:
    lib = with_library(site, "Cy")
    ann, bo, cy = (login(site, n, p) for n, p in (("Ann Moderator", "ann-secret"), ("Bo", "bo-secret"),
                                                    ("Cy", "Cy-secret")))  # fmt: skip
    item = next(i for i in site["queue"] if i.verdict == "review").id
    assert post_form(ann, item, "decide", decision="confirm", reason="case 3", enrol="on")[0] == 303
    assert post_form(ann, item, "appeal", reason="the uploader says it is a toy")[0] == 303
    assert post_form(cy, item, "claim")[0] == 303
    page = bo.get(f"/review/items/{item}")
    assert "Claimed by <strong>Cy</strong>" in page.text and 'id="decide-appeal"' not in page.text
    blocked_, text = post_form(bo, item, "decide-appeal", outcome="overturned", reason="toy")
    assert blocked_ == 409 and "claimed by Cy" in text
    assert post_form(cy, item, "decide-appeal", outcome="upheld", reason="component proxy, as decided")[0] == 303
    outcome = entries(site)[-1]
    assert (outcome["outcome"], outcome["by"], outcome["actions"]) == ("upheld", "Cy", [])
    listed = run("signatures", "list", "--library", str(lib), "--json", cwd=site["tmp"])
    sigs = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(sigs) == 1 and sigs[0].get("disabled") is None
    assert "Appeal <strong>upheld</strong> by <strong>Cy</strong>" in cy.get(f"/review/items/{item}").text


def test_appeal_forms_need_the_csrf_token(site: dict) -> None:
    ann, bo = login(site, "Ann Moderator", "ann-secret"), login(site, "Bo", "bo-secret")
    item = site["queue"][0].id
    assert post_form(ann, item, "decide", decision="dismiss", reason="a spare part")[0] == 303
    no_token = bo.post(f"/review/items/{item}/appeal", data={"reason": "contested"})
    wrong = bo.post(f"/review/items/{item}/appeal", data={"reason": "contested", "csrf": "0" * 64})
    assert (no_token.status_code, wrong.status_code) == (403, 403)
    assert [e["decision"] for e in entries(site)] == ["dismiss"]
    assert post_form(ann, item, "appeal", reason="contested")[0] == 303
    forged = bo.post(f"/review/items/{item}/decide-appeal", data={"outcome": "overturned", "reason": "x"})
    assert forged.status_code == 403 and "security token" in forged.text
    assert [e["decision"] for e in entries(site)] == ["dismiss", "appeal"]


def test_an_appeal_is_decided_on_the_judged_content_after_the_file_changed(site: dict) -> None:
    """The queue links an open appeal as its decision recorded it: its page and forms still work
    when the file was rescanned with other content since (a new item id)."""
    ann, bo = login(site, "Ann Moderator", "ann-secret"), login(site, "Bo", "bo-secret")
    item = site["queue"][0]
    assert post_form(ann, item.id, "decide", decision="dismiss", reason="a spare part")[0] == 303
    assert post_form(ann, item.id, "appeal", reason="it is a component after all")[0] == 303
    with sqlite3.connect(site["db"]) as conn:  # as a rescan of changed content leaves it
        conn.execute("UPDATE results SET sha256 = ?, size = 1 WHERE path = ?", ("f" * 64, item.path))
    assert re.findall(r'href="/review/items/([0-9a-f]{64})"', bo.get("/review/").text)[0] == item.id
    page = bo.get(f"/review/items/{item.id}")
    assert page.status_code == 200 and "the file has changed or gone since" in page.text
    assert item.sha256 in page.text and "1 bytes" not in page.text and 'id="decide-appeal"' in page.text
    assert post_form(bo, item.id, "decide-appeal", outcome="overturned", reason="a component")[0] == 303
    assert [(e["decision"], e["by"]) for e in entries(site)][-1] == ("appeal-outcome", "Bo")


def test_a_local_match_shows_how_much_of_the_signature_was_found(tmp_path: Path) -> None:
    """A demo proxy fused to a plate flags on local patches; its item page says how much of the
    signature the upload reproduces, in the reviewer's words, not as a distance."""
    import scanner
    from fixtures import evasions as ev

    up = tmp_path / "uploads"
    up.mkdir()
    part = ev.as_trimesh(scanner.load(DEMO / "proxy-bolt_or_breech_block-s1-000.stl"))
    (up / "fused.stl").write_bytes(ev.stl_binary(ev.fused_plate(part)))
    assert run("scan", "uploads", "--db", "r.sqlite", "--jobs", "1", cwd=tmp_path).returncode == 1
    reviewers = Reviewers.load(write_reviewers(tmp_path / "reviewers.toml"))
    app = create_review_app(WebSettings(db=tmp_path / "r.sqlite", reviewers=reviewers, library=None, claim_minutes=30))
    with ReviewStore(tmp_path / "r.sqlite", readonly=True) as store:
        (item,) = store.queue(("review", "flag"))
    top = item.record["matches"][0]
    assert top["kind"] == "local"
    page = login({"app": app}, "Bo", "bo-secret").get(f"/review/items/{item.id}")
    found = f"{top['signature_share']:.0%} of it found: {top['patches_matched']} of its {top['patches_total']} patches"
    assert page.status_code == 200 and found in page.text
