"""Settings: resource limits, matching and review thresholds, and the ``watch`` daemon, from a
TOML file plus command-line overrides.

Every setting is declared once, as a field of the dataclass of its TOML table (``[limits]``,
``[match]``, ``[classify]``, ``[watch]``) with :func:`~scanner.config.schema.setting`: the
field name is the TOML key, and the declaration carries the default, the help and the
command-line flag, from which ``scanner/cli/options.py`` generates the click options. The
precedence is the same everywhere: a flag given on the command line, else the file, else the
default.

Every limit exists so that an untrusted upload cannot take unbounded memory or time. The
defaults are sized for a 2-core / 24 GiB machine scanning real printable models, the largest
of which are a few million triangles.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanner.config.schema import Setting, check, setting, table_settings
from scanner.config.watch import WatchSettings
from scanner.errors import ConfigError

MiB = 1024 * 1024
_POSITIVE: dict[str, Any] = {"minimum": 0, "min_open": True, "cli_range": False}


@dataclass(frozen=True)
class Limits:
    """Caps applied while reading one upload (including everything inside an archive)."""

    max_file_bytes: int = setting(1024 * MiB, "largest file or archive member read, bytes", "--limit-file-bytes",
                                  **_POSITIVE)  # fmt: skip
    """Largest file, or decompressed archive member, that is read at all."""
    max_triangles: int = setting(25_000_000, "most triangles in one file", "--limit-triangles", **_POSITIVE)
    max_vertices: int = setting(25_000_000, "most vertices in one file", "--limit-vertices", **_POSITIVE)
    max_members: int = setting(10_000, "most members in one archive", "--limit-members", **_POSITIVE)
    """Entries in one archive (3MF packages count their parts)."""
    max_uncompressed_bytes: int = setting(2048 * MiB, "most bytes decompressed from one upload",
                                          "--limit-uncompressed-bytes", **_POSITIVE)  # fmt: skip
    """Total bytes decompressed from one upload, across all nesting levels."""
    max_ratio: float = setting(250.0, "highest compression ratio accepted (zip bombs)", "--limit-ratio", **_POSITIVE)
    """Decompressed / compressed size of any member: ratios above this are zip bombs."""
    max_depth: int = setting(4, "deepest archive nesting", "--limit-depth", **_POSITIVE)
    """Archives inside archives; the upload itself is depth 0."""
    max_xml_bytes: int = setting(512 * MiB, "largest 3MF XML part", "--limit-xml-bytes", **_POSITIVE)
    """Largest 3MF model part parsed as XML."""
    max_bodies: int = setting(1_000, "most separate bodies described in one mesh (more: limit:bodies, never clear)",
                              "--limit-bodies", **_POSITIVE)  # fmt: skip
    """Separate bodies described in one mesh. Every body is described (a top-N cut-off would
    let decoys push a part out), so past this the upload is ``limit:bodies``, never ``clear``."""
    max_seconds: float = setting(300.0, "wall-clock seconds per upload (scan workers)", "--limit-seconds",
                                 **_POSITIVE)  # fmt: skip
    """Wall-clock time for one upload in a scan worker (``limit:time`` past it)."""
    max_memory_bytes: int = setting(8192 * MiB, "address-space cap per scan worker, bytes", "--limit-memory-bytes",
                                    **_POSITIVE)  # fmt: skip
    """Address space of a scan worker (RLIMIT_AS; ``limit:memory`` past it)."""


@dataclass(frozen=True)
class MatchSettings:
    """Near-duplicate matching against a signature library."""

    distance_threshold: float = setting(0.08, "Near-duplicate distance threshold (overrides config).", "--threshold",
                                        dest="threshold", **_POSITIVE)  # fmt: skip
    """Largest descriptor distance counted as a near-duplicate (calibration: README)."""
    neighbours: int = setting(5, "Nearest signatures looked at per body.", **_POSITIVE)
    """Nearest signatures looked at per body."""


@dataclass(frozen=True)
class ClassifySettings:
    """The component classifier, for files that match no signature (README: "Classifier and
    review threshold")."""

    review_threshold: float | str | None = setting(
        None, "Send to review at this component probability, or at a named operating point of the model "
        "(fr-0.1pct, fr-1pct, fr-5pct, recall-90, recall-95, recall-99; default: the model's calibrated threshold).",
        "--review-threshold", kind=float, minimum=0, maximum=1, min_open=True, named=True)  # fmt: skip
    """Send a file to ``review`` when any component category's calibrated probability is at
    least this. None: the threshold calibrated with the model (stored in its model.json); a
    name: the operating point of that name recorded in the model (README, "Operating points")."""
    explain_top: int = setting(3, "Features named in a review explanation.", **_POSITIVE)
    """Features named in a review explanation."""


@dataclass(frozen=True)
class Settings:
    limits: Limits = field(default_factory=Limits)
    match: MatchSettings = field(default_factory=MatchSettings)
    classify: ClassifySettings = field(default_factory=ClassifySettings)
    previews: bool = False
    """Render a PNG preview (:mod:`scanner.preview`) of each ``flag`` and ``review`` result in
    the scan worker, from the mesh it scanned. Not a TOML key: the front ends that record to a
    results database (``scan --db``, ``watch``, ``serve --db``) turn it on unless
    ``--no-previews``; it travels with the settings to every worker (forked, guarded, Dask)."""


TABLES: dict[str, type] = {"limits": Limits, "match": MatchSettings, "classify": ClassifySettings,
                           "watch": WatchSettings}  # fmt: skip
"""Every TOML table a settings file may hold, and the dataclass that declares its keys."""
SCHEMA: dict[str, tuple[Setting, ...]] = {name: table_settings(cls, name) for name, cls in TABLES.items()}
"""The settings of each table, in declaration order."""


def _build(table: str, values: dict[str, Any]) -> Any:
    """The table's dataclass from its (file or override) values, each checked; an unknown key
    is refused, naming the known ones."""
    known = {s.name: s for s in SCHEMA[table]}
    checked = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown setting {table}.{key}; known: {', '.join(sorted(known))}")
        checked[key] = check(known[key], value, f"{table}.{key}")
    return TABLES[table](**checked)


def read_config(path: str | Path | None) -> dict[str, dict[str, Any]]:
    """The tables of a TOML settings file (every table present, empty when absent); an
    unreadable file, invalid TOML or an unknown table is a ConfigError."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    unknown = set(data) - set(TABLES)
    if unknown:
        raise ConfigError(f"unknown config table(s): {', '.join(sorted(unknown))}; known: {', '.join(TABLES)}")
    not_tables = [name for name, table in data.items() if not isinstance(table, dict)]
    if not_tables:
        raise ConfigError(f"config {', '.join(sorted(not_tables))} must be a table ([{not_tables[0]}])")
    return {name: dict(data.get(name, {})) for name in TABLES}


def _tables(path: str | Path | None, overrides: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    tables = read_config(path)
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        if section not in tables or not name:
            raise ConfigError(f"unknown override {key}")
        if value is not None:
            tables[section][name] = value
    return tables


def load_settings(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Read a TOML settings file (``[limits]``, ``[match]``, ``[classify]``) and apply ``table.key``
    overrides (None: not given). The whole file is checked, its ``[watch]`` table included."""
    tables = _tables(path, overrides)
    _build("watch", tables["watch"])
    return Settings(**{name: _build(name, tables[name]) for name in ("limits", "match", "classify")})


def load_watch_settings(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> WatchSettings:
    """The ``[watch]`` table of a TOML settings file, with ``watch.key`` overrides applied."""
    return _build("watch", _tables(path, overrides)["watch"])


def load_table(table: str, path: str | Path | None = None) -> Any:
    """One table of a TOML settings file as its dataclass (defaults for the keys it lacks);
    the whole file is checked, so a mistake in another table is not silently carried."""
    tables = read_config(path)
    built = {name: _build(name, values) for name, values in tables.items()}
    return built[table]


def settings_from_dict(data: dict[str, Any]) -> Settings:
    """Rebuild Settings from ``dataclasses.asdict`` output (sent to Dask workers as JSON)."""
    tables = {name: _build(name, dict(data.get(name, {}))) for name in ("limits", "match", "classify")}
    return Settings(**tables, previews=bool(data.get("previews", False)))
