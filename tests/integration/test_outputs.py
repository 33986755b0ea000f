"""Outputs a person can live with (issue 13, item 5), through the real command: `--out` never
silently truncates (`--force`, `--append`), `--files-from`, `meshscan export`, `--db` with
absolute paths (so `review` works from any directory), and the table folding `clear` rows."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest

from scanner.sinks.output import CSV_COLUMNS
from scanner.store.results import local_abspath
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"
KNOWN = "proxy-barrel-s1-000.stl"  # enrolled into the test library: flagged
CLEAR = ("benign-cup-s1-000.stl", "benign-bracket-s1-001.stl", "benign-pipe-s1-002.stl")
FORMULA_MEMBER = "=HYPERLINK(x).stl"  # an uploader's name that a spreadsheet would run


def run(*args: str, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "scanner.cli", *args], capture_output=True, cwd=cwd, input=stdin,
                          timeout=240, env={**os.environ, "COLUMNS": "300"})  # fmt: skip
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A library with one enrolled file, and an upload folder: one flag, clear files, and an
    archive whose clear member's name starts like a spreadsheet formula."""
    root = tmp_path_factory.mktemp("outputs")
    (root / "uploads").mkdir()
    for name in (KNOWN, *CLEAR):
        shutil.copy(DEMO / name, root / "uploads" / name)
    with zipfile.ZipFile(root / "uploads" / "bundle.zip", "w") as zf:
        zf.write(DEMO / "benign-handle-s1-000.stl", FORMULA_MEMBER)
    assert run("signatures", "init", "--library", "lib", cwd=root).returncode == 0
    added = run("signatures", "add", str(DEMO / KNOWN), "--library", "lib", "--category", "barrel", "--source", "t",
                cwd=root)  # fmt: skip
    assert added.returncode == 0, added.stderr
    return root


SCAN = ("scan", "--no-model", "--jobs", "1", "--library")


