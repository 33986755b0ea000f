"""`meshscan serve` (issue 13, item 2), run as a platform would: the real command in a
subprocess on a free loopback port, spoken to over HTTP with the standard library only.

One server without authentication (``--workers 1 --queue 1`` so that the bounded queue can be
filled deterministically, by clients that have started an upload and not finished it) serves
most tests; a second one with ``--api-key-file`` tests authentication."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest

from scanner.engines.worker import FAULT_INJECTION_ENV
from tests.conftest import REPO
from tests.integration._local_copies import local_copy
from tests.integration.test_stretched_copies import stretched_file

pytest.importorskip("fastapi", reason="meshscan serve needs the serve extra")
pytest.importorskip("uvicorn", reason="meshscan serve needs the serve extra")

pytestmark = pytest.mark.timeout(120)

DEMO = REPO / "fixtures" / "demo"
ENROLLED = DEMO / "proxy-barrel-s1-000.stl"  # in the shipped demo library
BENIGN = DEMO / "benign-cup-s1-000.stl"
MAX_UPLOAD = 200_000
KEY = "test-key-" + uuid.uuid4().hex
CRASHING = "crash:upload.off"
"""The workers' fault-injection hook: the scan worker aborts on the temporary file of any
upload named ``*.off`` (the server names its temporary files ``upload`` + the suffix)."""


@dataclass
class Server:
    base: str
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None):
        """(status, headers, body bytes) of one request; HTTP errors are answers, not exceptions."""
        req = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers, err.read()

    def json(self, method: str, path: str, body: bytes | None = None, **headers: str) -> tuple[int, dict]:
        status, _, data = self.request(method, path, body, headers)
        return status, json.loads(data)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    port = free_port()
    log = tmp / f"serve-{port}.log"
    env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "scanner.cli", "serve", "--host", "127.0.0.1", "--port", str(port), *args],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", port, proc, log)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, f"meshscan serve exited: {log.read_text(errors='replace')}"
            try:
                with urllib.request.urlopen(server.base + "/v1/status", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                assert time.monotonic() < deadline, f"meshscan serve did not start: {log.read_text(errors='replace')}"
                time.sleep(0.25)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("serve")
    yield from start_server(tmp, "--workers", "1", "--queue", "1", "--max-upload-bytes", str(MAX_UPLOAD),
                            env={FAULT_INJECTION_ENV: CRASHING})  # fmt: skip


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("serve-auth")
    keys = tmp / "keys.txt"
    keys.write_text(f"# platform keys\n{KEY}\n\nsecond-key-{uuid.uuid4().hex}\n", encoding="utf-8")
    yield from start_server(tmp, "--api-key-file", str(keys), "--no-model")


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(files("scanner.data").joinpath("verdict.schema.json").read_text("utf-8"))


def multipart(name: str, data: bytes) -> tuple[bytes, dict[str, str]]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def scan(server: Server, name: str, data: bytes, schema: dict) -> list[dict]:
    body, headers = multipart(name, data)
    status, answer = server.json("POST", "/v1/scan", body, **headers)
    assert status == 200, answer
    validator = jsonschema.Draft202012Validator(schema)
    for record in answer["records"]:
        assert not list(validator.iter_errors(record)), record
    return answer["records"]


def rotated_copy(src: Path, dest: Path) -> bytes:
    import trimesh

    mesh = trimesh.load(src)
    mesh.apply_transform(trimesh.transformations.rotation_matrix(0.7, [0.3, 1.0, 0.2]))
    mesh.export(dest)
    return dest.read_bytes()


def test_status_reports_versions_and_queue(server: Server) -> None:
    from scanner import __version__
    from scanner.features import DESCRIPTOR_VERSION

    status, answer = server.json("GET", "/v1/status")
    assert status == 200
    assert answer["scanner_version"] == __version__
    assert answer["descriptor_version"] == DESCRIPTOR_VERSION
    assert answer["library_version"] and answer["model_version"]
    assert (answer["workers"], answer["queue_capacity"], answer["queue_depth"], answer["in_flight"]) == (1, 1, 0, 0)
    assert answer["auth"] is False


def test_scan_flags_the_enrolled_proxy_and_clears_a_benign_file(server: Server, schema: dict) -> None:
    (flagged,) = scan(server, "upload.stl", ENROLLED.read_bytes(), schema)
    assert flagged["verdict"] == "flag" and flagged["path"] == "upload.stl"
    assert flagged["matches"][0]["signature_id"].startswith("ms-")
    (benign,) = scan(server, BENIGN.name, BENIGN.read_bytes(), schema)
    assert benign["verdict"] == "clear"


def test_scan_gives_the_records_of_scan_format_json(server: Server, tmp_path: Path, schema: dict) -> None:
    shutil.copy(ENROLLED, tmp_path / "same.stl")
    cli = subprocess.run([sys.executable, "-m", "scanner.cli", "scan", "--format", "json", str(tmp_path / "same.stl")],
                         capture_output=True, text=True, timeout=120, cwd=REPO)  # fmt: skip
    (expected,) = json.loads(cli.stdout)
    (served,) = scan(server, "same.stl", ENROLLED.read_bytes(), schema)
    for key in ("verdict", "category", "sha256", "geometry_hash", "matches", "library_version", "model_version"):
        assert served[key] == expected[key], key


def test_raw_body_with_name_and_garbage_is_an_unscannable_record(server: Server, schema: dict) -> None:
    status, answer = server.json("POST", "/v1/scan?name=junk.stl", os.urandom(5000),
                                 **{"Content-Type": "application/octet-stream"})  # fmt: skip
    assert status == 200
    (record,) = answer["records"]
    assert record["verdict"] == "unscannable" and record["path"] == "junk.stl" and record["reason"]
    jsonschema.Draft202012Validator(schema).validate(record)


def test_upload_over_the_limit_is_413_declared_or_streamed(server: Server) -> None:
    status, _, body = server.request("POST", "/v1/scan?name=big.stl", b"x" * (MAX_UPLOAD + 1))
    assert status == 413 and b"limit:upload-bytes" in body
    # no Content-Length: chunked, so only counting the stream can stop it
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.putrequest("POST", "/v1/scan?name=big.stl")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    chunk = b"y" * 16384
    for _ in range(MAX_UPLOAD // len(chunk) + 2):
        conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
    conn.send(b"0\r\n\r\n")
    resp = conn.getresponse()
    assert resp.status == 413 and b"limit:upload-bytes" in resp.read()
    conn.close()
    assert server.json("GET", "/v1/status")[1]["queue_depth"] == 0


def test_hash_then_lookup_of_a_rotated_copy_matches_the_signature_scan_reports(
    server: Server, tmp_path: Path, schema: dict
) -> None:
    data = rotated_copy(ENROLLED, tmp_path / "turned.stl")
    status, hashed = server.json("POST", "/v1/hash?name=turned.stl", data)
    assert status == 200 and hashed["error"] is None
    (signals,) = hashed["signals"]
    assert signals["rows"] and len(signals["rows"]) == len(signals["row_bodies"])
    status, looked = server.json("POST", "/v1/lookup", json.dumps(signals).encode(),
                                 **{"Content-Type": "application/json"})  # fmt: skip
    assert status == 200 and looked["matches"], looked
    (record,) = scan(server, "turned.stl", data, schema)
    assert record["verdict"] == "flag"
    assert looked["matches"][0]["signature_id"] == record["matches"][0]["signature_id"]
    # garbage has no signals, and says nothing went wrong with the server
    status, hashed = server.json("POST", "/v1/hash?name=junk.bin", os.urandom(3000))
    assert status == 200 and hashed["signals"] == []


def test_hash_then_lookup_of_a_fused_copy_flags_locally_as_its_scan_does(
    server: Server, tmp_path: Path, schema: dict
) -> None:
    """A proxy fused to a plate: only local patch matching finds it, through the signals too."""
    data = local_copy(tmp_path / "fused.stl").read_bytes()
    (record,) = scan(server, "fused.stl", data, schema)
    assert record["verdict"] == "flag" and record["matches"][0]["kind"] == "local", record["explanation"]
    status, hashed = server.json("POST", "/v1/hash?name=fused.stl", data)
    assert status == 200 and hashed["error"] is None
    (signals,) = hashed["signals"]
    assert signals["patches"]
    json_body = {"Content-Type": "application/json"}
    status, looked = server.json("POST", "/v1/lookup", json.dumps(signals).encode(), **json_body)
    assert status == 200, looked
    assert looked == {"matches": record["matches"], "notes": []}
    # signals of a meshscan before patch codes are still read: no local match, and a note says why
    old = {k: v for k, v in signals.items() if k not in ("patches", "affine")}
    status, looked = server.json("POST", "/v1/lookup", json.dumps(old).encode(), **json_body)
    assert status == 200 and looked["matches"] == []
    notes = [(n["kind"], n["reason"]) for n in looked["notes"]]
    assert notes == [("stretched", "no-affine-row"), ("local", "no-patch-codes")]
    # codes of another patch version are refused, with the reason code
    other = dict(signals, patches="pc1;" + signals["patches"].split(";", 1)[1])
    status, _, data = server.request("POST", "/v1/lookup", json.dumps(other).encode(), json_body)
    assert status == 422 and b"patch-version" in data and b"'pc1'" in data


def test_hash_then_lookup_of_a_stretched_copy_matches_as_its_scan_does(
    server: Server, tmp_path: Path, schema: dict
) -> None:
    data = Path(stretched_file(tmp_path, ENROLLED.name, 1.2)).read_bytes()
    (record,) = scan(server, "stretched.stl", data, schema)
    assert record["verdict"] == "flag" and record["matches"][0]["kind"] == "stretched", record["explanation"]
    _, hashed = server.json("POST", "/v1/hash?name=stretched.stl", data)
    (signals,) = hashed["signals"]
    status, looked = server.json("POST", "/v1/lookup", json.dumps(signals).encode(),
                                 **{"Content-Type": "application/json"})  # fmt: skip
    assert status == 200 and looked == {"matches": record["matches"], "notes": []}


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[]", b'{"rows": 3}', b'{"geometry_hash": "x", "descriptor_version": "other", "rows": [[0.0]], '
     b'"row_bodies": [-1]}'],
)  # fmt: skip
def test_malformed_lookup_is_422(server: Server, body: bytes) -> None:
    status, _, data = server.request("POST", "/v1/lookup", body, {"Content-Type": "application/json"})
    assert status == 422, data


def test_lookup_with_wrong_row_width_is_422(server: Server, tmp_path: Path) -> None:
    _, hashed = server.json("POST", "/v1/hash?name=b.stl", BENIGN.read_bytes())
    signals = hashed["signals"][0]
    signals["rows"] = [row[:-1] for row in signals["rows"]]
    status, _, data = server.request("POST", "/v1/lookup", json.dumps(signals).encode(),
                                     {"Content-Type": "application/json"})  # fmt: skip
    assert status == 422 and b"row" in data


def test_lookup_with_row_shares_that_do_not_fit_the_rows_is_422(server: Server) -> None:
    _, hashed = server.json("POST", "/v1/hash?name=b.stl", BENIGN.read_bytes())
    signals = hashed["signals"][0]
    assert len(signals["row_shares"]) == len(signals["rows"]) and signals["row_shares"][0] == 1.0
    for bad in ([1.0] * (len(signals["rows"]) + 1), [2.0] * len(signals["rows"])):
        status, _, data = server.request("POST", "/v1/lookup", json.dumps(signals | {"row_shares": bad}).encode(),
                                         {"Content-Type": "application/json"})  # fmt: skip
        assert status == 422 and b"row_shares" in data, data


def test_lookup_with_row_solidity_that_does_not_fit_the_rows_is_422(server: Server) -> None:
    _, hashed = server.json("POST", "/v1/hash?name=b.stl", BENIGN.read_bytes())
    signals = hashed["signals"][0]
    assert len(signals["row_solidity"]) == len(signals["rows"])
    status, _, _ = server.request(
        "POST", "/v1/lookup", json.dumps(signals).encode(), {"Content-Type": "application/json"}
    )
    assert status == 200
    for bad in ([1.0] * (len(signals["rows"]) + 1), [-1.0] * len(signals["rows"])):
        status, _, data = server.request("POST", "/v1/lookup", json.dumps(signals | {"row_solidity": bad}).encode(),
                                         {"Content-Type": "application/json"})  # fmt: skip
        assert status == 422 and b"row_solidity" in data, data


def test_full_queue_answers_503_with_retry_after(server: Server) -> None:
    """--workers 1 --queue 1: two clients that have begun an upload hold both places."""
    held = []
    for i in range(2):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.putrequest("POST", f"/v1/scan?name=slow{i}.stl")
        conn.putheader("Content-Length", "4000")
        conn.endheaders()
        conn.send(b"solid slow\n")  # and no more, for now
        held.append(conn)
    deadline = time.monotonic() + 30
    while server.json("GET", "/v1/status")[1]["queue_depth"] < 2:
        assert time.monotonic() < deadline, "the held uploads were never admitted"
        time.sleep(0.05)
    status, headers, body = server.request("POST", "/v1/scan?name=third.stl", ENROLLED.read_bytes())
    assert status == 503 and int(headers["Retry-After"]) > 0 and b"busy" in body
    for conn in held:  # finishing the held uploads: both are scanned (and unreadable, not errors)
        conn.send(b" " * (4000 - len(b"solid slow\n")))
        resp = conn.getresponse()
        assert resp.status == 200
        (record,) = json.loads(resp.read())["records"]
        assert record["verdict"] == "unscannable"
        conn.close()
    assert server.json("POST", "/v1/scan?name=again.stl", ENROLLED.read_bytes())[1]["records"][0]["verdict"] == "flag"


def test_metrics_count_requests_verdicts_and_latency(server: Server) -> None:
    server.request("POST", "/v1/scan?name=m.stl", ENROLLED.read_bytes())
    status, headers, body = server.request("GET", "/metrics")
    text = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert 'meshscan_serve_requests_total{endpoint="/v1/scan",status="200"}' in text
    assert 'meshscan_serve_verdicts_total{verdict="flag"}' in text
    assert "meshscan_serve_scan_seconds_count" in text


def test_openapi_document_describes_the_endpoints(server: Server) -> None:
    status, doc = server.json("GET", "/openapi.json")
    assert status == 200
    for path in ("/v1/status", "/v1/scan", "/v1/hash", "/v1/lookup", "/metrics"):
        assert path in doc["paths"], path
    assert "multipart/form-data" in doc["paths"]["/v1/scan"]["post"]["requestBody"]["content"]


def test_api_keys_are_required_when_given(auth_server: Server, schema: dict) -> None:
    data = ENROLLED.read_bytes()
    assert auth_server.request("POST", "/v1/scan?name=a.stl", data)[0] == 401
    wrong = {"Authorization": "Bearer not-" + KEY}
    assert auth_server.request("POST", "/v1/scan?name=a.stl", data, wrong)[0] == 401
    assert auth_server.request("POST", "/v1/lookup", b"{}", {"Authorization": f"Basic {KEY}"})[0] == 401
    status, _, body = auth_server.request("POST", "/v1/scan?name=a.stl", data, {"Authorization": f"Bearer {KEY}"})
    assert status == 200
    (record,) = json.loads(body)["records"]
    assert record["verdict"] == "flag" and record["model_version"] is None  # --no-model
    jsonschema.Draft202012Validator(schema).validate(record)
    status, answer = auth_server.json("GET", "/v1/status")  # open: for health checks
    assert status == 200 and answer["auth"] is True


def test_refuses_a_public_address_without_api_keys() -> None:
    result = subprocess.run([sys.executable, "-m", "scanner.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
                            capture_output=True, text=True, timeout=60, cwd=REPO)  # fmt: skip
    assert result.returncode != 0
    assert "refusing to serve on 0.0.0.0 without authentication" in result.stderr
    assert "Traceback" not in result.stderr


def test_multipart_without_a_file_field_is_400_and_the_name_never_becomes_a_path(server: Server, schema: dict) -> None:
    body, headers = multipart("x.stl", b"data")
    status, _, data = server.request("POST", "/v1/scan", body.replace(b'name="file"', b'name="other"'), headers)
    assert status == 400 and b"'file' field" in data
    (record,) = scan(server, "../../outside/evil.stl", ENROLLED.read_bytes(), schema)
    assert record["verdict"] == "flag" and record["path"] == "../../outside/evil.stl"  # a label, not a place


def test_a_crashing_scan_worker_is_a_record_and_the_server_goes_on(server: Server, schema: dict) -> None:
    (record,) = scan(server, "crashes.off", ENROLLED.read_bytes(), schema)
    assert record["verdict"] == "unscannable" and record["reason"] == "worker-crashed"
    assert record["path"] == "crashes.off"
    (after,) = scan(server, "fine.stl", ENROLLED.read_bytes(), schema)
    assert after["verdict"] == "flag"
    assert server.json("GET", "/v1/status")[1]["in_flight"] == 0
