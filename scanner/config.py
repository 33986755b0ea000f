"""Settings: resource limits, matching and review thresholds from a TOML file plus CLI overrides.

Every limit exists so that an untrusted upload cannot take unbounded memory or time. The
defaults are sized for a 2-core / 24 GiB machine scanning real printable models, the largest
of which are a few million triangles.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanner.errors import ConfigError

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Caps applied while reading one upload (including everything inside an archive)."""

    max_file_bytes: int = 1024 * MiB
    """Largest file, or decompressed archive member, that is read at all."""
    max_triangles: int = 25_000_000
    max_vertices: int = 25_000_000
    max_members: int = 10_000
    """Entries in one archive (3MF packages count their parts)."""
    max_uncompressed_bytes: int = 2048 * MiB
    """Total bytes decompressed from one upload, across all nesting levels."""
    max_ratio: float = 250.0
    """Decompressed / compressed size of any member: ratios above this are zip bombs."""
    max_depth: int = 4
    """Archives inside archives; the upload itself is depth 0."""
    max_bodies: int = 1_000
    """Separate bodies described in one mesh. Every body is described (a top-N cut-off would
    let decoys push a part out), so past this the upload is ``limit:bodies``, never ``clear``."""
    max_xml_bytes: int = 512 * MiB
    """Largest 3MF model part parsed as XML."""
    max_seconds: float = 300.0
    """Wall-clock time for one upload in a scan worker (``limit:time`` past it)."""
    max_memory_bytes: int = 8192 * MiB
    """Address space of a scan worker (RLIMIT_AS; ``limit:memory`` past it)."""


@dataclass(frozen=True)
class MatchSettings:
    """Near-duplicate matching against a signature library."""

    distance_threshold: float = 0.08
    """Largest descriptor distance counted as a near-duplicate (calibration: README)."""
    neighbours: int = 5
    """Nearest signatures looked at per body."""


@dataclass(frozen=True)
class ClassifySettings:
    """The component classifier, for files that match no signature (README: "Classifier and
    review threshold")."""

    review_threshold: float | None = None
    """Send a file to ``review`` when any component category's calibrated probability is at
    least this. None: the threshold calibrated with the model (stored in its model.json)."""
    explain_top: int = 3
    """Features named in a review explanation."""


@dataclass(frozen=True)
class Settings:
    limits: Limits = field(default_factory=Limits)
    match: MatchSettings = field(default_factory=MatchSettings)
    classify: ClassifySettings = field(default_factory=ClassifySettings)


_TABLES = {"limits": Limits, "match": MatchSettings, "classify": ClassifySettings}
_PROBABILITIES = {"review_threshold"}


def _build(cls: type, table: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"unknown setting {where}.{key}; known: {', '.join(sorted(known))}")
        default = known[key].default
        if key in _PROBABILITIES:
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1
            ):
                raise ConfigError(f"{where}.{key} must be a probability in (0, 1], got {value!r}")
            value = None if value is None else float(value)
        elif isinstance(default, (int, float)) and not isinstance(value, bool):
            if not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"{where}.{key} must be a positive number, got {value!r}")
            value = type(default)(value)
        values[key] = value
    return cls(**values)


def load_settings(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Read a TOML settings file (``[limits]``, ``[match]``, ``[classify]``) and apply ``table.key`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    unknown = set(data) - set(_TABLES)
    if unknown:
        raise ConfigError(f"unknown config table(s): {', '.join(sorted(unknown))}")
    tables = {name: dict(data.get(name, {})) for name in _TABLES}
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        if section not in tables or not name:
            raise ConfigError(f"unknown override {key}")
        if value is not None:
            tables[section][name] = value
    return Settings(**{name: _build(cls, tables[name], name) for name, cls in _TABLES.items()})


def settings_from_dict(data: dict[str, Any]) -> Settings:
    """Rebuild Settings from ``dataclasses.asdict`` output (sent to Dask workers as JSON)."""
    return Settings(**{name: _build(cls, dict(data.get(name, {})), name) for name, cls in _TABLES.items()})
