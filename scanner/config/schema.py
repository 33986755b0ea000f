"""The settings schema: each setting declared once, with its type, default, help, TOML key and
command-line flag, so the file and the flags cannot drift apart.

A :class:`Setting` is data, with no click in it: the config dataclasses declare their fields
with :func:`setting` (the field *is* the declaration: its name is the TOML key of its table),
settings that only the command line has are plain :class:`Setting` values
(``scanner/cli/flags.py``), and ``scanner/cli/options.py`` turns any of them into a click
option. :func:`check` validates a value from a file the way click validates the flag, so a
bad TOML value is refused with the same rule as a bad flag.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from scanner.errors import ConfigError


@dataclass(frozen=True)
class Setting:
    """One setting. ``name`` is its TOML key within ``table`` (and its click parameter unless
    ``dest`` says otherwise); a setting with no ``table`` is command-line only, one with no
    ``flag`` is file only."""

    name: str
    kind: type
    """int, float, str, bool (a flag) or list (a repeatable option; a TOML array of strings)."""
    default: Any
    help: str
    flag: str | None = None
    table: str | None = None
    dest: str | None = None
    short: str | None = None
    alias: str | None = None
    """An older flag still accepted (``--close-delay`` for ``--quiet``); the TOML key follows ``flag``."""
    minimum: float | None = None
    maximum: float | None = None
    min_open: bool = False
    cli_range: bool = True
    """Whether click checks minimum/maximum on the flag. False: the flag is a plain number and
    the value is checked (with the file's) when the settings are built, as for ``--limit-*``."""
    choices: tuple[str, ...] = ()
    path: str | None = None
    """A path: "file", "dir", "any", "file-or-dash" (``-`` is stdin) or "existing-file"."""
    metavar: str | None = None
    show_default: bool = False
    required: bool = False
    argument: bool = False
    """A positional argument (``watch DIR...``), repeatable when ``kind`` is list."""
    named: bool = False
    """A number may also be given by name (``--review-threshold fr-1pct``: an operating point
    recorded in the model); the name is checked for its spelling here and resolved by whoever
    knows the names (the scan context, against its model)."""

    @property
    def param(self) -> str:
        """The click parameter name (the command function's keyword)."""
        return self.dest or self.name

    @property
    def key(self) -> str | None:
        """``table.name``, the setting's dotted TOML key; None when only a flag sets it."""
        return f"{self.table}.{self.name}" if self.table else None


def setting(default: Any, help: str, flag: str | None = None, **spec: Any) -> Any:
    """A dataclass field that declares a setting (its name and table are filled in by
    :func:`table_settings` from the field and the table it is read from)."""
    kind = spec.pop("kind", None)
    meta = {"setting": dict(default=default, help=help, flag=flag, kind=kind, **spec)}
    if isinstance(default, list | tuple):
        return dataclasses.field(default_factory=lambda: tuple(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def table_settings(cls: type, table: str) -> tuple[Setting, ...]:
    """The settings a config dataclass declares, in field order, as read from ``[table]``."""
    found = []
    for f in dataclasses.fields(cls):
        spec = dict(f.metadata["setting"])
        kind = spec.pop("kind") or _kind_of(spec["default"])
        found.append(Setting(name=f.name, table=table, kind=kind, **spec))
    return tuple(found)


def _kind_of(default: Any) -> type:
    if isinstance(default, list | tuple):
        return list
    if default is None:
        raise TypeError("a setting with no default needs kind=")
    return type(default)


NAME = re.compile(r"[a-z][a-z0-9.\-]*")
"""How a name given for a ``named`` number is spelt (``fr-0.1pct``, ``recall-95``)."""


def check(s: Setting, value: Any, where: str) -> Any:
    """``value`` (from a TOML file or an override) as the setting's type, or ConfigError saying
    why not: the same rule click applies to the flag."""
    if value is None and s.default is None:
        return None
    if s.kind is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where} must be a list of strings, got {value!r}")
        if s.choices and any(v not in s.choices for v in value):
            raise ConfigError(f"{where} must be one of {', '.join(s.choices)} (or a list of them), got {value!r}")
        return tuple(value)
    if s.kind is bool or s.kind is str:
        if not isinstance(value, s.kind):
            raise ConfigError(f"{where} must be {'true or false' if s.kind is bool else 'a string'}, got {value!r}")
        if s.choices and value not in s.choices:
            raise ConfigError(f"{where} must be one of {', '.join(s.choices)}, got {value!r}")
        return value
    if s.named and isinstance(value, str):
        if not NAME.fullmatch(value):
            raise ConfigError(f"{where} must be {_describe(s)} or a name like fr-1pct, got {value!r}")
        return value
    return _check_number(s, value, where)


def _check_number(s: Setting, value: Any, where: str) -> int | float:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    ok = number and (s.kind is float or value == int(value))
    if ok and s.minimum is not None:
        ok = value > s.minimum if s.min_open else value >= s.minimum
    if ok and s.maximum is not None:
        ok = value <= s.maximum
    if not ok:
        raise ConfigError(f"{where} must be {_describe(s)}, got {value!r}")
    return s.kind(value)


def _describe(s: Setting) -> str:
    """The rule a number must meet, in words (the messages of the original checks kept)."""
    noun = "an integer" if s.kind is int else "a number"
    if s.minimum == 0 and s.min_open and s.maximum == 1:
        return "a probability in (0, 1]"
    if s.minimum == 0 and s.min_open and s.maximum is None:
        return "a positive integer" if s.kind is int else "a positive number"
    if s.minimum is None:
        return noun if s.maximum is None else f"{noun} <= {s.maximum:g}"
    low = f"{'>' if s.min_open else '>='} {s.minimum:g}"
    return f"{noun} {low}" if s.maximum is None else f"{noun} {low} and <= {s.maximum:g}"
