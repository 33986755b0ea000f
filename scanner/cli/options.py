"""Options shared by several commands, generated from the one settings schema
(:mod:`scanner.config.schema`; which command has which: :mod:`scanner.cli.flags`), and the
one mapping from them to a scan context.

Precedence, the same for every setting: a flag given on the command line, else the ``--config``
file, else the default. ``--limit-*``, ``--threshold`` and ``--review-threshold`` are overrides
of the ``[limits]``/``[match]``/``[classify]`` tables (their click default is None: not
given); the ``watch`` options are the ``[watch]`` table, merged by :func:`uses` before the
command runs (a flag counts as given when click took it from the command line).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import click
from click.core import ParameterSource

from scanner.cli.exitcodes import CommandError as CommandError  # re-exported: commands import it from here
from scanner.cli.flags import INSPECT
from scanner.config import SCHEMA, load_settings, load_table
from scanner.config.schema import Setting, check
from scanner.errors import ConfigError

OVERRIDE_TABLES = ("limits", "match", "classify")
"""Tables whose flags are overrides applied when the Settings are built (click default None)."""
OVERRIDES = tuple(s for table in OVERRIDE_TABLES for s in SCHEMA[table] if s.flag)
"""Settings whose flag overrides the file when the Settings are built."""
_PATHS = {
    "file": {"dir_okay": False},
    "dir": {"file_okay": False},
    "any": {},
    "file-or-dash": {"dir_okay": False, "allow_dash": True},
    "existing-file": {"dir_okay": False, "exists": True},
}


class SchemaOption(click.Option):
    """A click option generated from a :class:`Setting` (kept as ``.setting``)."""

    def __init__(self, *args: Any, setting: Setting, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setting = setting


class SchemaArgument(click.Argument):
    """A click argument generated from a :class:`Setting` (``watch DIR...``)."""

    def __init__(self, *args: Any, setting: Setting, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setting = setting


class NumberOrName(click.ParamType):
    """A number in the setting's range, or a name (a ``named`` setting: ``--review-threshold
    fr-1pct``), checked as :func:`scanner.config.schema.check` checks the file."""

    def __init__(self, setting: Setting) -> None:
        self.setting = setting
        self.name = "number|name"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            number: Any = float(value)
        except ValueError:
            number = value
        try:
            return check(self.setting, number, self.setting.flag or self.setting.name)
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


def click_type(s: Setting) -> Any:
    """The click type that checks the flag as :func:`scanner.config.schema.check` checks the file."""
    if s.named:
        return NumberOrName(s)
    if s.path is not None:
        return click.Path(**_PATHS[s.path])
    if s.choices:
        return click.Choice(list(s.choices))
    if s.kind in (int, float) and s.cli_range and (s.minimum is not None or s.maximum is not None):
        kind = click.IntRange if s.kind is int else click.FloatRange
        return kind(s.minimum, s.maximum, min_open=s.min_open)
    return {int: click.INT, float: click.FLOAT, str: click.STRING, list: click.STRING}[s.kind]


def click_param(s: Setting) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The click decorator adding one setting's option (or argument) to a command."""
    if s.argument:
        return click.argument(s.param, cls=SchemaArgument, setting=s, nargs=-1 if s.kind is list else 1,
                              type=click_type(s), required=s.required and s.table is None)  # fmt: skip
    if s.flag is None:
        raise ValueError(f"{s.key} has no command-line flag")
    derived = s.flag.lstrip("-").replace("-", "_")
    names = [n for n in (s.short, s.flag, s.alias) if n] + ([s.param] if s.param != derived else [])
    kwargs: dict[str, Any] = {"help": s.help, "required": s.required and s.table is None}
    if s.kind is bool:
        kwargs["is_flag"] = True
    else:
        kwargs["type"] = click_type(s)
        if s.kind is list:
            kwargs["multiple"] = True
        elif not s.required:
            kwargs["default"] = None if s.table in OVERRIDE_TABLES else s.default
        if s.show_default:
            kwargs["show_default"] = True
    if s.metavar:
        kwargs["metavar"] = s.metavar
    return click.option(*names, cls=SchemaOption, setting=s, **kwargs)


