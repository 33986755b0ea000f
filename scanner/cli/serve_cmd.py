"""``meshscan serve``: the scanner as an HTTP service for a platform's upload pipeline."""

from __future__ import annotations

import ipaddress
from typing import Any

import click

from scanner.cli.exitcodes import CommandError
from scanner.cli.options import config_options, context_from_options, library_option, model_options

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def log_reloads() -> None:
    """Reload outcomes (swapped in, refused and why) go to stderr, beside uvicorn's warnings."""
    import logging

    logger = logging.getLogger("meshscan.serve")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback needs --api-key-file.")  # fmt: skip
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Port to bind.")
@library_option
@model_options
@click.option("--threshold", type=float, default=None, help="Near-duplicate distance threshold (overrides config).")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Uploads scanned at once, each in a forked worker under the time and memory limits.")  # fmt: skip
@click.option("--queue", type=click.IntRange(min=0), default=None,
              help="Requests that may wait for a worker (default: 4 x workers); more get 503.")  # fmt: skip
@click.option("--max-upload-bytes", type=click.IntRange(min=1), default=256 * 1024 * 1024, show_default=True,
              help="Largest upload accepted; a larger one gets 413 before more of it is read.")  # fmt: skip
@click.option("--api-key-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="File of API keys, one per line; requests then need 'Authorization: Bearer KEY'.")  # fmt: skip
@click.option("--db", "db_path", type=click.Path(dir_okay=False), default=None,
              help="Record served verdicts in this results database (as scan --db) for review, report.")  # fmt: skip
@click.option("--reload-library", is_flag=True,
              help="On SIGHUP (and when the library's manifest.json changes) load the library again and swap "
                   "it in without dropping requests; one failing verification is refused and logged.")  # fmt: skip
@click.option("--reload-poll", "reload_poll", type=click.FloatRange(min=0), default=5.0, show_default=True,
              help="With --reload-library: seconds between checks of manifest.json (0: on SIGHUP only).")  # fmt: skip
@config_options
def serve_cmd(host: str, port: int, workers: int, queue: int | None, max_upload_bytes: int, api_key_file: str | None,
              db_path: str | None, reload_library: bool, reload_poll: float, **options: Any) -> None:  # fmt: skip
    """Serve scans over HTTP: POST /v1/scan, /v1/hash, /v1/lookup; GET /v1/status, /metrics.

    The library and model are loaded once. Every upload is streamed to a temporary file and
    scanned in a forked worker under the limits of `meshscan scan`. Without --api-key-file the
    server answers on loopback only. With --reload-library, `kill -HUP` makes the server load
    the library folder again: requests in flight finish with the old library, new ones get the
    new one, and a library that fails verification is refused (the old one stays; /v1/status
    says so). Needs the serve extra: pip install 'meshscan[serve]'.
    """
    try:
        import uvicorn

        from scanner.serve.app import ServeConfig, create_app, load_api_keys
    except ImportError:
        raise CommandError("meshscan serve needs FastAPI and uvicorn: pip install 'meshscan[serve]'") from None
    from scanner.api import Scanner

    digests = None
    if api_key_file:
        try:
            digests = load_api_keys(api_key_file)
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise CommandError(f"[config] cannot use {api_key_file} as an API key file: {exc}") from None
    elif not is_loopback(host):
        raise click.UsageError(
            f"refusing to serve on {host} without authentication: give --api-key-file, or bind to 127.0.0.1 or ::1"
        )
    library = options.get("library")
    context = context_from_options(options)
    scanner = Scanner(library=context.library, model=context.model, settings=context.settings)
    recorder = None
    if db_path:
        from scanner.serve.recorder import RecorderError, ServedRecorder

        recorder = ServedRecorder(db_path)
        try:
            recorder.start()
        except RecorderError as exc:
            raise CommandError(f"[io-error] {exc}") from None
    library_path = None
    if reload_library:
        from scanner.library import shipped_library_path

        library_path = str(library or shipped_library_path())
        log_reloads()
    config = ServeConfig(scanner=scanner, workers=workers, queue=4 * workers if queue is None else queue,
                         max_upload_bytes=max_upload_bytes, api_key_digests=digests, recorder=recorder,
                         library_path=library_path, reload_poll_seconds=reload_poll)  # fmt: skip
    auth = "API keys required" if digests else "no authentication: loopback only"
    recording = f"; recording to {db_path}" if db_path else ""
    if reload_library:
        polled = f", or when its manifest changes (checked every {reload_poll:g} s)" if reload_poll else ""
        recording += f"; library reloaded on SIGHUP{polled}"
    click.echo(
        f"meshscan serve: http://{host}:{port} ({auth}; {workers} worker(s), queue {config.queue}; "
        f"library {context.library_version}, model {context.model_version}{recording})",
        err=True,
    )
    try:
        uvicorn.run(create_app(config), host=host, port=port, log_level="warning", access_log=False)
    finally:
        if recorder is not None:
            recorder.close()
