"""Verdict writers. ``jsonl`` streams one object per line (the stable contract); ``json`` is
one array; ``csv`` flattens matches and scores into JSON-in-a-cell columns, with the best
match and the review score as flat columns beside them; ``table`` is for
people at a terminal.

Names come from uploaders, so what reaches a person is inert: JSON keeps the exact name (it
escapes control characters itself), CSV cells that would start a spreadsheet formula are
neutralised (the report's :func:`~scanner.report.render.csv_cell`), and everything shown on a
terminal goes through :func:`terminal_safe`."""

from __future__ import annotations

import csv
import json
import os
import stat
from collections.abc import Callable
from typing import IO, Any, Protocol

from scanner.verdict import Verdict

CSV_COLUMNS = (
    "path", "member", "verdict", "category", "reason", "sha256", "geometry_hash", "bodies", "triangles",
    "matches", "scores", "review_score", "review_threshold", "distance_threshold",
    "best_match", "best_distance", "best_threshold", "best_kind",
    "explanation", "scanner_version", "library_version", "model_version", "scanned_at",
)  # fmt: skip
"""``matches`` and ``scores`` stay JSON in a cell; beside them, the numbers that decided the
verdict as flat columns a spreadsheet can sort and filter (``best_*``: the first, best match)."""


def terminal_safe(text: Any) -> str:
    """``text`` with every character a terminal could act on shown as a Python escape.

    A file name is chosen by the uploader: ESC sequences (colours, cursor moves, OSC 8
    hyperlinks, window titles), CR and LF (overwriting or forging lines), TAB, other C0/C1
    controls, and bidi overrides and other invisible format characters (U+202E before
    ``gpj.stl`` shows it as ``lts.jpg``) would act on the reader's terminal. Every character that
    is not printable (``str.isprintable``: controls, format characters, separators other than
    the space, lone surrogates from undecodable names) becomes ``\\xNN``/``\\uNNNN``/``\\t``
    as in ``repr``, and a backslash becomes ``\\\\`` so that an escape shown is never
    ambiguous with a name that spells one. The one helper for terminal output, used by every
    table and message that shows a name."""
    s = str(text)
    if s.isprintable() and "\\" not in s:
        return s
    return "".join(c if c.isprintable() and c != "\\" else repr(c)[1:-1] for c in s)


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
    def __init__(self, out: IO[str], header: bool = True) -> None:
        """``header=False`` when appending to a file that already has one (``--append``)."""
        self.writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        if header:
            self.writer.writeheader()

    def write(self, verdict: Verdict) -> None:
        from scanner.report.render import csv_cell  # the report's CSVs do the same: one rule

        row = verdict.to_dict()
        best = verdict.matches[0] if verdict.matches else None
        row["best_match"] = best.signature_id if best else None
        row["best_distance"] = best.distance if best else None
        row["best_threshold"] = best.threshold if best else None
        row["best_kind"] = best.kind if best else None
        row["matches"] = json.dumps(row["matches"]) if row["matches"] else ""
        row["scores"] = json.dumps(row["scores"]) if row["scores"] else ""
        self.writer.writerow({k: csv_cell(v) for k, v in row.items()})

    def close(self) -> None:
        pass


