"""``meshscan review DB --web``: the web review queue on its own, on loopback unless told otherwise."""

from __future__ import annotations

import click

from scanner.cli.exitcodes import CommandError, ExitCode
from scanner.cli.serve_cmd import is_loopback


def serve_review(
    db: str,
    *,
    host: str,
    port: int,
    reviewers: str | None,
    library: str | None,
    claim_minutes: float,
    allow_remote: bool,
    audit_log: str | None,
) -> None:
    """Check the database and reviewers file first (a clear message, no server), then serve
    until interrupted."""
    if reviewers is None:
        raise click.UsageError("--web needs --reviewers FILE: every decision is recorded under a reviewer's name")
    if not is_loopback(host) and not allow_remote:
        raise click.UsageError(
            f"refusing to serve the review queue on {host}: it is meant for 127.0.0.1 (or a TLS proxy in front); "
            "give --allow-remote to listen there anyway"
        )
    try:
        import uvicorn

        from scanner.review.web.app import WebSettings, create_review_app
        from scanner.review.web.auth import Reviewers, ReviewersError
    except ImportError:
        raise CommandError("meshscan review --web needs FastAPI, uvicorn and Jinja2: pip install 'meshscan[serve]'",
                           ExitCode.FATAL) from None  # fmt: skip
    from scanner.review import ReviewError, ReviewStore

    try:
        people = Reviewers.load(reviewers)
    except ReviewersError as exc:
        raise CommandError(f"[config] {exc}", ExitCode.FATAL) from None
    try:
        with ReviewStore(db, readonly=True) as store:
            waiting = len(store.queue(("review", "flag")))
    except ReviewError as exc:
        raise CommandError(f"{exc} [{exc.code}]", ExitCode.FATAL) from None
    settings = WebSettings(db=db, reviewers=people, library=library, audit_log=audit_log, claim_minutes=claim_minutes)
    click.echo(
        f"meshscan review: http://{host}:{port}/review/ ({waiting} item(s) waiting; {len(people.by_name)} "
        f"reviewer(s); claims hold {claim_minutes:g} min{'; library ' + library if library else ''})",
        err=True,
    )
    uvicorn.run(create_review_app(settings), host=host, port=port, log_level="warning", access_log=False)
