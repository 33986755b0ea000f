"""Appeals (issue 20): a decided item reopened, decided again by a second person, in the same
hash chain; an overturned decision's enrolment or allowlisting undone in the library.

The workspace is built once for real: synthetic proxies (fixtures/demo, from fixtures/generate.py)
scanned with ``meshscan scan --db`` against a library that enrols two of them (real ``flag``
verdicts, the reviewable items here); every test works in its own copy, through the CLI.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from scanner.cli import cli
from scanner.enrol import enrol
from scanner.inspect import file_sha256
from scanner.library import SignatureLibrary
from scanner.review import ReviewStore
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
CONFIRMED = "proxy-barrel-s1-000.stl"  # flagged by lib-a; confirmed and enrolled into lib-b
DISMISSED = "proxy-frame_or_receiver-s1-001.stl"  # flagged by lib-a; dismissed and allowlisted in lib-b
BENIGN = "benign-bracket-s1-001.stl"
REUPLOAD = "reupload.stl"  # the confirmed proxy's bytes under another name: another item
OTHER = "proxy-slide_or_cylinder-s1-002.stl"  # lib-b's own signature: lib-b is never empty
DB = "results.sqlite"
SCAN = ["scan", "--no-model", "--jobs", "1"]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("appeals-template")
    (root / "uploads").mkdir()
    for name in (CONFIRMED, DISMISSED, BENIGN):
        shutil.copy(DEMO / name, root / "uploads" / name)
    shutil.copy(DEMO / CONFIRMED, root / "uploads" / REUPLOAD)
    lib_a = SignatureLibrary.create(root / "lib-a")
    assert enrol(lib_a, DEMO / CONFIRMED, "barrel", "test setup")[0].status == "added"
    assert enrol(lib_a, DEMO / DISMISSED, "frame_or_receiver", "test setup")[0].status == "added"
    lib_a.save()
    lib_b = SignatureLibrary.create(root / "lib-b")
    assert enrol(lib_b, DEMO / OTHER, "slide_or_cylinder", "test setup")[0].status == "added"
    lib_b.save()
    result = CliRunner().invoke(cli, [*SCAN, str(root / "uploads"), "--library", str(root / "lib-a"), "--db",
                                      str(root / DB), "--format", "jsonl"])  # fmt: skip
    assert result.exit_code == 1, result.output  # both proxies flagged
    return root


@pytest.fixture
def ws(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(template, root)
    old, new = str(template.resolve()), str(root.resolve())
    with contextlib.closing(sqlite3.connect(root / DB)) as conn, conn:  # the copy's rows name the copy's files
        for path, member, record in conn.execute("SELECT path, member, record FROM results").fetchall():
            rec = json.loads(record)
            rec["path"] = new + path[len(old) :]
            conn.execute("UPDATE results SET path = ?, record = ? WHERE path = ? AND member = ?",
                         (rec["path"], json.dumps(rec), path, member))  # fmt: skip
    monkeypatch.chdir(root)
    return root


def review(*args: str):  # noqa: ANN201 - click Result
    return CliRunner().invoke(cli, ["review", DB, *args])


def queue() -> list[dict]:
    result = review("--format", "jsonl", "--verdict", "flag", "--verdict", "review")
    assert result.exit_code in (0, 1), result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def id_of(name: str) -> str:
    return next(i["id"] for i in queue() if i["path"].endswith(name))


def rescan(name: str, library: str) -> dict:
    result = CliRunner().invoke(cli, [*SCAN, f"uploads/{name}", "--library", library, "--format", "jsonl"])
    assert result.exit_code in (0, 1), result.output
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    return record


def ok(result) -> dict:  # noqa: ANN001
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def audit_rows() -> list[dict]:
    with contextlib.closing(ReviewStore(DB)) as store:
        return store.decisions()


def confirm_and_enrol() -> tuple[str, str]:
    """ann confirms the flagged proxy and enrols it into lib-b: (item id, signature id)."""
    target = id_of(CONFIRMED)
    row = ok(review("--decide", target, "confirm", "--by", "ann", "--reason", "matches case 17", "--enrol", "lib-b"))
    (action,) = row["actions"]
    assert action["status"] == "added"
    return target, action["signature_id"]


def test_overturned_confirm_disables_the_enrolled_signature(ws: Path) -> None:
    target, sid = confirm_and_enrol()
    flagged = rescan(CONFIRMED, "lib-b")
    assert flagged["verdict"] == "flag" and flagged["matches"][0]["signature_id"] == sid
    assert target not in [i["id"] for i in queue()]  # decided: not waiting

    appeal = ok(review("--appeal", target, "--by", "uploader-42", "--reason", "it is a telescope tube"))
    assert appeal["decision"] == "appeal" and appeal["appeals"] == audit_rows()[0]["decision_id"]
    assert appeal["original"]["decision"] == "confirm" and appeal["original"]["by"] == "ann"
    waiting = [i for i in queue() if i["id"] == target]
    assert len(waiting) == 1 and waiting[0]["appeal"]["appeal_id"] == appeal["appeal_id"]
    assert waiting[0]["appeal"]["decision"]["decision"] == "confirm"
    assert review("--verdict", "flag").exit_code == 1  # the appeal waits for a person
    table = review("--format", "table", "--verdict", "flag")
    assert "APPEAL of confirm by ann" in table.stdout

    again = review("--appeal", target, "--by", "someone", "--reason", "me too")
    assert again.exit_code == 2 and "[appeal-open]" in again.stderr
    own = review("--decide-appeal", target, "--outcome", "overturned", "--by", " ANN ", "--reason", "I erred")
    assert own.exit_code == 2 and "[same-reviewer]" in own.stderr and "four eyes" in own.stderr
    mine = review("--decide-appeal", target, "--outcome", "overturned", "--by", "uploader-42", "--reason", "yes")
    assert mine.exit_code == 2 and "[same-appellant]" in mine.stderr
    assert len(audit_rows()) == 2  # refusals record nothing
    assert SignatureLibrary.load("lib-b").signatures[-1].disabled is None

    before = SignatureLibrary.load("lib-b").library_version
    outcome = ok(review("--decide-appeal", target, "--outcome", "overturned", "--by", "bob",
                        "--reason", "optical part, not a component"))  # fmt: skip
    assert outcome["decision"] == "appeal-outcome" and outcome["outcome"] == "overturned"
    assert outcome["appeal_id"] == appeal["appeal_id"] and outcome["appellant"] == "uploader-42"
    (action,) = outcome["actions"]
    assert (action["action"], action["status"], action["signature_id"]) == ("disable", "disabled", sid)
    lib = SignatureLibrary.load("lib-b")
    assert action["library_version_before"] == before != lib.library_version == action["library_version_after"]
    sig = next(s for s in lib.signatures if s.id == sid)  # kept, not deleted
    assert sig.disabled["by"] == "bob" and "optical part" in sig.disabled["why"]
    assert appeal["appeal_id"] in sig.disabled["why"] and sig.disabled["at"]
    cleared = rescan(CONFIRMED, "lib-b")
    assert cleared["verdict"] == "clear" and sid not in json.dumps(cleared["matches"])
    assert target not in [i["id"] for i in queue()]  # the appeal is decided: nothing waits

    closed = review("--appeal", target, "--by", "uploader-42", "--reason", "once more")
    assert closed.exit_code == 2 and "[appeal-closed]" in closed.stderr
    verified = review("--verify")
    assert verified.exit_code == 0 and "OK: 3 decision(s)" in verified.stdout
    audit = CliRunner().invoke(cli, ["review", DB, "--audit", "--format", "table"], env={"COLUMNS": "400"})
    assert "appeal-outcome (overturned)" in audit.stdout and "disable:disabled" in audit.stdout

    # the same bytes uploaded again are another item: confirming it does not re-enable the signature
    again = ok(review("--decide", id_of(REUPLOAD), "confirm", "--by", "dave", "--reason", "r", "--enrol", "lib-b"))
    (action,) = again["actions"]
    assert (action["status"], action["signature_id"]) == ("already-enrolled-disabled", sid)
    assert action["disabled"]["by"] == "bob"
    assert rescan(REUPLOAD, "lib-b")["verdict"] == "clear"


def test_overturned_dismiss_removes_the_allowlist_entry(ws: Path) -> None:
    target = id_of(DISMISSED)
    ok(review("--decide", target, "dismiss", "--by", "ann", "--reason", "looks like a bracket", "--allowlist", "lib-b"))
    sha = file_sha256(f"uploads/{DISMISSED}")
    assert [a.sha256 for a in SignatureLibrary.load("lib-b").allowlist] == [sha]
    assert "on the allowlist" in rescan(DISMISSED, "lib-b")["explanation"]
    ok(review("--appeal", target, "--by", "trust-and-safety", "--reason", "reported by a partner"))
    outcome = ok(review("--decide-appeal", target, "--outcome", "overturned", "--by", "carol", "--reason", "it is"))
    (action,) = outcome["actions"]
    assert (action["action"], action["status"], action["sha256"]) == ("unallow", "removed", sha)
    assert SignatureLibrary.load("lib-b").allowlist == []
    assert "on the allowlist" not in rescan(DISMISSED, "lib-b")["explanation"]
    assert review("--verify").exit_code == 0


def test_upheld_appeal_changes_no_library(ws: Path) -> None:
    target, sid = confirm_and_enrol()
    version = SignatureLibrary.load("lib-b").library_version
    ok(review("--appeal", target, "--by", "uploader-42", "--reason", "no"))
    outcome = ok(review("--decide-appeal", target, "--outcome", "upheld", "--by", "bob", "--reason", "it is one"))
    assert outcome["outcome"] == "upheld" and outcome["actions"] == []
    assert SignatureLibrary.load("lib-b").library_version == version
    assert rescan(CONFIRMED, "lib-b")["matches"][0]["signature_id"] == sid


def test_refusals_and_usage(ws: Path) -> None:
    undecided = id_of(CONFIRMED)
    never = review("--appeal", undecided, "--by", "u", "--reason", "r")
    assert never.exit_code == 2 and "[not-decided]" in never.stderr
    nothing = review("--decide-appeal", undecided, "--outcome", "upheld", "--by", "u", "--reason", "r")
    assert nothing.exit_code == 2 and "[not-decided]" in nothing.stderr
    unknown = review("--appeal", "ffff0000", "--by", "u", "--reason", "r")
    assert unknown.exit_code == 2 and "[unknown-id]" in unknown.stderr
    ok(review("--decide", undecided, "dismiss", "--by", "ann", "--reason", "benign"))
    no_open = review("--decide-appeal", undecided, "--outcome", "upheld", "--by", "bob", "--reason", "r")
    assert no_open.exit_code == 2 and "[no-open-appeal]" in no_open.stderr
    for args, message in [
        (["--appeal", undecided], "needs --by NAME and --reason TEXT"),
        (["--decide-appeal", undecided, "--by", "b", "--reason", "r"], "needs --outcome"),
        (["--outcome", "upheld"], "--outcome goes with --decide-appeal"),
        (["--appeal", undecided, "--by", "b", "--reason", "r", "--enrol", "lib-b"], "--enrol go(es) with --decide"),
        (["--appeal", undecided, "--by", "b", "--reason", "r", "--verify"], "cannot be combined"),
    ]:
        result = review(*args)
        assert result.exit_code == 3 and message in result.output, (args, result.output)
    assert len(audit_rows()) == 1


def test_appeal_with_mirror_verifies_against_it(ws: Path) -> None:
    target, _ = confirm_and_enrol()
    ok(review("--appeal", target, "--by", "u", "--reason", "r", "--audit-log", "mirror.jsonl"))
    ok(review("--decide-appeal", target, "--outcome", "upheld", "--by", "bob", "--reason", "r",
              "--audit-log", "mirror.jsonl"))  # fmt: skip
    lines = Path("mirror.jsonl").read_text().splitlines()
    assert [json.loads(line)["decision"] for line in lines] == ["appeal", "appeal-outcome"]
    result = review("--verify", "--audit-log", "mirror.jsonl")
    assert result.exit_code == 0 and "1 decision(s) recorded without this mirror" in result.stderr


def _drop_guards(conn: sqlite3.Connection) -> None:
    conn.execute("DROP TRIGGER review_decisions_no_update")
    conn.execute("DROP TRIGGER review_decisions_no_delete")
    conn.execute("DROP TRIGGER review_decisions_chain")


def _appealed_and_decided() -> str:
    target, _ = confirm_and_enrol()
    ok(review("--appeal", target, "--by", "uploader-42", "--reason", "r"))
    ok(review("--decide-appeal", target, "--outcome", "overturned", "--by", "bob", "--reason", "r"))
    return target


def test_tampering_with_an_appeal_row_fails_verify(ws: Path) -> None:
    _appealed_and_decided()
    with contextlib.closing(sqlite3.connect(DB)) as conn, conn:
        _drop_guards(conn)
        conn.execute("UPDATE review_decisions SET entry = replace(entry, '\"bob\"', '\"ann\"') WHERE seq = 3")
    result = review("--verify")
    assert result.exit_code == 3
    assert "#3: content does not match its hash" in result.stderr
    assert "#3: appeal decided by the person who made the contested decision (four eyes)" in result.stderr


def test_a_rechained_log_still_fails_the_appeal_rules(ws: Path) -> None:
    """Someone who rewrites the outcome as the original reviewer's and recomputes every hash
    gets a chain that links, but not one that keeps the four-eyes rule; an outcome moved before
    its appeal breaks the order rule."""
    from scanner.util import canonical, chain_hash

    _appealed_and_decided()
    with contextlib.closing(sqlite3.connect(DB)) as conn, conn:
        _drop_guards(conn)
        rows = conn.execute("SELECT seq, entry FROM review_decisions ORDER BY seq").fetchall()
        entries = [json.loads(e) for _, e in rows]
        entries[2]["by"] = "ann"
        entries[1], entries[2] = entries[2], entries[1]  # the outcome first, then the appeal
        conn.execute("DELETE FROM review_decisions")
        prev = "0" * 64
        for seq, entry in enumerate(entries, 1):
            entry["seq"] = seq
            text = canonical(entry)
            digest = chain_hash(prev, text)
            conn.execute("INSERT INTO review_decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (seq, entry["decision_id"], entry["item_id"], entry["decision"], entry["at"], text, prev,
                          digest))  # fmt: skip
            prev = digest
    result = review("--verify")
    assert result.exit_code == 3
    assert "does not match its hash" not in result.stderr  # the chain itself is consistent
    assert "#2: appeal outcome for item" in result.stderr and "without an open appeal" in result.stderr


def test_old_logs_without_appeals_still_verify(ws: Path) -> None:
    confirm_and_enrol()
    ok(review("--decide", id_of(DISMISSED), "dismiss", "--by", "ann", "--reason", "benign"))
    assert {r["decision"] for r in audit_rows()} == {"confirm", "dismiss"}
    assert review("--verify").exit_code == 0


def test_appeal_api_returns_the_recorded_rows(ws: Path) -> None:
    target, _ = confirm_and_enrol()
    with contextlib.closing(ReviewStore(DB, readonly=False)) as store:
        row = store.appeal(target[:8], "uploader-42", "wrong call")
        assert row["seq"] == 2 and row["hash"] and row["prev_hash"] == store.decisions()[0]["hash"]
        assert set(store.open_appeals()) == {store.decisions()[0]["item_id"]}
        outcome = store.decide_appeal(target[:8], "bob", "upheld", "right call")
        assert outcome["seq"] == 3 and store.open_appeals() == {}
        assert store.history(row["item_id"]).outcome["decision_id"] == outcome["decision_id"]
        assert store.verify().ok
    assert os.path.exists(DB)


def test_a_disabled_signature_is_kept_but_never_matches(tmp_path: Path) -> None:
    """The library side: disable keeps the signature with who/why/when, the matcher and the
    published bundle leave it out, and a library without disabled signatures is written as
    before the field existed (same library version)."""
    from scanner.exchange.signals import library_signals
    from scanner.matching import Matcher

    lib = SignatureLibrary.create(tmp_path / "lib")
    (added,) = enrol(lib, DEMO / CONFIRMED, "barrel", "test setup")
    lib.save()
    version = lib.library_version
    assert "disabled" not in (tmp_path / "lib" / "signatures.json").read_text()
    SignatureLibrary.load(tmp_path / "lib").save()
    assert SignatureLibrary.load(tmp_path / "lib").library_version == version
    sha = file_sha256(DEMO / CONFIRMED)
    assert Matcher.build(lib).exact(sha, None, 0.1)
    enabled = Matcher.build(SignatureLibrary.load(tmp_path / "lib"))
    assert lib.disable(added.signature_id, "bob", "overturned") is True
    assert lib.disable(added.signature_id, "bob", "again") is False
    lib.save()
    back = SignatureLibrary.load(tmp_path / "lib")
    assert back.library_version != version and len(back) == 1
    assert back.signatures[0].disabled["by"] == "bob" and back.signatures[0].disabled["why"] == "overturned"
    matcher = Matcher.build(back)
    assert matcher.exact(sha, back.signatures[0].geometry_hash, 0.1) == []
    # its own descriptor rows, queried at any radius, find nothing: they stay in the index
    # (row numbers match a stored ANN shortlist) but are masked
    rows = np.asarray(back.vectors)
    assert matcher.near(rows, [-1] * len(rows), 5, 1.0) == []
    assert enabled.near(rows, [-1] * len(rows), 5, 1.0)  # the same rows, before disabling, match
    assert library_signals(back) == []


def test_failed_outcome_write_puts_the_library_back(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The signature was disabled and saved, but the outcome cannot be recorded (I/O error on
    the database): the library is restored, the appeal is still open, nothing is recorded."""
    import scanner.review.audit as audit_module

    target, sid = confirm_and_enrol()
    ok(review("--appeal", target, "--by", "uploader-42", "--reason", "r"))
    before = SignatureLibrary.load("lib-b").library_version

    def failing_hash(prev: str, entry: str) -> str:
        raise sqlite3.OperationalError("disk I/O error")

    with monkeypatch.context() as patched:
        patched.setattr(audit_module, "chain_hash", failing_hash)
        result = review("--decide-appeal", target, "--outcome", "overturned", "--by", "bob", "--reason", "r")
    assert result.exit_code == 3 and "[audit-log]" in result.output and "disk I/O error" in result.output
    assert [r["decision"] for r in audit_rows()] == ["confirm", "appeal"]
    restored = SignatureLibrary.load("lib-b")
    assert restored.library_version == before and all(s.disabled is None for s in restored.signatures)
    assert target in [i["id"] for i in queue()]  # the appeal still waits
    assert rescan(CONFIRMED, "lib-b")["matches"][0]["signature_id"] == sid


def test_a_library_that_cannot_be_used_records_no_outcome(ws: Path) -> None:
    target, _ = confirm_and_enrol()
    ok(review("--appeal", target, "--by", "uploader-42", "--reason", "r"))
    (Path("lib-b") / "signatures.json").write_text("[]")  # fails its checksum
    result = review("--decide-appeal", target, "--outcome", "overturned", "--by", "bob", "--reason", "r")
    assert result.exit_code == 3 and "[library]" in result.output
    assert [r["decision"] for r in audit_rows()] == ["confirm", "appeal"]


def test_signatures_list_shows_a_disabled_signature(ws: Path) -> None:
    _appealed_and_decided()
    listed = CliRunner().invoke(cli, ["signatures", "list", "--library", "lib-b"], env={"COLUMNS": "400"})
    assert listed.exit_code == 0 and "DISABLED by bob" in listed.stdout
    rows = [
        json.loads(x)
        for x in CliRunner().invoke(cli, ["signatures", "list", "--library", "lib-b", "--json"]).stdout.splitlines()
    ]
    assert [r["disabled"] is not None for r in rows] == [False, True]