def uses(*settings: Setting, file_table: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the options of ``settings`` (listed by ``--help`` in this order). With
    ``file_table``, the command's settings of that TOML table are read from ``--config`` when
    their flag is not given, before the command runs."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        if file_table is not None:
            fn = _merging(fn, [s for s in settings if s.table == file_table], file_table)
        for s in reversed(settings):
            fn = click_param(s)(fn)
        return fn

    return decorate


def _merging(fn: Callable[..., Any], settings: list[Setting], table: str) -> Callable[..., Any]:
    """``fn`` called with the ``[table]`` values of the ``--config`` file in place of the
    defaults of the flags not given (and a required setting given by neither refused)."""

    @functools.wraps(fn)
    def run(**kwargs: Any) -> Any:
        ctx = click.get_current_context()
        try:
            values = load_table(table, kwargs.get("config_path"))
        except ConfigError as exc:
            raise click.UsageError(f"[bad-config] {exc}") from None
        for s in settings:
            if ctx.get_parameter_source(s.param) in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP):
                kwargs[s.param] = getattr(values, s.name)
            if s.required and not kwargs[s.param]:
                what = f"argument '{s.param.upper()}...'" if s.argument else f"option '{s.flag}'"
                raise click.UsageError(f"Missing {what} (or {s.name} in the [{table}] table of --config).", ctx)
        return fn(**kwargs)

    return run


def config_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--config FILE`` plus one ``--limit-*`` override per limit."""
    return uses(*INSPECT)(fn)


def settings_from(config_path: str | None, kwargs: dict[str, Any]) -> Any:
    """Build Settings from --config and the override flags a command has (``--limit-*``,
    ``--threshold``, ``--review-threshold``: popped from kwargs; None is not given)."""
    overrides = {s.key: kwargs.pop(s.param, None) for s in OVERRIDES if s.param in kwargs}
    try:
        return load_settings(config_path, overrides)
    except ConfigError as exc:
        raise click.UsageError(f"[bad-config] {exc}") from None


def open_library(path: str | None) -> Any:
    """Load a library for scanning; a library that fails verification stops the command."""
    from scanner.library import LibraryError, SignatureLibrary, shipped_library_path

    try:
        return SignatureLibrary.load(path or shipped_library_path())
    except LibraryError as exc:
        raise CommandError(str(exc)) from None


def open_model(path: str | None) -> Any:
    """Load a model for scanning (default: the shipped demo model); refuse it with the reason."""
    from scanner.classify.model import ModelError, load_model

    try:
        return load_model(path)
    except ModelError as exc:
        raise CommandError(str(exc)) from None


def build_scan_context(library: str | None, settings: Any, model_dir: str | None = None, no_model: bool = False) -> Any:
    """The one ScanContext every scanning command builds (library, classifier model, settings),
    so that an upload gets the same verdict from ``scan``, ``watch`` and ``survey``."""
    from scanner.context import ScanContext

    if no_model and model_dir:
        raise click.UsageError("use --model or --no-model, not both")
    model = None if no_model else open_model(model_dir)
    context = ScanContext(settings=named_threshold(settings, model), library=open_library(library), model=model)
    if len(context.library) == 0 and context.model is None:
        raise CommandError(
            "the signature library holds no signatures and no classifier is loaded: every upload would read "
            "clear; enrol signatures (meshscan signatures add) or drop --no-model"
        )
    return context


def named_threshold(settings: Any, model: Any) -> Any:
    """The settings with a named ``--review-threshold`` (or ``[classify] review_threshold``)
    replaced by the model's operating point of that name, so that every worker, spec and
    record carries the number. An unknown name is a usage error naming the recorded ones
    (``[unknown-operating-point]``); without a model the threshold is unused, name or not."""
    import dataclasses

    from scanner.classify.model import ModelError

    name = settings.classify.review_threshold
    if not isinstance(name, str) or model is None:
        return settings
    try:
        value = model.operating_point(name)
    except ModelError as exc:
        raise click.UsageError(f"[unknown-operating-point] --review-threshold {name}: {exc}") from None
    return dataclasses.replace(settings, classify=dataclasses.replace(settings.classify, review_threshold=value))


def context_from_options(options: dict[str, Any]) -> Any:
    """The scan context of a scanning command, from its shared options (``--library``,
    ``--model``/``--no-model``, ``--threshold``, ``--review-threshold``, ``--config``,
    ``--limit-*``), which are popped from ``options``: one mapping for every command."""
    library, model_dir = options.pop("library", None), options.pop("model_dir", None)
    no_model = options.pop("no_model", False)
    settings = settings_from(options.pop("config_path", None), options)
    return build_scan_context(library, settings, model_dir, no_model)


@contextlib.contextmanager
def started(run: Any) -> Iterator[Any]:
    """``with started(ScanRun(...)) as run``: a run that cannot start is a fatal command error
    (its message, no traceback)."""
    from scanner.run import RunError

    try:
        run.__enter__()
    except RunError as exc:
        raise CommandError(str(exc)) from None
    try:
        yield run
    except BaseException as exc:
        run.__exit__(type(exc), exc, exc.__traceback__)
        raise
    run.__exit__(None, None, None)
