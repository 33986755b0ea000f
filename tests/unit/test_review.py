"""Human review: the queue, decisions and their effect on libraries, and the audit log.

Every test works on a copy of one workspace built once: demo files scanned for real with
``meshscan scan --db`` against a library that enrols one of them (a real ``flag``), plus
``review`` verdicts recorded for other real files (real sha256 and geometry hash) the way the
classifier will record them - setup, since the classifier that produces them lands separately.
Paths in the database are relative (the scan ran in the workspace), so each test runs in its copy.
Once a classifier is loaded by default, it may send more of these files to review: the tests
only assume what the setup controls (signature flags, the recorded review verdicts).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import shutil
import sqlite3
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import scanner
from scanner.cli import cli
from scanner.enrol import enrol
from scanner.inspect import file_sha256
from scanner.library import SignatureLibrary
from scanner.review import AUDIT_SCHEMA, MIN_PREFIX, ReviewItem, ReviewStore, item_id
from scanner.store.results import ResultsStore
from scanner.verdict import Verdict
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
FLAGGED = "proxy-barrel-s1-000.stl"  # enrolled into lib-a: the scan flags it
REVIEW_HIGH = "proxy-frame_or_receiver-s1-001.stl"  # review, top score 0.91
REVIEW_OLD = "benign-pipe-s1-002.stl"  # review, top score 0.62, scanned first
REVIEW_NEW = "benign-handle-s1-000.stl"  # review, top score 0.62, scanned later
CLEAR = "benign-bracket-s1-001.stl"
UPLOADS = (FLAGGED, REVIEW_HIGH, REVIEW_OLD, REVIEW_NEW, CLEAR)
IN_BUNDLE = "proxy-slide_or_cylinder-s1-002.stl"  # enrolled too: flagged as a member of uploads/bundle.zip
DB = "results.sqlite"
SCAN = ["scan", "--no-model", "--jobs", "1"]
"""Signature matching only: the review verdicts here are the ones the setup records."""
RECORDED = (REVIEW_HIGH, REVIEW_OLD, REVIEW_NEW)


def _review_verdict(root: Path, rel: str, scores: dict[str, float], scanned_at: str) -> Verdict:
    mesh = scanner.load(root / rel)
    top = max(scores, key=scores.get)
    return Verdict(
        path=rel,
        member=None,
        verdict="review",
        category=top,
        sha256=file_sha256(root / rel),
        geometry_hash=mesh.geometry_hash,
        bodies=mesh.body_count,
        triangles=mesh.triangle_count,
        scores=scores,
        explanation=f"sent to review: the classifier gives {top} {scores[top]:.2f}, below the flag threshold",
        scanner_version=scanner.__version__,
        model_version="test-setup",
        scanned_at=scanned_at,
    )


def record_review(root: Path, rel: str, scores: dict[str, float], scanned_at: str) -> None:
    db = ResultsStore(root / DB)
    st = os.stat(root / rel)
    db.record(rel, st.st_size, st.st_mtime_ns, [_review_verdict(root, rel, scores, scanned_at)])
    db.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("review-template")
    (root / "uploads").mkdir()
    for name in UPLOADS:
        shutil.copy(DEMO / name, root / "uploads" / name)
    lib_a = SignatureLibrary.create(root / "lib-a")
    assert enrol(lib_a, DEMO / FLAGGED, "barrel", "test setup")[0].status == "added"
    assert enrol(lib_a, DEMO / IN_BUNDLE, "slide_or_cylinder", "test setup")[0].status == "added"
    lib_a.save()
    with zipfile.ZipFile(root / "uploads" / "bundle.zip", "w") as zf:
        zf.write(DEMO / IN_BUNDLE, "parts/slide.stl")
        zf.write(DEMO / CLEAR, "parts/bracket.stl")
    SignatureLibrary.create(root / "lib-b").save()
    with contextlib.chdir(root):
        result = CliRunner().invoke(cli, [*SCAN, "uploads", "--library", "lib-a", "--db", DB, "--format", "jsonl"])
    assert result.exit_code == 1, result.output  # the enrolled file is flagged
    high = {"frame_or_receiver": 0.91, "accessory": 0.05}
    record_review(root, f"uploads/{REVIEW_HIGH}", high, "2026-01-01T10:00:00+00:00")
    record_review(root, f"uploads/{REVIEW_OLD}", {"barrel": 0.62, "accessory": 0.30}, "2026-01-01T09:00:00+00:00")
    record_review(root, f"uploads/{REVIEW_NEW}", {"accessory": 0.62, "barrel": 0.10}, "2026-01-01T11:00:00+00:00")
    return root


@pytest.fixture
def ws(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(template, root)
    _relocate(root / DB, str(template.resolve()), str(root.resolve()))
    monkeypatch.chdir(root)
    return root


def _relocate(db: Path, old: str, new: str) -> None:
    """Move the database along with its files: ``scan --db`` records absolute paths, so the
    workspace copy's rows must name the workspace's files, not the template's."""
    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        for path, member, record in conn.execute("SELECT path, member, record FROM results").fetchall():
            if path.startswith(old + os.sep):
                rec = json.loads(record)
                rec["path"] = new + path[len(old) :]
                conn.execute("UPDATE results SET path = ?, record = ? WHERE path = ? AND member = ?",
                             (rec["path"], json.dumps(rec), path, member))  # fmt: skip


