"""The one helper that makes text from uploads inert on a terminal."""

from __future__ import annotations

import pytest

from scanner.sinks.output import terminal_safe


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("part.stl", "part.stl"),
        ("Teil – Gehäuse 日本.stl", "Teil – Gehäuse 日本.stl"),  # printable Unicode is left alone
        ("a\x1b[31mb", "a\\x1b[31mb"),  # ESC (CSI)
        ("\x1b]8;;http:x\x07t\x1b]8;;\x07", "\\x1b]8;;http:x\\x07t\\x1b]8;;\\x07"),  # OSC 8 hyperlink
        ("over\rwrite", "over\\rwrite"),
        ("two\nlines", "two\\nlines"),
        ("tab\tbed", "tab\\tbed"),
        ("c1\x9bcsi\x85nel", "c1\\x9bcsi\\x85nel"),
        ("del\x7f", "del\\x7f"),
        ("x\u202egpj.stl", "x\\u202egpj.stl"),  # right-to-left override
        ("\u2066iso\u2069 \u200fmark \u061c", "\\u2066iso\\u2069 \\u200fmark \\u061c"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("bad\udcffbyte", "bad\\udcffbyte"),  # an undecodable name (surrogateescape)
        ("spelt\\x1b", "spelt\\\\x1b"),  # a name spelling an escape is not confused with one
    ],
)
def test_terminal_safe(raw: str, shown: str) -> None:
    assert terminal_safe(raw) == shown
    assert all(c.isprintable() for c in terminal_safe(raw))


def test_non_strings_are_shown_too() -> None:
    assert terminal_safe(None) == "None" and terminal_safe(3) == "3"
