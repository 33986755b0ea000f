"""The one settings schema (issue 17): every flag of ``scan``, ``survey``, ``watch`` and ``serve``
is generated from a declared setting, every TOML key round-trips into the settings objects, and
a value from a file is held to the same rule as the same value given as a flag."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import pytest

from scanner.cli import cli
from scanner.cli.flags import COMMANDS
from scanner.cli.options import SchemaArgument, SchemaOption, click_type
from scanner.config import SCHEMA, TABLES, load_settings, load_table, load_watch_settings
from scanner.config.schema import Setting, check
from scanner.errors import ConfigError

POSITIONAL = {"scan": {"paths"}, "survey": {"roots"}}
"""Arguments that are inputs of one run, not settings: the only parameters not from the schema."""
EVERY_KEY = [s for table in SCHEMA.values() for s in table]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_parameter_of_the_command_comes_from_the_schema(name: str) -> None:
    params = cli.commands[name].params
    generated = [p for p in params if p.name not in POSITIONAL.get(name, set())]
    assert all(isinstance(p, SchemaOption | SchemaArgument) for p in generated), [
        p.name for p in generated if not isinstance(p, SchemaOption | SchemaArgument)
    ]
    assert [p.setting for p in generated] == list(COMMANDS[name])  # type: ignore[attr-defined]
    for p in generated:
        s: Setting = p.setting  # type: ignore[attr-defined]
        assert p.name == s.param
        if isinstance(p, click.Option):
            assert p.opts == [n for n in (s.short, s.flag, s.alias) if n] and p.help == s.help
            assert p.is_flag == (s.kind is bool) and p.multiple == (s.kind is list)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_flag_with_a_toml_key_is_the_field_of_its_table(name: str) -> None:
    for s in COMMANDS[name]:
        if s.table is not None:
            assert s in SCHEMA[s.table], f"{s.flag} claims [{s.table}] {s.name} but the table does not declare it"


def test_watch_reads_every_key_of_its_table_and_only_once_and_config_are_flag_only() -> None:
    watch = COMMANDS["watch"]
    assert {s.name for s in watch if s.table == "watch"} == {s.name for s in SCHEMA["watch"]}
    flag_only = {s.flag for s in watch if s.table is None}
    assert flag_only == {"--once", "--config"}


def _sample(s: Setting) -> Any:
    """A valid value of ``s`` that is not its default."""
    if s.kind is bool:
        return not s.default
    if s.kind is list:  # a list of choices (act_on) takes choices, any other list any strings
        return list(s.choices[1:3]) if s.choices else ["first*", "second"]
    if s.choices:
        return next(c for c in s.choices if c != s.default)
    if s.kind is str:
        return "/srv/some where/x"
    if s.maximum is not None:
        value = (s.minimum or 0) + (s.maximum - (s.minimum or 0)) / 2
    else:
        value = (s.default or s.minimum or 1) * 3 + 1
    return int(value) if s.kind is int else float(value) + 0.25


def _toml(value: Any) -> str:
    return json.dumps(value)  # strings, numbers, booleans and arrays of strings: TOML spells them alike


@pytest.mark.parametrize("s", EVERY_KEY, ids=[s.key for s in EVERY_KEY])
def test_every_key_round_trips_from_toml_into_the_settings(s: Setting, tmp_path: Path) -> None:
    value = _sample(s)
    assert value != s.default
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[{s.table}]\n{s.name} = {_toml(value)}\n", encoding="utf-8")
    built = load_table(s.table, cfg)
    assert isinstance(built, TABLES[s.table])
    expected = tuple(value) if s.kind is list else value
    assert getattr(built, s.name) == expected and type(getattr(built, s.name)) is type(expected)
    if s.table == "watch":
        assert getattr(load_watch_settings(cfg), s.name) == expected
    else:
        assert getattr(getattr(load_settings(cfg), s.table), s.name) == expected
    others = {o.name: getattr(built, o.name) for o in SCHEMA[s.table] if o is not s}
    assert others == {o.name: o.default for o in SCHEMA[s.table] if o is not s}


def test_unknown_keys_and_tables_are_refused_naming_what_is_known(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[watch]\nsetle = 2\n")
    with pytest.raises(ConfigError, match=r"unknown setting watch\.setle; known: .*settle"):
        load_watch_settings(cfg)
    with pytest.raises(ConfigError, match=r"unknown setting watch\.setle"):
        load_settings(cfg)  # scan checks the whole file: a typo in [watch] is not carried silently
    cfg.write_text("[wacth]\nsettle = 2\n")
    with pytest.raises(ConfigError, match=r"unknown config table\(s\): wacth; known: limits, match, classify, watch"):
        load_settings(cfg)
    cfg.write_text("watch = 3\n")
    with pytest.raises(ConfigError, match="must be a table"):
        load_settings(cfg)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("settle = -1", r"watch\.settle must be a number >= 0, got -1"),
        ("reconcile_every = 0.5", r"watch\.reconcile_every must be a number >= 1"),
        ("metrics_port = 70000", r"watch\.metrics_port must be an integer >= 1 and <= 65535"),
        ("outbox_max = 2.5", r"watch\.outbox_max must be an integer >= 1, got 2\.5"),
        ('act_on = "sometimes"', r"watch\.act_on must be one of flag, review, unscannable, flagged"),
        ('act_on = ["flag", "never"]', r"watch\.act_on must be one of flag, review, unscannable"),
        ("verbose = 1", r"watch\.verbose must be true or false"),
        ("action = [1]", r"watch\.action must be a list of strings"),
        ("state = 3", r"watch\.state must be a string"),
    ],
)
def test_a_bad_watch_value_is_refused_with_why(line: str, message: str, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[watch]\n{line}\n")
    with pytest.raises(ConfigError, match=message):
        load_watch_settings(cfg)


RANGED = [s for c in COMMANDS.values() for s in c if s.kind in (int, float) and s.cli_range and s.minimum is not None]


@pytest.mark.parametrize("s", RANGED, ids=[f"{s.flag}" for s in RANGED])
def test_the_flag_and_the_file_accept_the_same_values(s: Setting) -> None:
    """click's range on the flag and :func:`check` on the file value draw the same line."""
    low, high = s.minimum, s.maximum if s.maximum is not None else s.minimum + 100
    for value in (low - 1, low - 0.1, low, low + 0.1, high, high + 0.1, high + 1):
        value = int(value) if s.kind is int and value == int(value) else value
        if s.kind is int and not isinstance(value, int):
            continue
        try:
            click_type(s).convert(str(value), None, None)
            by_flag = True
        except click.BadParameter:
            by_flag = False
        try:
            check(s, value, "t.k")
            by_file = True
        except ConfigError:
            by_file = False
        assert by_flag == by_file, (s.flag, value, by_flag, by_file)