def review(*args: str):  # noqa: ANN201 - click Result
    return CliRunner().invoke(cli, ["review", DB, *args])


def queue(*args: str) -> list[dict]:
    result = review("--format", "jsonl", *args)
    assert result.exit_code in (0, 1), result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def rescan_all(rel: str, library: str) -> list[dict]:
    result = CliRunner().invoke(cli, [*SCAN, rel, "--library", library, "--format", "jsonl"])
    assert result.exit_code in (0, 1), result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def rescan(rel: str, library: str) -> dict:
    (record,) = rescan_all(rel, library)
    return record


def audit_rows(root: Path) -> list[dict]:
    with contextlib.closing(ReviewStore(root / DB)) as store:
        return store.decisions()


def recorded(items: list[dict]) -> list[dict]:
    """The items whose review verdicts the setup recorded, in queue order."""
    return [i for i in items if Path(i["path"]).name in RECORDED and i["verdict"] == "review"]


def id_of(items: list[dict], name: str) -> str:
    return next(i["id"] for i in items if i["path"].endswith(name))


# ---------------------------------------------------------------------- the queue


def test_queue_lists_review_items_by_top_score_then_scan_time(ws: Path) -> None:
    result = review("--format", "jsonl")
    assert result.exit_code == 1  # items are waiting
    everything = [json.loads(line) for line in result.stdout.splitlines()]
    assert {i["verdict"] for i in everything} == {"review"}
    top_scores = [i["top_score"] for i in everything]
    assert top_scores == sorted(top_scores, reverse=True)
    items = recorded(everything)
    assert [Path(i["path"]).name for i in items] == [REVIEW_HIGH, REVIEW_OLD, REVIEW_NEW]  # equal scores: oldest first
    first = items[0]
    assert (first["top_category"], first["top_score"], first["verdict"]) == ("frame_or_receiver", 0.91, "review")
    assert first["sha256"] == file_sha256(ws / "uploads" / REVIEW_HIGH)
    assert first["item_id"] == item_id(f"uploads/{REVIEW_HIGH}", None, first["sha256"])
    assert first["item_id"].startswith(first["id"]) and len(first["id"]) == 12
    assert "classifier gives frame_or_receiver 0.91" in first["explanation"]


def test_top_is_the_highest_component_score_not_benign() -> None:
    scores = {"benign": 0.55, "accessory": 0.40, "barrel": 0.05}
    item = ReviewItem("0" * 64, "a.stl", None, "0" * 64, "review", "accessory", "", {"scores": scores})
    assert item.top == ("accessory", 0.40)
    assert ReviewItem("0" * 64, "a.stl", None, None, "flag", "barrel", "", {"scores": {}}).top == (None, None)