class TableWriter:
    """The results for a person at a terminal, one row printed as each result arrives (a
    long scan shows what it found so far, not a blank screen until the end).

    Rows are short: the file relative to the scanned root (``name``), the verdict, the
    category and the evidence (a flag's best match; a review's score and first reason; why an
    upload could not be read). Every row is drawn with the same column widths (a name longer
    than its column widens its own row), so rows printed apart still line up under the header."""

    STYLE = {"flag": "bold red", "review": "yellow", "clear": "green", "unscannable": "magenta"}
    COLUMNS = ("file", "verdict", "category", "evidence")

    def __init__(self, out: IO[str] | None, show_clear: bool = False, name: Callable[[str], str] | None = None,
                 console: Any = None, title: str | None = None) -> None:  # fmt: skip
        """``show_clear`` (``scan --all``): list ``clear`` rows too; otherwise they are folded
        into one count line at the end (machine formats stay complete). ``name``: how a
        verdict's path is shown (relative to its root). ``console``: the rich console to print
        through (the progress bar's, so rows scroll above the bar), else one on ``out``.
        ``title``: a line above the header (the root the names are relative to)."""
        from rich.console import Console

        self.console = console if console is not None else Console(file=out)
        self.show_clear, self.name, self.title = show_clear, name or (lambda p: p), title
        self.folded = self.shown = 0

    def write(self, verdict: Verdict) -> None:
        from rich.text import Text

        if verdict.verdict == "clear" and not self.show_clear:
            self.folded += 1
            return
        if not self.shown:
            self._header()
        self.shown += 1
        v = verdict
        name = self.name(v.path) + (f" :: {v.member}" if v.member else "")
        self._row(Text(terminal_safe(name)), Text(v.verdict, style=self.STYLE.get(v.verdict, "")),
                  Text(terminal_safe(v.category or "")), Text(terminal_safe(evidence(v))))  # fmt: skip

    def _header(self) -> None:
        from rich.text import Text

        if self.title:
            self.console.print(Text(terminal_safe(self.title), style="dim"))
        self._row(*(Text(c, style="bold") for c in self.COLUMNS))

    def _row(self, *cells: Any) -> None:
        """One line (folding long names) in the same grid every row uses. Text, never markup:
        a name like "[link=https://...]x[/link]" stays characters."""
        from rich.table import Table

        width, fixed = self.console.width, 11 + 16 + 3  # verdict, category, the spaces between
        # names at least this wide line up; a longer one widens its own row, leaving the
        # evidence 20 columns (every width explicit: rich's own shrinking can drop characters)
        name_width = min(max(min(40, max(20, width - 80)), cells[0].cell_len), max(20, width - fixed - 20))
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=name_width, overflow="fold")
        grid.add_column(width=11, no_wrap=True)
        grid.add_column(width=16, overflow="fold")
        grid.add_column(width=max(10, width - fixed - name_width), overflow="fold")
        grid.add_row(*cells)
        self.console.print(grid)

    def close(self) -> None:
        if not self.shown and not self.folded:
            self._header()
        if self.folded:
            self.console.print(f"{self.folded} clear result(s) not listed (--all lists them)", markup=False)


def evidence(v: Verdict) -> str:
    """The table's evidence cell: why the verdict is what it is, in one line."""
    if v.matches:
        m = v.matches[0]
        return f"{m.signature_id} ({m.kind}, d={m.distance:.4f} <= {m.threshold:g})"
    if v.verdict == "unscannable":
        return v.reason or ""
    if v.verdict == "review":
        return review_evidence(v)
    return ""


WRITERS = {"jsonl": JsonlWriter, "json": JsonWriter, "csv": CsvWriter, "table": TableWriter}


def review_evidence(v: Verdict) -> str:
    """What a person needs first on a ``review`` row: the review score (1 - P(benign), the
    number compared with the review threshold) and the first reason the explanation gives."""
    if v.review_score is not None:
        score: float | None = v.review_score
    elif "benign" in v.scores:  # a record stored before review_score existed
        score = 1.0 - v.scores["benign"]
    else:
        score = max(v.scores.values(), default=None)
    because = v.explanation.split("because:", 1)
    first = because[1].split(";", 1)[0].strip() if len(because) == 2 else ""
    shown = f"score {score:.2f}" if score is not None else ""
    return "; ".join(p for p in (shown, first) if p)


class OutputExists(Exception):
    """``--out`` names a non-empty file and neither ``--force`` nor ``--append`` was given."""


def open_results_file(path: str, *, force: bool = False, append: bool = False) -> tuple[IO[str], bool]:
    """Open ``--out FILE`` for results without ever silently truncating earlier results.

    Returns the open file and whether it already held something (so an appended CSV does not
    repeat its header). A new or empty file is written; an existing non-empty regular file
    raises :class:`OutputExists` unless ``force`` (truncate) or ``append``. Special files
    (``/dev/stdout``, FIFOs) are written as they are: there is nothing to lose. The file is
    created with ``O_EXCL`` first, so a file appearing between check and open is not lost."""
    if append:
        out = open(path, "a", encoding="utf-8", newline="")  # noqa: SIM115 - returned to the caller
        st = os.fstat(out.fileno())
        had = stat.S_ISREG(st.st_mode) and st.st_size > 0
        if had:
            with open(path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":  # a last line without its newline: do not glue onto it
                    out.write("\n")
        return out, had
    if not force:
        try:
            return open(path, "x", encoding="utf-8", newline=""), False  # noqa: SIM115
        except FileExistsError:
            st = os.stat(path)
            if stat.S_ISREG(st.st_mode) and st.st_size > 0:
                raise OutputExists(path) from None
    return open(path, "w", encoding="utf-8", newline=""), False  # noqa: SIM115


def csv_header_matches(path: str) -> bool:
    """Does the CSV at ``path`` start with the header :class:`CsvWriter` writes? (Rows
    appended under another header would land in the wrong columns.)"""
    with open(path, encoding="utf-8", newline="", errors="replace") as f:
        first = next(csv.reader(f), None)
    return first == list(CSV_COLUMNS)