def test_overrides_beat_the_file_and_none_means_not_given(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[limits]\nmax_triangles = 10\n[match]\ndistance_threshold = 0.05\n[watch]\nsettle = 7\n")
    s = load_settings(cfg, {"limits.max_triangles": 99, "match.distance_threshold": None})
    assert s.limits.max_triangles == 99 and s.match.distance_threshold == 0.05
    assert load_watch_settings(cfg, {"watch.settle": 1.5}).settle == 1.5
    with pytest.raises(ConfigError, match="positive integer"):
        load_settings(cfg, {"limits.max_triangles": -1})


def test_a_watch_key_is_its_flag_without_dashes() -> None:
    """The README's rule for [watch] keys (and its table of flags) holds for every key."""
    for s in SCHEMA["watch"]:
        if s.argument:
            assert s.name == "dirs"
        else:
            assert s.name == s.flag.removeprefix("--").replace("-", "_"), s.flag


def test_the_readme_configuration_table_names_every_table_and_key() -> None:
    from tests.conftest import REPO

    section = (REPO / "README.md").read_text(encoding="utf-8").split("## Configuration", 1)[1].split("\n## ", 1)[0]
    for table, settings in SCHEMA.items():
        row = next(line for line in section.splitlines() if line.startswith(f"| `[{table}]`"))
        if table != "watch":
            assert all(f"`{s.name}`" in row for s in settings), (table, row)
        if table in ("match", "classify"):
            assert all(f"`{s.flag}`" in row for s in settings if s.flag), row
