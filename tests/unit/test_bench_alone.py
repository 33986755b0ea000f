"""bench/evasion.py beside its folder rows: the same files scanned one by one (the route
``scan --together`` closes), counted per part and per file."""

from __future__ import annotations

import shutil
from pathlib import Path

from bench.evasion import Outcome, Row, _files_alone, print_alone
from fixtures.evasions import Evasion
from scanner.api import Scanner
from tests.conftest import REPO

DEMO = REPO / "fixtures" / "demo"


def test_each_file_of_the_folder_is_scanned_alone(tmp_path: Path) -> None:
    shutil.copy(DEMO / "proxy-barrel-s1-000.stl", tmp_path / "a.stl")  # enrolled in the demo library
    shutil.copy(DEMO / "benign-cup-s1-000.stl", tmp_path / "b.stl")
    assert _files_alone(str(tmp_path), Scanner(model=None)._context) == (1, 2)


def test_the_table_counts_parts_and_files(capsys) -> None:  # noqa: ANN001
    row = Row(Evasion("split, files", "4 pieces", 70, make=lambda tm, rng: None, multi_member=True))
    for alone in ((0, 4), (1, 4), (2, 4)):
        row.outcomes.append(Outcome(True, True, 4, 4, 0.01, alone=alone))
    print_alone([row])
    assert "| split, files | 4 pieces | 2 of 3 | 3 of 12 | 100% |" in capsys.readouterr().out


def test_a_folder_evasion_is_written_as_a_folder_of_its_pieces(tmp_path: Path) -> None:
    import scanner
    from fixtures.evasions import EVASIONS, as_trimesh

    split = next(e for e in EVASIONS if e.key == "split, files [4 pieces]")
    upload = split.apply(as_trimesh(scanner.load(DEMO / "proxy-barrel-s1-000.stl")), seed=0, stem="p")
    folder = Path(upload.write(tmp_path))
    assert folder.is_dir() and sorted(p.name for p in folder.iterdir()) == [f"piece{i}.stl" for i in range(1, 5)]
