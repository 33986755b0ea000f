"""Options shared by several commands, as decorators (sqlite-utils style)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import click

from scanner.cli.exitcodes import CommandError as CommandError  # re-exported: commands import it from here

LIMIT_OPTIONS = {
    "max_file_bytes": "largest file or archive member read, bytes",
    "max_triangles": "most triangles in one file",
    "max_vertices": "most vertices in one file",
    "max_members": "most members in one archive",
    "max_uncompressed_bytes": "most bytes decompressed from one upload",
    "max_ratio": "highest compression ratio accepted (zip bombs)",
    "max_depth": "deepest archive nesting",
    "max_xml_bytes": "largest 3MF XML part",
    "max_bodies": "most separate bodies described in one mesh (more: limit:bodies, never clear)",
    "max_seconds": "wall-clock seconds per upload (scan workers)",
    "max_memory_bytes": "address-space cap per scan worker, bytes",
}


def config_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--config FILE`` plus one ``--limit-*`` override per limit."""
    for name, help_text in reversed(LIMIT_OPTIONS.items()):
        flag = "--limit-" + name.removeprefix("max_").replace("_", "-")
        kind = click.FLOAT if name in ("max_ratio", "max_seconds") else click.INT
        fn = click.option(flag, name, type=kind, default=None, help=help_text)(fn)
    fn = click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="TOML settings file ([limits] table); command-line flags override it.",
    )(fn)
    return fn


def settings_from(config_path: str | None, kwargs: dict[str, Any]) -> Any:
    """Build Settings from --config and --limit-* flags (popping them from kwargs)."""
    from scanner.config import load_settings
    from scanner.errors import ConfigError

    overrides = {f"limits.{name}": kwargs.pop(name, None) for name in LIMIT_OPTIONS}
    overrides.update({k: kwargs.pop(k) for k in list(kwargs) if "." in k})
    try:
        return load_settings(config_path, overrides)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def library_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--library",
        type=click.Path(file_okay=False),
        default=None,
        help="Signature library folder (default: the demo library shipped with meshscan).",
    )(fn)


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
    context = ScanContext(settings=settings, library=open_library(library),
                          model=None if no_model else open_model(model_dir))  # fmt: skip
    if len(context.library) == 0 and context.model is None:
        raise CommandError(
            "the signature library holds no signatures and no classifier is loaded: every upload would read "
            "clear; enrol signatures (meshscan signatures add) or drop --no-model"
        )
    return context


def context_from_options(options: dict[str, Any]) -> Any:
    """The scan context of a scanning command, from its shared options (``--library``,
    ``--model``/``--no-model``, ``--threshold``, ``--review-threshold``, ``--config``,
    ``--limit-*``), which are popped from ``options``: one mapping for every command."""
    library, model_dir = options.pop("library", None), options.pop("model_dir", None)
    no_model = options.pop("no_model", False)
    options["match.distance_threshold"] = options.pop("threshold", None)
    options["classify.review_threshold"] = options.pop("review_threshold", None)
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


def model_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--model / --no-model / --review-threshold, the same for every scanning command."""
    fn = click.option(
        "--review-threshold",
        type=click.FloatRange(0, 1, min_open=True),
        default=None,
        help="Send to review at this component probability (default: the model's calibrated threshold).",
    )(fn)
    fn = click.option("--no-model", is_flag=True, help="Signature matching only: no classifier, no review verdicts.")(
        fn
    )
    return click.option(
        "--model",
        "model_dir",
        type=click.Path(file_okay=False),
        default=None,
        help="Component classifier folder (default: the demo model shipped with meshscan).",
    )(fn)