def test_verdict_filter_adds_flags(ws: Path) -> None:
    flags = queue("--verdict", "flag")
    assert sorted((i["path"], i["member"]) for i in flags) == [  # recorded by `scan --db`: absolute paths
        (str(ws.resolve() / "uploads" / "bundle.zip"), "parts/slide.stl"),
        (str(ws.resolve() / "uploads" / FLAGGED), None),
    ]
    both = queue("--verdict", "review", "--verdict", "flag")
    assert [Path(i["path"]).name for i in recorded(both)] == [REVIEW_HIGH, REVIEW_OLD, REVIEW_NEW]
    assert [i["verdict"] for i in both[-2:]] == ["flag", "flag"]  # a signature flag carries no scores: listed last


def test_table_and_json_formats(ws: Path) -> None:
    table = review("--format", "table")
    assert table.exit_code == 1
    ids = [i["id"] for i in queue()]
    assert len(ids) >= 3 and all(short in table.stdout for short in ids)
    assert "frame_or_receiver 0.91" in table.stdout and f"{len(ids)} item(s) waiting" in table.stdout
    as_json = review("--format", "json")
    assert [i["id"] for i in json.loads(as_json.stdout)] == ids


def test_empty_queue_exits_0(ws: Path) -> None:
    for item in queue():
        assert review("--decide", item["id"], "dismiss", "--by", "ann", "--reason", "benign").exit_code == 0
    result = review()
    assert result.exit_code == 0
    assert result.stdout == "" and "0 item(s) waiting" in result.stderr


# ---------------------------------------------------------------------- ids


def test_id_prefix_and_errors(ws: Path) -> None:
    target = id_of(queue(), REVIEW_OLD)
    bad = review("--decide", target[: MIN_PREFIX - 1], "dismiss", "--by", "ann", "--reason", "r")
    assert bad.exit_code == 2 and "[bad-id]" in bad.output
    with contextlib.closing(ReviewStore(DB)) as store:
        taken = {i.id[:MIN_PREFIX] for i in store.items(["flag", "review", "clear", "unscannable"])}
    unknown = next(p for p in (f"{n:04x}" for n in range(1 << 16)) if p not in taken)
    missing = review("--decide", unknown, "dismiss", "--by", "ann", "--reason", "r")
    assert missing.exit_code == 2 and "[unknown-id]" in missing.output
    ok = review("--decide", target[:MIN_PREFIX], "dismiss", "--by", "ann", "--reason", "r")
    assert ok.exit_code == 0, ok.output
    assert audit_rows(ws)[0]["path"] == f"uploads/{REVIEW_OLD}"


def test_ambiguous_prefix_is_refused(ws: Path) -> None:
    """Two real files whose ids share a 4-character prefix (found by trying names)."""
    sha = file_sha256(ws / "uploads" / REVIEW_OLD)
    seen: dict[str, str] = {}
    for n in itertools.count():
        rel = f"uploads/copy-{n}.stl"
        prefix = item_id(rel, None, sha)[:MIN_PREFIX]
        if prefix in seen:
            pair = (seen[prefix], rel)
            break
        seen[prefix] = rel
    for rel in pair:
        shutil.copy(ws / "uploads" / REVIEW_OLD, ws / rel)
        record_review(ws, rel, {"barrel": 0.5}, "2026-01-02T00:00:00+00:00")
    result = review("--decide", prefix, "confirm", "--by", "ann", "--reason", "r")
    assert result.exit_code == 2 and "[ambiguous-id]" in result.output
    assert all(rel in result.output for rel in pair)
    assert audit_rows(ws) == []
    longer = item_id(pair[0], None, sha)[:12]
    assert review("--decide", longer, "confirm", "--by", "ann", "--reason", "r").exit_code == 0


def test_id_is_stable_across_rescans_of_the_same_content(ws: Path) -> None:
    flag_id = id_of(queue("--verdict", "flag"), FLAGGED)
    assert review("--decide", flag_id, "confirm", "--by", "ann", "--reason", "a known part").exit_code == 0
    rescanned = CliRunner().invoke(cli, [*SCAN, "uploads", "--library", "lib-a", "--db", DB])
    assert rescanned.exit_code == 1  # flagged again, recorded again ...
    after = queue("--verdict", "flag")  # ... and still decided: same path, member and bytes
    assert [(i["path"], i["member"]) for i in after] == [
        (str(ws.resolve() / "uploads" / "bundle.zip"), "parts/slide.stl")
    ]


