"""Verdict writers. ``jsonl`` streams one object per line (the stable contract); ``json`` is
one array; ``csv`` flattens matches and scores into JSON-in-a-cell columns; ``table`` is for
people at a terminal."""

from __future__ import annotations

import csv
import json
from typing import IO, Protocol

from scanner.verdict import Verdict

CSV_COLUMNS = (
    "path", "member", "verdict", "category", "reason", "sha256", "geometry_hash", "bodies", "triangles",
    "matches", "scores", "explanation", "scanner_version", "library_version", "model_version", "scanned_at",
)  # fmt: skip


class VerdictWriter(Protocol):
    def write(self, verdict: Verdict) -> None: ...
    def close(self) -> None: ...


class JsonlWriter:
    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def write(self, verdict: Verdict) -> None:
        self.out.write(json.dumps(verdict.to_dict()) + "\n")
        self.out.flush()

    def close(self) -> None:
        pass


class JsonWriter:
    def __init__(self, out: IO[str]) -> None:
        self.out, self.items = out, []

    def write(self, verdict: Verdict) -> None:
        self.items.append(verdict.to_dict())

    def close(self) -> None:
        json.dump(self.items, self.out, indent=2)
        self.out.write("\n")


class CsvWriter:
    def __init__(self, out: IO[str]) -> None:
        self.writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        self.writer.writeheader()

    def write(self, verdict: Verdict) -> None:
        row = verdict.to_dict()
        row["matches"] = json.dumps(row["matches"]) if row["matches"] else ""
        row["scores"] = json.dumps(row["scores"]) if row["scores"] else ""
        self.writer.writerow(row)

    def close(self) -> None:
        pass


class TableWriter:
    STYLE = {"flag": "bold red", "review": "yellow", "clear": "green", "unscannable": "magenta"}

    def __init__(self, out: IO[str]) -> None:
        from rich.console import Console

        self.console = Console(file=out)
        self.rows: list[Verdict] = []

    def write(self, verdict: Verdict) -> None:
        self.rows.append(verdict)

    def close(self) -> None:
        from rich.table import Table

        table = Table(show_lines=False)
        for col in ("file", "verdict", "category", "evidence"):
            table.add_column(col, overflow="fold")
        for v in self.rows:
            name = v.path + (f" :: {v.member}" if v.member else "")
            if v.matches:
                m = v.matches[0]
                evidence = f"{m.signature_id} ({m.kind}, d={m.distance:.4f} <= {m.threshold:g})"
            elif v.verdict == "unscannable":
                evidence = v.reason or ""
            else:
                evidence = ""
            table.add_row(name, f"[{self.STYLE.get(v.verdict, '')}]{v.verdict}[/]", v.category or "", evidence)
        self.console.print(table)


WRITERS = {"jsonl": JsonlWriter, "json": JsonWriter, "csv": CsvWriter, "table": TableWriter}
