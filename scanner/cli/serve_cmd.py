"""``meshscan serve``: the scanner as an HTTP service for a platform's upload pipeline."""

from __future__ import annotations

import ipaddress
from typing import Any

import click

from scanner.cli.exitcodes import CommandError
from scanner.cli.flags import SERVE
from scanner.cli.options import context_from_options, uses
from scanner.context import with_previews

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
@uses(*SERVE)
def serve_cmd(host: str, port: int, workers: int, queue: int | None, max_upload_bytes: int, api_key_file: str | None,
              db_path: str | None, reload_library: bool, reload_poll: float, review_db: str | None,
              reviewers: str | None, **options: Any) -> None:  # fmt: skip
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
    review = review_settings(review_db, reviewers, library)
    no_previews = options.pop("no_previews")
    context = with_previews(context_from_options(options), bool(db_path) and not no_previews)
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
                         library_path=library_path, reload_poll_seconds=reload_poll, review=review)  # fmt: skip
    auth = "API keys required" if digests else "no authentication: loopback only"
    from scanner.store.backend import display_name

    recording = f"; recording to {display_name(db_path)}" if db_path else ""
    recording += f"; review queue of {display_name(review_db)} at /review/" if review_db else ""
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


def review_settings(review_db: str | None, reviewers: str | None, library: str | None) -> Any:
    """The web review queue to mount (``--review-db``, with ``--reviewers``), checked before
    anything is started; ``--library`` is the library its decisions may enrol into or allowlist."""
    if review_db is None:
        if reviewers is not None:
            raise click.UsageError("--reviewers goes with --review-db")
        return None
    if reviewers is None:
        raise click.UsageError("--review-db needs --reviewers FILE: every decision is recorded under a reviewer's name")
    from scanner.review import ReviewError, ReviewStore
    from scanner.review.web.app import WebSettings
    from scanner.review.web.auth import Reviewers, ReviewersError

    try:
        people = Reviewers.load(reviewers)
        ReviewStore(review_db, readonly=True).close()
    except ReviewersError as exc:
        raise CommandError(f"[config] {exc}") from None
    except ReviewError as exc:
        raise CommandError(f"{exc} [{exc.code}]") from None
    return WebSettings(db=review_db, reviewers=people, library=library)