# ---------------------------------------------------------------------- decisions and their actions


def test_confirm_enrols_the_file_so_a_rescan_flags_it(ws: Path) -> None:
    rel = f"uploads/{REVIEW_OLD}"
    # an empty library with no classifier is refused (it would clear everything), not a pass
    refused = CliRunner().invoke(cli, [*SCAN, rel, "--library", "lib-b", "--format", "jsonl"])
    assert refused.exit_code not in (0, 1) and "holds no signatures" in refused.output
    before = SignatureLibrary.load("lib-b").library_version
    target = id_of(queue(), REVIEW_OLD)
    result = review("--decide", target, "confirm", "--by", "ann", "--reason", "matches case 17", "--enrol", "lib-b",
                    "--format", "table")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"confirm {target} uploads/{REVIEW_OLD} by ann" in result.stdout
    assert "enrol: added" in result.stdout and "as barrel in" in result.stdout
    lib = SignatureLibrary.load("lib-b")
    (sig,) = lib.signatures
    (row,) = audit_rows(ws)
    assert sig.category == "barrel"  # the verdict's category
    assert sig.source == f"meshscan review {row['decision_id']} by ann" and sig.note == "matches case 17"
    assert sig.sha256 == file_sha256(rel)
    (action,) = row["actions"]
    assert action["action"] == "enrol" and action["signature_id"] == sig.id
    assert (action["library_version_before"], action["library_version_after"]) == (before, lib.library_version)
    assert before != lib.library_version
    again = rescan(rel, "lib-b")
    assert again["verdict"] == "flag" and again["matches"][0]["signature_id"] == sig.id
    assert target not in [i["id"] for i in queue()]


def test_confirming_an_allowlisted_file_drops_the_entry_on_the_record(ws: Path) -> None:
    """The signature wins over an allowlist entry with its hash; the audit row names the entry."""
    from scanner.library import AllowEntry

    rel = f"uploads/{REVIEW_OLD}"
    lib = SignatureLibrary.load("lib-b")
    lib.allow(AllowEntry(sha256=file_sha256(rel), geometry_hash=None, added="", note="looked benign"))
    lib.save()
    # lib-b holds no signature yet, so scanning against it alone is refused; the entry is there
    assert [a.note for a in SignatureLibrary.load("lib-b").allowlist] == ["looked benign"]
    result = review("--decide", id_of(queue(), REVIEW_OLD), "confirm", "--by", "ann", "--reason", "r",
                    "--enrol", "lib-b")  # fmt: skip
    assert result.exit_code == 0, result.output
    (row,) = audit_rows(ws)
    (action,) = row["actions"]
    assert action["allowlist_dropped"] == [{"sha256": file_sha256(rel), "geometry_hash": None, "note": "looked benign"}]
    assert SignatureLibrary.load("lib-b").allowlist == [] and rescan(rel, "lib-b")["verdict"] == "flag"


def test_confirm_with_an_explicit_category(ws: Path) -> None:
    target = id_of(queue(), REVIEW_NEW)
    result = review("--decide", target, "confirm", "--by", "bo", "--reason", "r", "--enrol", "lib-b",
                    "--category", "slide_or_cylinder")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert SignatureLibrary.load("lib-b").signatures[0].category == "slide_or_cylinder"
    bad = review("--decide", id_of(queue(), REVIEW_OLD), "confirm", "--by", "bo", "--reason", "r",
                 "--enrol", "lib-b", "--category", "sprocket")  # fmt: skip
    assert bad.exit_code == 3 and "sprocket" in bad.output  # click's choice: a usage error


def remove_signature_of(path: Path | str, library: str) -> str:
    """Remove the signature enrolled from ``path`` (what a reviewer does first when a flag came
    from a signature enrolled by mistake); its id."""
    lib = SignatureLibrary.load(library)
    (sig,) = [s for s in lib.signatures if s.geometry_hash == scanner.load(path).geometry_hash]
    assert lib.remove([sig.id]) == [sig.id]
    lib.save()
    return sig.id


