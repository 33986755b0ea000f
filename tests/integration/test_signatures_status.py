"""`meshscan signatures status` through the real command: a subscribed library's versions,
each publisher with its key fingerprint, the version held and allowlist trust; disabled
signatures with who and why; and the library's hash-chained audit log, which catches an edited,
deleted or forged event and a hand-edited disabled list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scanner.exchange.keys import load_public
from tests.conftest import REPO
from tests.integration._publishing import Publisher, meshscan, ok

pytestmark = pytest.mark.timeout(300)

DEMO = REPO / "fixtures" / "demo"


def status(library: Path) -> tuple[int, dict, str]:
    done = meshscan("signatures", "status", "--library", str(library), "--json")
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout), done.stderr


def banks_file(library: Path) -> Path:
    return library.resolve() / "banks.json"


def edit_banks(library: Path, change) -> None:  # noqa: ANN001 - a function of the state
    state = json.loads(banks_file(library).read_text())
    change(state)
    banks_file(library).write_text(json.dumps(state, indent=1))


@pytest.fixture(scope="module")
def subscribed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Publisher, Path, list[str]]:
    """A library subscribed to two publishers (one trusted for allowlists), one signature
    disabled and enabled again (it returns with its bank's next update), another disabled."""
    root = tmp_path_factory.mktemp("status")
    first, second = Publisher(root / "first", name="First authority"), Publisher(root / "second", name="Second body")
    first.enrol(DEMO / "proxy-barrel-s1-000.stl", "barrel")
    first.enrol(DEMO / "proxy-accessory-s1-002.stl", "accessory")
    second.enrol(DEMO / "proxy-frame_or_receiver-s1-001.stl", "frame_or_receiver")
    sub = root / "subscribed"
    first.update(sub, first.publish())
    ok("signatures", "update", str(second.publish()), "--library", str(sub), "--trust", str(second.public_key),
       "--trust-allowlist", str(second.public_key))  # fmt: skip
    first_ids = [json.loads(x)["id"] for x in ok("signatures", "list", "--library", str(first.library),
                                                  "--json").splitlines()]  # fmt: skip
    ok("signatures", "disable", first_ids[0], "--library", str(sub), "--by", "carol", "--why", "hits pipes")
    ok("signatures", "enable", first_ids[0], "--library", str(sub), "--by", "dave", "--why", "threshold fixed")
    ok("signatures", "disable", first_ids[1], "--library", str(sub), "--by", "erin", "--why", "too broad")
    return first, second, sub, first_ids  # type: ignore[return-value]


def test_status_lists_publishers_with_fingerprints_and_the_audit_log(subscribed) -> None:  # noqa: ANN001
    first, second, sub, first_ids = subscribed
    code, st, _ = status(sub)
    assert code == 0
    lib = st["library"]
    assert lib["signatures"] == 1 and lib["descriptor_version"] and lib["library_version"] not in ("", "empty")
    by_name = {b["publisher"]: b for b in st["banks"]}
    assert set(by_name) == {"First authority", "Second body"}
    assert by_name["First authority"]["key"] == load_public(first.public_key).fingerprint
    assert by_name["Second body"]["key"] == load_public(second.public_key).fingerprint
    assert by_name["First authority"]["version"] == 1 and by_name["First authority"]["allowlist_trusted"] is False
    assert by_name["Second body"]["allowlist_trusted"] is True and by_name["First authority"]["signatures"] == 0
    assert list(st["disabled"]) == [first_ids[1]]
    assert st["disabled"][first_ids[1]]["by"] == "erin" and st["disabled"][first_ids[1]]["why"] == "too broad"
    audit = st["audit"]
    assert audit["ok"] and audit["events"] == audit["chained"] == 5 and audit["problems"] == []
    assert (
        audit["last"]["action"] == "disable"
        and audit["last"]["by"] == "erin"
        and audit["head"] == audit["last"]["hash"]
    )
    events = json.loads(banks_file(sub).read_text())["events"]
    assert [(e["action"], e.get("by")) for e in events] == [
        ("update", None), ("update", None), ("disable", "carol"), ("enable", "dave"), ("disable", "erin"),
    ]  # fmt: skip

    text = meshscan("signatures", "status", "--library", str(sub))
    assert text.returncode == 0
    for word in ("First authority", load_public(first.public_key).fingerprint, "allowlist trusted",
                 "allowlist not trusted", "too broad", "erin", "5 event(s), verified", audit["head"]):  # fmt: skip
        assert word in text.stdout, word


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: s["events"][2].update(why="routine"),  # who/why rewritten after the fact
        lambda s: s["events"].pop(3),  # the enable deleted
        lambda s: s["events"].pop(),  # the last disable deleted
        lambda s: s["disabled"].clear(),  # quietly re-enabled without an event
        lambda s: s["events"].insert(2, {"at": "2026-01-01T00:00:00Z", "action": "update"}),  # forged, unchained
    ],
    ids=["edited", "deleted", "truncated-head-list-mismatch", "list-edited", "forged"],
)
def test_a_tampered_audit_log_fails_status_with_exit_3(subscribed, tmp_path: Path, tamper) -> None:  # noqa: ANN001
    _, _, sub, _ = subscribed
    before = banks_file(sub).read_text()
    try:
        edit_banks(sub, tamper)
        code, st, err = status(sub)
        assert code == 3 and not st["audit"]["ok"] and st["audit"]["problems"]
        assert "FAILED: audit log:" in err
        verify = meshscan("signatures", "verify", "--library", str(sub))
        assert verify.returncode == 3 and "FAILED: audit log:" in verify.stderr
    finally:
        banks_file(sub).write_text(before)
    assert status(sub)[0] == 0 and meshscan("signatures", "verify", "--library", str(sub)).returncode == 0


def test_a_hand_made_library_has_status_without_banks(tmp_path: Path) -> None:
    lib = tmp_path / "mine"
    ok("signatures", "init", "--library", str(lib), "--name", "own cases")
    code, st, _ = status(lib)
    assert code == 0 and st["banks"] == [] and st["disabled"] == {} and st["audit"]["events"] == 0
    assert st["library"]["name"] == "own cases" and st["library"]["signatures"] == 0
    missing = meshscan("signatures", "status", "--library", str(tmp_path / "nowhere"))
    assert missing.returncode == 3 and "Traceback" not in missing.stderr
