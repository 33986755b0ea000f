"""`meshscan serve` beyond the endpoints (issue 13, item 2): ``--db`` records served verdicts so
that ``review``, ``export`` and ``report`` work on uploads, and a schemathesis run against the
OpenAPI document the running server publishes finds no server error and no response that
breaks the document. The real command, in a subprocess on a free loopback port."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trimesh

from scanner.engines.worker import FAULT_INJECTION_ENV
from scanner.store.backend import connect
from tests.conftest import REPO
from tests.integration.test_serve import BENIGN, ENROLLED, Server, multipart, start_server

pytestmark = pytest.mark.timeout(180)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scanner.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))  # fmt: skip


def served_flags(db: Path | str) -> list[dict]:
    result = cli("review", str(db), "--verdict", "flag", "--format", "jsonl")
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture
def db_server(tmp_path: Path, results_target: str) -> Iterator[tuple[Server, str]]:
    db = results_target  # a SQLite file, then a PostgreSQL database (service replicas share one)
    yield from ((server, db) for server in start_server(tmp_path, "--workers", "2", "--db", db))


def test_served_verdicts_are_recorded_for_review_export_and_report(db_server: tuple[Server, str],
                                                                   tmp_path: Path) -> None:  # fmt: skip
    server, db = db_server
    assert server.json("GET", "/v1/status")[1]["db"] is True
    # the same client name for two different uploads: both are kept, told apart by their sha256
    for data in (ENROLLED.read_bytes(), BENIGN.read_bytes()):
        body, headers = multipart("model.stl", data)
        status, answer = server.json("POST", "/v1/scan", body, **headers)
        assert status == 200 and answer["records"][0]["path"] == "model.stl"  # the response keeps the name
    assert server.json("POST", "/v1/scan?name=junk.stl", os.urandom(4000))[0] == 200
    flagged_sha = hashlib.sha256(ENROLLED.read_bytes()).hexdigest()

    # committed within the batch interval while the server is idle, not only at shutdown
    deadline = time.monotonic() + 20
    while not (flags := served_flags(db)):
        assert time.monotonic() < deadline, "the served flag never reached the database"
        time.sleep(0.3)
    (flag,) = flags
    assert flag["path"] == f"served://{flagged_sha[:16]}/model.stl"
    assert flag["sha256"] == flagged_sha and flag["verdict"] == "flag"

    # a decision on a served item: the bytes are gone, so it is checked as a remote file
    decided = cli("review", str(db), "--decide", flag["id"], "dismiss", "--by", "tester", "--reason", "test")
    assert decided.returncode == 0, decided.stdout + decided.stderr

    server.proc.terminate()  # a clean shutdown commits whatever is left
    server.proc.wait(30)
    with contextlib.closing(connect(db, readonly=True)) as conn:
        rows = dict(conn.execute("SELECT path, verdict FROM results").fetchall())
    benign_sha = hashlib.sha256(BENIGN.read_bytes()).hexdigest()
    assert rows[f"served://{flagged_sha[:16]}/model.stl"] == "flag"
    assert rows[f"served://{benign_sha[:16]}/model.stl"] == "clear"
    assert sorted(rows.values()) == ["clear", "flag", "unscannable"]

    exported = cli("export", str(db), "--format", "jsonl")
    assert exported.returncode == 0, exported.stderr
    assert sorted(json.loads(line)["verdict"] for line in exported.stdout.splitlines()) == sorted(rows.values())

    report = cli("report", str(db), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "report" / "report.html").is_file()


def test_an_unusable_db_is_refused_before_serving(tmp_path: Path) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    result = cli("serve", "--port", "0", "--db", str(folder / "missing-dir" / "x.db"), "--no-model")
    assert result.returncode != 0
    assert "[io-error]" in result.stderr and "Traceback" not in result.stderr


def test_a_scan_over_the_time_limit_is_a_record_and_its_worker_is_replaced(tmp_path: Path) -> None:
    """An upload that never finishes (the workers' `hang:` testing hook on the spooled name
    `upload.stl`) is an unscannable limit:time record after --limit-seconds; its worker is
    replaced, and a fresh worker takes the next upload (a `.off` one, which does not hang)."""
    env = {FAULT_INJECTION_ENV: "hang:upload.stl"}
    for server in start_server(tmp_path, "--workers", "1", "--limit-seconds", "1", "--no-model", env=env):
        for name in ("first.stl", "second.stl"):
            status, answer = server.json("POST", f"/v1/scan?name={name}", ENROLLED.read_bytes())
            assert status == 200, answer
            (record,) = answer["records"]
            assert (record["verdict"], record["reason"], record["path"]) == ("unscannable", "limit:time", name)
        off = trimesh.load(ENROLLED, force="mesh").export(file_type="off").encode()
        status, answer = server.json("POST", "/v1/scan?name=third.off", off)
        assert status == 200 and answer["records"][0]["verdict"] == "flag", answer
        status, answer = server.json("GET", "/v1/status")
        assert status == 200 and answer["in_flight"] == 0 and answer["queue_depth"] == 0


import schemathesis  # noqa: E402 - the test extra installs it
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance  # noqa: E402


@pytest.fixture(scope="module")
def served_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The OpenAPI document as the running server publishes it (its base URL is the server's)."""
    tmp = tmp_path_factory.mktemp("serve-contract")
    for server in start_server(tmp, "--workers", "2", "--queue", "8", "--max-upload-bytes", "100000", "--no-model"):
        yield schemathesis.openapi.from_url(server.base + "/openapi.json")