def test_dismiss_allowlists_the_file_so_a_rescan_clears_it(ws: Path) -> None:
    rel = f"uploads/{FLAGGED}"
    assert rescan(rel, "lib-a")["verdict"] == "flag"
    target = id_of(queue("--verdict", "flag"), FLAGGED)
    before = SignatureLibrary.load("lib-a").library_version
    # the file is an enrolled signature: an allowlist entry may never silence it
    refused = review("--decide", target, "dismiss", "--by", "cy", "--reason", "plumbing", "--allowlist", "lib-a")
    sig_id = SignatureLibrary.load("lib-a").signatures[0].id
    assert refused.exit_code == 2 and "[allowlist-conflict]" in refused.output and sig_id in refused.output
    assert audit_rows(ws) == [] and SignatureLibrary.load("lib-a").library_version == before
    # enrolled by mistake: the signature is removed first, then the dismissal allowlists the file
    assert remove_signature_of(rel, "lib-a") == sig_id
    result = review("--decide", target, "dismiss", "--by", "cy", "--reason", "a plumbing part", "--allowlist", "lib-a")
    assert result.exit_code == 0, result.output
    (entry,) = SignatureLibrary.load("lib-a").allowlist
    (row,) = audit_rows(ws)
    assert entry.by == "cy" and entry.note == f"a plumbing part [review {row['decision_id']}]"
    assert entry.sha256 == file_sha256(rel) and entry.geometry_hash == scanner.load(rel).geometry_hash
    after = rescan(rel, "lib-a")
    assert after["verdict"] == "clear" and "allowlist" in after["explanation"]
    assert row["actions"][0]["action"] == "allowlist" and row["verdict"] == "flag"


def test_dismissing_an_archive_member_allows_its_geometry_not_the_archive(ws: Path) -> None:
    (member,) = [i for i in queue("--verdict", "flag") if i["member"]]
    remove_signature_of(DEMO / IN_BUNDLE, "lib-a")  # an enrolled signature is never allowlisted
    result = review("--decide", member["id"], "dismiss", "--by", "cy", "--reason", "r", "--allowlist", "lib-a")
    assert result.exit_code == 0, result.output
    (entry,) = SignatureLibrary.load("lib-a").allowlist
    assert entry.sha256 is None and entry.geometry_hash == member["geometry_hash"]
    after = {r["member"]: r for r in rescan_all("uploads/bundle.zip", "lib-a")}
    assert after["parts/slide.stl"]["verdict"] == "clear" and "allowlist" in after["parts/slide.stl"]["explanation"]
    assert rescan(f"uploads/{FLAGGED}", "lib-a")["verdict"] == "flag"  # other flags untouched


def test_confirming_an_archive_member_enrols_that_member_only(ws: Path) -> None:
    (member,) = [i for i in queue("--verdict", "flag") if i["member"]]
    result = review("--decide", member["id"], "confirm", "--by", "cy", "--reason", "r", "--enrol", "lib-b")
    assert result.exit_code == 0, result.output
    (sig,) = SignatureLibrary.load("lib-b").signatures
    assert sig.category == "slide_or_cylinder" and sig.geometry_hash == member["geometry_hash"]
    assert sig.name == "bundle.zip::parts/slide.stl" and sig.sha256 is None
    after = {r["member"]: r["verdict"] for r in rescan_all("uploads/bundle.zip", "lib-b")}
    assert after["parts/slide.stl"] == "flag" and after["parts/bracket.stl"] != "flag"


def test_a_decision_without_an_action_changes_no_library(ws: Path) -> None:
    versions = {lib: SignatureLibrary.load(lib).library_version for lib in ("lib-a", "lib-b")}
    target = id_of(queue(), REVIEW_HIGH)
    assert review("--decide", target, "confirm", "--by", "ann", "--reason", "r").exit_code == 0
    assert {lib: SignatureLibrary.load(lib).library_version for lib in versions} == versions
    (row,) = audit_rows(ws)
    assert row["actions"] == [] and row["file"]["state"] == "same sha256"


