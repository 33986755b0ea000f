"""A part cut into pieces across a project's files: ``scan --together FOLDER`` reads the folder
as one upload (its files matched together, as an archive's members are), through the real
command against the shipped demo library, the classifier off.

Why: a platform that stores a project's files one by one scans each alone, and a quarter of a
part is far from its signature: the four pieces below are each ``clear`` alone (the test shows
it, so the route stays measured), and flagged together, each naming the others.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

import scanner
from fixtures.evasions import EVASIONS, as_trimesh
from tests.conftest import REPO
from tests.integration.test_composition_evasions import scan  # the CLI, the demo library, no model

DEMO = REPO / "fixtures" / "demo"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An enrolled demo proxy cut into 4 pieces, one file each, beside a notes file."""
    folder = tmp_path_factory.mktemp("project")
    split = next(e for e in EVASIONS if e.key == "split, members [4 pieces]")
    upload = split.apply(as_trimesh(scanner.load(DEMO / "proxy-accessory-s1-000.3mf")), seed=0, stem="p")
    with zipfile.ZipFile(io.BytesIO(upload.data)) as zf:
        for name in zf.namelist():
            (folder / Path(name).name).write_bytes(zf.read(name))
    (folder / "notes").mkdir()
    (folder / "notes" / "README.txt").write_text("print settings: 0.2 mm layers\n")
    return folder


def test_each_piece_alone_is_clear_which_is_the_route(project: Path) -> None:
    code, verdicts, _ = scan(str(project))
    assert code == 0
    assert [v["verdict"] for v in verdicts] == ["clear"] * 4


def test_the_pieces_together_flag_every_piece_and_name_the_others(project: Path) -> None:
    code, verdicts, err = scan("--together", str(project))
    assert code == 1, err
    # every file is a member, in sorted order; the notes are listed as not a model (as an
    # archive's README is), which is not an error
    assert [v["member"] for v in verdicts] == [*(f"piece{i}.stl" for i in range(1, 5)), "notes/README.txt"]
    pieces, notes = verdicts[:4], verdicts[4]
    assert {v["verdict"] for v in pieces} == {"flag"}
    assert (notes["verdict"], notes["reason"]) == ("unscannable", "not-a-model")
    assert {v["path"] for v in verdicts} == {str(project)}
    assert {v["category"] for v in pieces} == {"accessory"}
    assert all("the 4 model files of the folder together (piece1.stl, piece2.stl, piece3.stl, piece4.stl)"
               in v["explanation"] for v in pieces)  # fmt: skip
    sha = {v["sha256"] for v in verdicts}
    assert len(sha) == 1 and None not in sha  # the folder's manifest digest: one upload
    assert "1 file(s), 5 result(s): 4 flagged" in err


def test_a_benign_folder_together_is_clear(tmp_path: Path) -> None:
    for name in ("benign-bracket-s1-001.stl", "benign-cup-s1-000.stl", "benign-block-s1-000.obj"):
        (tmp_path / name).write_bytes((DEMO / name).read_bytes())
    (tmp_path / "README.md").write_text("a cup, a bracket and a block\n")
    code, verdicts, err = scan("--together", str(tmp_path))
    assert code == 0, err
    assert [v["verdict"] for v in verdicts] == ["unscannable", "clear", "clear", "clear"]
    assert verdicts[0]["reason"] == "not-a-model"


def test_a_link_in_the_folder_is_not_followed_and_the_folder_is_not_clear(project: Path, tmp_path: Path) -> None:
    folder = tmp_path / "linked"
    folder.mkdir()
    for piece in ("piece1.stl", "piece2.stl"):
        (folder / piece).write_bytes((project / piece).read_bytes())
    (folder / "piece3.stl").symlink_to(project / "piece3.stl")  # outside the folder
    (folder / "more").symlink_to(project, target_is_directory=True)
    code, verdicts, err = scan("--together", str(folder))
    by_member = {v["member"]: v for v in verdicts}
    assert by_member["piece3.stl"]["verdict"] == "unscannable"
    assert by_member["piece3.stl"]["reason"] == "unsafe-path"
    assert by_member["more"]["reason"] == "unsafe-path"
    assert not any(m.startswith("more/") for m in by_member)  # nothing read through the link
    assert code in (1, 2) and "clear" not in {by_member["piece3.stl"]["verdict"], by_member["more"]["verdict"]}


def test_an_empty_folder_together_is_unscannable(tmp_path: Path) -> None:
    code, verdicts, _ = scan("--together", str(tmp_path))
    assert code == 2
    assert [(v["verdict"], v["reason"]) for v in verdicts] == [("unscannable", "empty")]


def test_the_folder_is_one_upload_under_its_limits(project: Path) -> None:
    code, verdicts, _ = scan("--together", "--limit-members", "3", str(project))
    assert code in (1, 2)
    assert any(v["reason"] == "limit:members" for v in verdicts)
    assert "clear" not in {v["verdict"] for v in verdicts if v["reason"] == "limit:members"}


@pytest.mark.parametrize(
    ("extra", "says"),
    [(["--move", "q"], "quarantines nothing"), (["--db", "r.db", "--resume"], "--resume"),
     (["--exclude", "*.txt"], "--exclude")],
)  # fmt: skip
def test_what_works_file_by_file_is_refused_with_together(project: Path, tmp_path: Path, extra, says) -> None:  # noqa: ANN001
    extra = [str(tmp_path / e) if e in ("q", "r.db") else e for e in extra]
    if "--move" in extra:
        os.makedirs(extra[1], exist_ok=True)
    code, verdicts, err = scan("--together", *extra, str(project))
    assert code == 3 and not verdicts
    assert says in err


def test_a_url_is_not_a_folder_to_read_together() -> None:
    code, verdicts, err = scan("--together", "memory://bucket/project")
    assert code == 3 and not verdicts and "local folders" in err


def test_the_python_api_reads_a_folder_together(project: Path) -> None:
    from scanner import Scanner

    verdicts = Scanner(model=None).scan(project)
    assert [v.verdict for v in verdicts] == ["flag"] * 4 + ["unscannable"]  # the notes: not a model