OPERATIONS = [("GET", "/v1/status"), ("POST", "/v1/scan"), ("POST", "/v1/hash"), ("POST", "/v1/lookup"),
              ("GET", "/metrics")]  # fmt: skip
"""Every operation of the document (checked below); driven through hypothesis directly, as
schemathesis' own pytest plugin does not run under pytest 9."""


def test_the_document_lists_exactly_the_operations_tested(served_schema: schemathesis.BaseSchema) -> None:
    listed = {(op.ok().method.upper(), op.ok().path) for op in served_schema.get_all_operations()}
    assert listed == set(OPERATIONS)


CASES = [(m, p, mode) for m, p in OPERATIONS for mode in schemathesis.GenerationMode
         if mode is schemathesis.GenerationMode.POSITIVE or m == "POST"]  # fmt: skip
"""Invalid input (negative) only where there is input: a GET here takes none."""


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m}-{p}-{mode.value}" for m, p, mode in CASES])
def test_openapi_contract_no_server_error_and_responses_conform(
    served_schema: schemathesis.BaseSchema, method: str, path: str, mode: schemathesis.GenerationMode
) -> None:
    """Generated input, valid (positive) and invalid (negative): never a 5xx, and every answer
    matches what the document says of that operation and status."""
    operation = served_schema[path][method]

    @settings(max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=[not_a_server_error, response_schema_conformance, status_code_conformance],
                               timeout=60)  # fmt: skip

    check()


def test_answers_that_carry_matches_conform(served_schema: schemathesis.BaseSchema) -> None:
    """Generated bytes almost never match a signature, so the answers that carry matches (a
    flagged scan; the lookup of its signals) are checked against the document here."""
    checks = [not_a_server_error, response_schema_conformance, status_code_conformance]
    scan = served_schema["/v1/scan"]["POST"].Case(
        body=ENROLLED.read_bytes(), media_type="application/octet-stream", query={"name": "flagged.stl"}
    )
    (record,) = scan.call_and_validate(checks=checks, timeout=60).json()["records"]
    assert record["verdict"] == "flag" and record["matches"]
    hashed = served_schema["/v1/hash"]["POST"].Case(
        body=ENROLLED.read_bytes(), media_type="application/octet-stream", query={"name": "flagged.stl"}
    )
    (signals,) = hashed.call_and_validate(checks=checks, timeout=60).json()["signals"]
    lookup = served_schema["/v1/lookup"]["POST"].Case(body=signals, media_type="application/json")
    matches = lookup.call_and_validate(checks=checks, timeout=60).json()["matches"]
    assert matches[0]["signature_id"] == record["matches"][0]["signature_id"]