def test_decision_is_recorded_with_the_evidence(ws: Path) -> None:
    target = id_of(queue(), REVIEW_HIGH)
    result = review("--decide", target, "dismiss", "--by", "Dana Reviewer", "--reason", "toy part", "--format", "json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    (row,) = audit_rows(ws)
    assert printed == row
    assert row["item_id"].startswith(target) and row["decision"] == "dismiss"
    assert (row["by"], row["reason"], row["verdict"], row["category"]) == ("Dana Reviewer", "toy part", "review",
                                                                           "frame_or_receiver")  # fmt: skip
    assert row["scores"] == {"frame_or_receiver": 0.91, "accessory": 0.05}
    assert row["sha256"] == file_sha256(f"uploads/{REVIEW_HIGH}") and row["explanation"].startswith("sent to review")
    assert row["at"].endswith("+00:00") and row["seq"] == 1 and row["prev_hash"] == "0" * 64


def test_decision_on_changed_content_is_refused(ws: Path) -> None:
    target = id_of(queue(), REVIEW_OLD)
    with open(f"uploads/{REVIEW_OLD}", "ab") as fh:
        fh.write(b"\n")  # an ASCII or binary STL, the bytes are no longer those judged
    result = review("--decide", target, "dismiss", "--by", "ann", "--reason", "r", "--allowlist", "lib-a")
    assert result.exit_code == 2 and "[content-changed]" in result.output
    assert audit_rows(ws) == [] and SignatureLibrary.load("lib-a").allowlist == []


def test_quarantined_file_needs_file_option_to_enrol(ws: Path) -> None:
    moved = CliRunner().invoke(cli, [*SCAN, f"uploads/{FLAGGED}", "--library", "lib-a", "--db", DB, "--move", "q"])
    assert moved.exit_code == 1 and not Path(f"uploads/{FLAGGED}").exists()
    (quarantined,) = list(Path("q").rglob(FLAGGED))
    target = id_of(queue("--verdict", "flag"), FLAGGED)
    args = ["--decide", target, "confirm", "--by", "ann", "--reason", "r", "--enrol", "lib-b"]
    refused = review(*args)
    assert refused.exit_code == 2 and "[file-missing]" in refused.output and "--file" in refused.output
    wrong = review(*args, "--file", f"uploads/{REVIEW_NEW}")
    assert wrong.exit_code == 2 and "[content-changed]" in wrong.output
    assert audit_rows(ws) == []
    ok = review(*args, "--file", str(quarantined))
    assert ok.exit_code == 0, ok.output
    assert SignatureLibrary.load("lib-b").signatures[0].category == "barrel"
    assert audit_rows(ws)[0]["file"] == {"path": str(quarantined), "state": "same sha256"}


def test_a_second_decision_on_the_same_content_is_refused(ws: Path) -> None:
    target = id_of(queue(), REVIEW_HIGH)
    assert review("--decide", target, "dismiss", "--by", "ann", "--reason", "r").exit_code == 0
    again = review("--decide", target, "confirm", "--by", "bo", "--reason", "r2")
    assert again.exit_code == 2 and "[already-decided]" in again.output and "by ann" in again.output
    assert len(audit_rows(ws)) == 1


def test_clear_verdicts_are_not_decided(ws: Path) -> None:
    with contextlib.closing(ReviewStore(DB)) as store:
        (clear,) = [i for i in store.items(["clear"]) if i.path.endswith(CLEAR)]
    result = review("--decide", clear.short_id, "dismiss", "--by", "ann", "--reason", "r")
    assert result.exit_code == 2 and "[not-reviewable]" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--decide", "abcd", "confirm", "--reason", "r"], "--by"),
        (["--decide", "abcd", "confirm", "--by", "ann"], "--reason"),
        (["--decide", "abcd", "maybe", "--by", "ann", "--reason", "r"], "maybe"),
        (["--by", "ann"], "--decide"),
    ],
)
def test_usage_errors_exit_3(ws: Path, args: list[str], message: str) -> None:
    result = review(*args)
    assert result.exit_code == 3 and message in result.output


def test_actions_must_fit_the_decision(ws: Path) -> None:
    target = id_of(queue(), REVIEW_OLD)
    enrol_dismiss = review("--decide", target, "dismiss", "--by", "a", "--reason", "r", "--enrol", "lib-b")
    allow_confirm = review("--decide", target, "confirm", "--by", "a", "--reason", "r", "--allowlist", "lib-a")
    assert enrol_dismiss.exit_code == 3 and "[bad-action]" in enrol_dismiss.output
    assert allow_confirm.exit_code == 3 and "[bad-action]" in allow_confirm.output
    assert audit_rows(ws) == []


