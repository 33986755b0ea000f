"""``meshscan watch-health``: is the running ``meshscan watch`` healthy? For a container's
HEALTHCHECK or a monitoring probe; the answer is the daemon's own health decision
(:mod:`scanner.watch.health`, the one that gates its systemd watchdog ping), read from
``/healthz`` on its metrics port."""

from __future__ import annotations

import click

from scanner.cli.exitcodes import ExitCode, exit_with
from scanner.cli.flags import WATCH_HEALTH
from scanner.cli.options import uses


@click.command("watch-health")
@uses(*WATCH_HEALTH, file_table="watch")
def watch_health_cmd(metrics_port: int | None, metrics_host: str, config_path: str | None) -> None:
    """Ask the running watch daemon whether it is healthy; print its answer (JSON).

    Give the daemon's --config (or its --metrics-port/--metrics-host). Exit code: 0 healthy,
    1 not - a watched folder gone, a file waiting past --stuck-after, an action pending past
    --actions-stuck-after, or no daemon answering.
    """
    from scanner.watch.health import probe

    if not metrics_port:
        raise click.UsageError("the daemon's health is served on its metrics port: give --metrics-port "
                               "(or metrics_port in the [watch] table of --config)")  # fmt: skip
    ok, said = probe(metrics_host, metrics_port)
    click.echo(said)
    exit_with(ExitCode.OK if ok else ExitCode.FOUND)