def scan(site: Path, *args: str, cwd: Path | None = None, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return run(*SCAN, str(site / "lib"), *args, cwd=cwd or site, stdin=stdin)


# ---------------------------------------------------------------------------- --out, --force, --append


def test_out_refuses_a_non_empty_file_unless_forced(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "verdicts.jsonl"
    out.write_text("earlier results\n")
    refused = scan(site, f"uploads/{KNOWN}", "--out", str(out))
    assert refused.returncode == 3, refused.stderr
    assert "[out-exists]" in refused.stderr and "--force" in refused.stderr and "--append" in refused.stderr
    assert "Traceback" not in refused.stderr and out.read_text() == "earlier results\n"  # untouched
    forced = scan(site, f"uploads/{KNOWN}", "--out", str(out), "--force")
    assert forced.returncode == 1, forced.stderr
    assert [r["path"] for r in lines(out.read_text())] == [f"uploads/{KNOWN}"]
    empty = tmp_path / "empty.jsonl"
    empty.touch()  # an empty file holds nothing to lose
    assert scan(site, f"uploads/{KNOWN}", "--out", str(empty)).returncode == 1
    assert len(lines(empty.read_text())) == 1


def test_append_jsonl_and_csv_keep_one_header(site: Path, tmp_path: Path) -> None:
    out = tmp_path / "v.jsonl"
    out.write_text('{"earlier": true}')  # no final newline: the next record must not be glued on
    for name in (KNOWN, CLEAR[0]):
        assert scan(site, f"uploads/{name}", "--out", str(out), "--append").returncode in (0, 1)
    recs = lines(out.read_text())
    assert recs[0] == {"earlier": True} and [r["path"] for r in recs[1:]] == [f"uploads/{KNOWN}", f"uploads/{CLEAR[0]}"]

    table = tmp_path / "v.csv"
    for name in (KNOWN, CLEAR[0], CLEAR[1]):
        proc = scan(site, f"uploads/{name}", "--format", "csv", "--out", str(table), "--append")
        assert proc.returncode in (0, 1), proc.stderr
    rows = list(csv.reader(io.StringIO(table.read_text())))
    assert rows[0] == list(CSV_COLUMNS) and list(CSV_COLUMNS) not in rows[1:]
    assert [r[0] for r in rows[1:]] == [f"uploads/{KNOWN}", f"uploads/{CLEAR[0]}", f"uploads/{CLEAR[1]}"]

    other = tmp_path / "other.csv"
    other.write_text("name,score\na,1\n")
    mismatch = scan(site, f"uploads/{KNOWN}", "--format", "csv", "--out", str(other), "--append")
    assert mismatch.returncode == 3 and "[out-mismatch]" in mismatch.stderr
    assert other.read_text() == "name,score\na,1\n"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--format", "json", "--append"), "--append works with --format jsonl or csv"),
        (("--format", "table", "--append"), "--append works with --format jsonl or csv"),
        (("--force", "--append"), "not both"),
    ],
)
def test_append_usage_errors(site: Path, tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    out = tmp_path / "o"
    out.write_text("keep\n")
    proc = scan(site, f"uploads/{KNOWN}", "--out", str(out), *args)
    assert proc.returncode == 3 and says in proc.stderr and out.read_text() == "keep\n"
    no_out = scan(site, f"uploads/{KNOWN}", "--append")
    assert no_out.returncode == 3 and "go with --out" in no_out.stderr


# ---------------------------------------------------------------------------- --files-from


def test_files_from_a_list_and_from_stdin_nul_separated(site: Path, tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text(f"# uploads of today\n\nuploads/{KNOWN}\n   \nuploads/missing.stl\nuploads/{CLEAR[0]}\r\n")
    proc = scan(site, "--files-from", str(listing))
    assert proc.returncode == 1, proc.stderr
    recs = {r["path"]: r for r in lines(proc.stdout)}
    assert list(recs) == [f"uploads/{KNOWN}", "uploads/missing.stl", f"uploads/{CLEAR[0]}"]
    assert recs[f"uploads/{KNOWN}"]["verdict"] == "flag" and recs[f"uploads/{CLEAR[0]}"]["verdict"] == "clear"
    given = lines(scan(site, "uploads/missing.stl").stdout)  # a missing PATH argument, as today
    assert {k: v for k, v in recs["uploads/missing.stl"].items() if k != "scanned_at"} == {
        k: v for k, v in given[0].items() if k != "scanned_at"
    }
    assert "3 file(s)" in proc.stderr

    nul = f"uploads/{CLEAR[1]}\0uploads/bundle.zip\0".encode()
    piped = scan(site, f"uploads/{KNOWN}", "--files-from", "-", stdin=nul)  # PATHs and the list together
    assert piped.returncode == 1, piped.stderr
    assert [r["path"] for r in lines(piped.stdout)] == [f"uploads/{KNOWN}", f"uploads/{CLEAR[1]}", "uploads/bundle.zip"]

    nothing = scan(site)
    assert nothing.returncode == 3 and "--files-from" in nothing.stderr
    unreadable = scan(site, "--files-from", str(tmp_path / "no-such-list"))
    assert unreadable.returncode == 3 and "Traceback" not in unreadable.stderr


# ---------------------------------------------------------------------------- --db, review, export


@pytest.fixture(scope="module")
def db(site: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A database written by `scan --db` with relative PATHs, and that scan's CSV (absolute
    PATHs given, so its path column is what the database holds)."""
    path = tmp_path_factory.mktemp("db") / "r.sqlite"
    rel = scan(site, "uploads", "--db", str(path))
    assert rel.returncode == 1, rel.stderr
    as_csv = scan(site, str(site.resolve() / "uploads"), "--format", "csv")
    assert as_csv.returncode == 1, as_csv.stderr
    return path, as_csv.stdout


def test_db_records_absolute_paths_and_review_works_from_anywhere(site: Path, db: tuple[Path, str],
                                                                  tmp_path: Path) -> None:  # fmt: skip
    path, _ = db
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT path, record FROM results").fetchall()
    uploads = site.resolve() / "uploads"
    assert {p for p, _ in rows} == {str(uploads / n) for n in (KNOWN, *CLEAR, "bundle.zip")}
    assert all(json.loads(r)["path"] == p for p, r in rows)
    assert local_abspath("s3://bucket/uploads/a.stl") == "s3://bucket/uploads/a.stl"  # URLs kept as given

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    work = tmp_path / "db.sqlite"
    shutil.copy(path, work)
    listed = run("review", str(work), "--verdict", "flag", cwd=elsewhere)
    (item,) = lines(listed.stdout)
    assert item["path"] == str(uploads / KNOWN)
    allow = tmp_path / "lib"
    assert run("signatures", "init", "--library", str(allow), cwd=elsewhere).returncode == 0
    decided = run("review", str(work), "--decide", item["id"], "dismiss", "--by", "ann", "--reason", "benign",
                  "--allowlist", str(allow), "--audit-log", str(tmp_path / "audit.jsonl"), cwd=elsewhere)  # fmt: skip
    assert decided.returncode == 0, decided.stderr  # the file was found and checked from another directory

    resumed = scan(site, "../uploads", "--db", str(work), "--resume", cwd=site / "lib")
    # another spelling of the same files: all unchanged; the recorded flag still speaks (issue 13)
    assert resumed.returncode == 1, resumed.stderr
    assert "5 unchanged file(s) skipped" in resumed.stderr and resumed.stdout == ""
    assert "5 file(s), 5 result(s): 1 flagged, 0 review, 4 clear" in resumed.stderr


def test_export_jsonl_is_schema_valid_and_csv_matches_scan(site: Path, db: tuple[Path, str], tmp_path: Path) -> None:
    path, scan_csv = db
    exported = run("export", str(path), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    recs = lines(exported.stdout)
    schema = json.loads(files("scanner.data").joinpath("verdict.schema.json").read_text("utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    for rec in recs:
        assert not list(validator.iter_errors(rec)), rec
    with sqlite3.connect(path) as conn:
        stored = [json.loads(r) for (r,) in conn.execute("SELECT record FROM results ORDER BY path, member")]
    assert recs == stored and {r["verdict"] for r in recs} == {"flag", "clear"} and len(recs) == 5
    assert "exported 5 record(s)" in exported.stderr

    as_csv = run("export", str(path), "--format", "csv", "--out", "all.csv", cwd=tmp_path)
    assert as_csv.returncode == 0 and as_csv.stdout == ""
    rows = list(csv.reader(io.StringIO((tmp_path / "all.csv").read_text())))
    expected = list(csv.reader(io.StringIO(scan_csv)))
    assert rows[0] == expected[0] == list(CSV_COLUMNS)
    drop = CSV_COLUMNS.index("scanned_at")  # two scans, two times; everything else is the same
    assert sorted(r[:drop] for r in rows[1:]) == sorted(r[:drop] for r in expected[1:])
    assert ["'" + FORMULA_MEMBER] == [r[1] for r in rows[1:] if r[1]]  # the formula is neutralised

    again = run("export", str(path), "--format", "csv", "--out", "all.csv", cwd=tmp_path)
    assert again.returncode == 3 and "[out-exists]" in again.stderr
    flags = run("export", str(path), "--format", "csv", "--out", "all.csv", "--append", "--verdict", "flag",
                cwd=tmp_path)  # fmt: skip
    assert flags.returncode == 0, flags.stderr
    appended = list(csv.reader(io.StringIO((tmp_path / "all.csv").read_text())))
    assert len(appended) == len(rows) + 1 and appended[-1][2] == "flag" and appended.count(list(CSV_COLUMNS)) == 1


def test_export_bad_databases(tmp_path: Path) -> None:
    missing = run("export", "nope.sqlite", cwd=tmp_path)
    assert missing.returncode == 3 and "[no-database]" in missing.stderr and not (tmp_path / "nope.sqlite").exists()
    (tmp_path / "text.sqlite").write_text("not a database\n" * 100)
    text = run("export", "text.sqlite", cwd=tmp_path)
    assert text.returncode == 3 and "[not-a-results-database]" in text.stderr
    with sqlite3.connect(tmp_path / "other.sqlite") as conn:
        conn.execute("CREATE TABLE t (x)")
    other = run("export", "other.sqlite", cwd=tmp_path)
    assert other.returncode == 3 and "[not-a-results-database]" in other.stderr
    for proc in (missing, text, other):
        assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------- the table


def test_table_folds_clear_rows_unless_all(site: Path) -> None:
    folded = scan(site, "uploads", "--format", "table")
    assert folded.returncode == 1, folded.stderr
    assert "4 clear result(s) not listed (--all lists them)" in folded.stdout
    assert KNOWN in folded.stdout and not any(name in folded.stdout for name in CLEAR)
    assert "1 flagged, 0 review, 4 clear" in folded.stderr  # the summary still counts them
    full = scan(site, "uploads", "--format", "table", "--all")
    assert all(name in full.stdout for name in CLEAR) and "not listed" not in full.stdout
    complete = scan(site, "uploads", "--format", "jsonl")  # machine formats stay complete
    assert len(lines(complete.stdout)) == 5


def test_table_review_rows_show_score_and_first_reason(tmp_path: Path) -> None:
    shutil.copy(DEMO / "proxy-frame_or_receiver-s1-001.stl", tmp_path / "part.stl")  # review with the shipped model
    jsonl = run("scan", "part.stl", "--jobs", "1", cwd=tmp_path)
    (rec,) = lines(jsonl.stdout)
    assert rec["verdict"] == "review", rec
    table = run("scan", "part.stl", "--jobs", "1", "--format", "table", cwd=tmp_path)
    assert table.returncode == 1, table.stderr
    score = 1 - rec["scores"]["benign"]
    first = rec["explanation"].split("because:", 1)[1].split(";")[0].strip()
    assert f"score {score:.2f}; {first}" in " ".join(table.stdout.split())