def test_missing_or_wrong_database_exits_3(ws: Path) -> None:
    missing = CliRunner().invoke(cli, ["review", "nope.sqlite"])
    assert missing.exit_code == 3 and "[no-database]" in missing.output
    assert not Path("nope.sqlite").exists()  # never created by mistake
    sqlite3.connect("other.sqlite").execute("CREATE TABLE t (x)").connection.close()
    other = CliRunner().invoke(cli, ["review", "other.sqlite"])
    assert other.exit_code == 3 and "[not-a-results-database]" in other.output


def test_unusable_library_records_nothing(ws: Path) -> None:
    target = id_of(queue(), REVIEW_OLD)
    result = review("--decide", target, "confirm", "--by", "a", "--reason", "r", "--enrol", "not-a-library")
    assert result.exit_code == 3 and "[library]" in result.output
    assert audit_rows(ws) == []


def test_failed_library_write_records_no_decision(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The library's manifest cannot be written (disk full): the decision is not recorded and
    the library is put back as it was."""
    import scanner.library as library

    real_write, failures = library._atomic_write, []

    def failing_write(path: Path, data: bytes) -> None:
        if path.name == "manifest.json" and not failures:
            failures.append(path)
            raise OSError(28, "No space left on device")
        real_write(path, data)

    remove_signature_of(f"uploads/{FLAGGED}", "lib-a")  # an enrolled signature is never allowlisted
    monkeypatch.setattr(library, "_atomic_write", failing_write)
    before = SignatureLibrary.load("lib-a").library_version
    target = id_of(queue("--verdict", "flag"), FLAGGED)
    result = review("--decide", target, "dismiss", "--by", "a", "--reason", "r", "--allowlist", "lib-a")
    assert failures and result.exit_code == 3 and "No space left" in result.output
    assert audit_rows(ws) == []
    restored = SignatureLibrary.load("lib-a")  # verifies checksums
    assert restored.library_version == before and restored.allowlist == []
    assert target in [i["id"] for i in queue("--verdict", "flag")]  # still waiting


def test_failed_audit_write_puts_the_library_back(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The library was saved but the decision cannot be recorded (I/O error on the database):
    the library is restored, so nothing claims a decision that is not in the log."""
    import scanner.review.audit as review_module

    def failing_hash(prev: str, entry: str) -> str:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(review_module, "chain_hash", failing_hash)
    before = SignatureLibrary.load("lib-b").library_version
    target = id_of(queue(), REVIEW_OLD)
    result = review("--decide", target, "confirm", "--by", "a", "--reason", "r", "--enrol", "lib-b")
    assert result.exit_code == 3 and "[audit-log]" in result.output and "disk I/O error" in result.output
    assert audit_rows(ws) == []
    restored = SignatureLibrary.load("lib-b")
    assert restored.library_version == before and len(restored) == 0


def test_non_finite_scores_do_not_block_the_queue(ws: Path) -> None:
    record_review(ws, f"uploads/{CLEAR}", {"barrel": float("nan"), "accessory": 0.4}, "2026-01-03T00:00:00+00:00")
    (item,) = [i for i in queue() if i["path"].endswith(CLEAR)]
    assert (item["top_category"], item["top_score"], item["scores"]) == ("accessory", 0.4, {"accessory": 0.4})
    assert review("--decide", item["id"], "dismiss", "--by", "a", "--reason", "r").exit_code == 0


# ---------------------------------------------------------------------- the audit log


def _three_decisions(mirror: str | None = None) -> None:
    extra = ["--audit-log", mirror] if mirror else []
    for item, decision in zip(recorded(queue()), ("confirm", "dismiss", "dismiss"), strict=True):
        result = review("--decide", item["id"], decision, "--by", "ann", "--reason", "r", *extra)
        assert result.exit_code == 0, result.output


def test_audit_lists_decisions_and_verify_passes(ws: Path) -> None:
    _three_decisions("audit.jsonl")
    listed = review("--audit", "--format", "jsonl")
    assert listed.exit_code == 0
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["seq"] for r in rows] == [1, 2, 3] and [r["decision"] for r in rows] == ["confirm", "dismiss", "dismiss"]
    assert [r["prev_hash"] for r in rows[1:]] == [r["hash"] for r in rows[:-1]]
    mirror = [json.loads(line) for line in Path("audit.jsonl").read_text().splitlines()]
    assert mirror == rows
    table = review("--audit", "--format", "table")
    assert table.exit_code == 0 and "confirm" in table.stdout
    verified = review("--verify", "--audit-log", "audit.jsonl")
    assert verified.exit_code == 0, verified.output
    assert f"OK: 3 decision(s), hash chain intact, head {rows[-1]['hash']}" in verified.stdout


def test_update_delete_and_out_of_chain_inserts_fail(ws: Path) -> None:
    _three_decisions()
    conn = sqlite3.connect(DB)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE review_decisions SET decision = 'confirm' WHERE seq = 2")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM review_decisions WHERE seq = 3")
    row = conn.execute("SELECT * FROM review_decisions WHERE seq = 3").fetchone()
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("INSERT INTO review_decisions VALUES (4, 'rd-x', ?, ?, ?, ?, ?, ?)", (*row[2:6], row[6], "f" * 64))
    conn.close()
    assert len(audit_rows(ws)) == 3
    assert review("--verify").exit_code == 0


def _tamper(sql: str, *params: object) -> None:
    """What someone with write access could do: drop the guards, then edit."""
    conn = sqlite3.connect(DB)
    conn.execute("DROP TRIGGER review_decisions_no_update")
    conn.execute("DROP TRIGGER review_decisions_no_delete")
    conn.execute(sql, params)
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    ("sql", "params", "found"),
    [
        ("UPDATE review_decisions SET entry = replace(entry, '\"dismiss\"', '\"confirm\"') WHERE seq = 2", (),
         "#2: content does not match its hash"),
        ("UPDATE review_decisions SET decision = 'confirm' WHERE seq = 2", (), "#2: column decision differs"),
        ("DELETE FROM review_decisions WHERE seq = 2", (), "#3: expected #2"),
    ],
)  # fmt: skip
def test_verify_detects_tampering(ws: Path, sql: str, params: tuple, found: str) -> None:
    _three_decisions()
    _tamper(sql, *params)
    result = review("--verify")
    assert result.exit_code == 3  # a broken audit log is the tool's problem, not an item's
    assert found in result.stderr and "append-only trigger" in result.stderr


def test_verify_against_the_mirror_detects_a_rewritten_chain(ws: Path) -> None:
    """Deleting the last decision leaves a valid chain; only a copy held elsewhere shows it."""
    _three_decisions("audit.jsonl")
    _tamper("DELETE FROM review_decisions WHERE seq = 3")
    with contextlib.closing(sqlite3.connect(DB)) as conn:
        conn.executescript(AUDIT_SCHEMA)  # ... and put the guards back
    assert "OK: 2 decision(s)" in review("--verify").stdout  # the chain alone cannot tell
    result = review("--verify", "--audit-log", "audit.jsonl")
    assert result.exit_code == 3 and "decision #3 is missing from the database" in result.stderr
    lines = Path("audit.jsonl").read_text().splitlines()
    edited = json.loads(lines[0])
    edited["reason"] = "something else"
    Path("edited.jsonl").write_text(json.dumps(edited) + "\n")
    assert "mirror edited" in review("--verify", "--audit-log", "edited.jsonl").stderr


def test_hash_chain_is_reproducible_from_the_rows(ws: Path) -> None:
    """The rule an outside auditor applies: sha256(prev_hash + newline + canonical entry)."""
    _three_decisions()
    prev = "0" * 64
    for row in audit_rows(ws):
        digest, stored_prev = row.pop("hash"), row.pop("prev_hash")
        assert stored_prev == prev
        entry = json.dumps(row, sort_keys=True, separators=(",", ":"))
        assert hashlib.sha256(f"{prev}\n{entry}".encode()).hexdigest() == digest
        prev = digest
