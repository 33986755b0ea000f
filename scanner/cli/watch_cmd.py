"""``meshscan watch DIR...``: scan uploads as they arrive (see :mod:`scanner.watch.daemon`)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import click

from scanner.cli.exitcodes import CommandError, exit_with
from scanner.cli.flags import WATCH_OPTIONS
from scanner.cli.options import context_from_options, uses
from scanner.context import with_previews


def _lock(state: str) -> Callable[[], None]:
    """One daemon per SQLite state (a file lock): a second one would break exactly-once
    actions. Returns the release. A PostgreSQL state is shared by any number of daemons, which
    claim each file and action (:mod:`scanner.watch.leases`); each holds the database's
    "meshscan watch" advisory lock *shared*, which keeps out whatever holds it exclusive and
    does not claim: a daemon of an older version, ``watch --actions --retry`` performing
    actions itself."""
    import fcntl

    from scanner.store.backend import DB_ERRORS, hold_lock, is_postgres_url

    if is_postgres_url(state):
        try:
            release = hold_lock(state, "meshscan watch", shared=True)
        except DB_ERRORS as exc:
            raise CommandError(f"cannot use the state database: {exc}") from None
        if release is None:
            raise CommandError(
                "another meshscan watch is using the state database and does not share it (a daemon of an older "
                "version, or 'watch --actions --retry' performing actions): try again once it has stopped"
            ) from None
        return release
    fd = os.open(state + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise CommandError(f"another meshscan watch is using the state database {state}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # whom `watch --actions --retry` tells to act now
    return lambda: os.close(fd)


class WatchCommand(click.Command):
    """``watch``, whose ``--actions STATE [--retry ID|--all]`` is a mode of its own (no DIR, none
    of the daemon's options): :mod:`scanner.cli.watch_actions`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if any(a == "--actions" or a.startswith("--actions=") for a in args):
            from scanner.cli.watch_actions import actions_cmd

            ctx.meta["meshscan.watch_actions"] = actions_cmd.make_context(ctx.info_name, list(args), parent=ctx)
            return []
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        sub = ctx.meta.get("meshscan.watch_actions")
        if sub is None:
            return super().invoke(ctx)
        with sub:
            return sub.command.invoke(sub)


@click.command(
    "watch",
    cls=WatchCommand,
    epilog="meshscan watch --actions STATE [--retry ID|--all]: list the "
    "pending and failed actions of a state database, or retry them now (see README).",
)
@uses(*WATCH_OPTIONS, file_table="watch")
def watch_cmd(dirs: tuple[str, ...], quarantine_dir: str | None, state: str, log_path: str | None,
              actions: tuple[str, ...], act_on: tuple[str, ...], once: bool, verbose: bool, metrics_port: int | None,
              metrics_host: str, **options: Any) -> None:  # fmt: skip
    """Watch upload folders (recursively) and scan each file once it is complete.

    Every verdict is recorded in the state database (the same results table as
    ``scan --db``) and appended to the log; flagged uploads get the actions. A crash or
    restart loses nothing and repeats nothing: at start, and every --reconcile-every
    seconds, the folders are listed and whatever has no current verdict is scanned.
    SIGTERM or Ctrl-C stop intake and let running scans finish. A postgresql:// state
    may be shared by several daemons: each file and action is claimed by one, with a lease.

    Exit code (daemon): 0 after a clean stop, 3 if it cannot start. With --once, scan's:
    0 everything read and nothing flagged, 1 something flagged or sent to review (wins),
    2 some upload could not be scanned or an action failed, 3 the scanner could not run.
    """
    import logging

    from scanner.config.watch import ACT_ON_ALIASES
    from scanner.run import RunSummary
    from scanner.watch import oplog
    from scanner.watch.actions import ActionPlan, ActionSpecError, parse_actions, resolve_act_on

    roots = []
    for d in dirs:
        if not os.path.isdir(d):
            raise CommandError(f"{d}: not a folder")
        roots.append(os.path.abspath(d))
    try:
        intents = parse_actions(actions, quarantine_dir)
    except ActionSpecError as exc:
        raise click.UsageError(str(exc)) from None
    excluded = _quarantine_exclusions(roots, quarantine_dir)
    from scanner.store.backend import is_postgres_url

    if not is_postgres_url(state):  # a PostgreSQL URL stays as it is
        state = os.path.abspath(state)
        if not os.path.isdir(os.path.dirname(state)):
            raise CommandError(f"folder of the state database does not exist: {os.path.dirname(state)}")
        excluded += [state + s for s in ("", "-wal", "-shm", "-journal", ".lock")]
    if log_path:
        log_path = os.path.abspath(log_path)
        if not os.path.isdir(os.path.dirname(log_path)):
            raise CommandError(f"folder of the log does not exist: {os.path.dirname(log_path)}")
        excluded.append(log_path)
    on, deprecated = resolve_act_on(act_on)
    for alias in deprecated:
        meaning = ", ".join(ACT_ON_ALIASES[alias])
        click.echo(f"meshscan watch: --act-on {alias} is deprecated (it means {meaning}); list the verdicts "
                   "instead, e.g. --act-on flag --act-on review (the default is flag alone)", err=True)  # fmt: skip
    no_previews = options.pop("no_previews")
    context = with_previews(context_from_options(options), not no_previews)  # the state database records them
    config = _watch_config(roots, state, log_path, ActionPlan(intents, on), once, excluded, options)
    oplog.setup(logging.DEBUG if verbose else logging.INFO)
    summary = _run(config, context, _metrics(metrics_port, metrics_host), state)
    if once:
        exit_with(RunSummary(counts=summary.counts, errors=summary.errors,
                             failed_actions=summary.failed_actions).exit_code)  # fmt: skip


def _quarantine_exclusions(roots: list[str], quarantine_dir: str | None) -> list[str]:
    """The quarantine folder (made if needed), excluded from the watch by its path and by the
    resolved folder the action writes into, in case it is a link into a watched folder."""
    if not quarantine_dir:
        return []
    q = os.path.abspath(quarantine_dir)
    for r in roots:
        if os.path.realpath(r) == os.path.realpath(q) or os.path.realpath(r).startswith(os.path.realpath(q) + os.sep):
            raise click.UsageError(f"the watched folder {r} is inside the quarantine folder {q}")
    os.makedirs(q, exist_ok=True)
    return sorted({q, os.path.realpath(q)})


def _watch_config(roots: list[str], state: str, log_path: str | None, plan: Any, once: bool, excluded: list[str],
                  options: dict[str, Any]) -> Any:  # fmt: skip
    """The daemon's settings from the parsed options."""
    from scanner.watch.daemon import WatchConfig
    from scanner.watch.intake import has_close_events
    from scanner.watch.settle import DEFAULT_IGNORE, SettleConfig

    o = options
    patterns = tuple(o["ignore"]) + (() if o["no_default_ignore"] else DEFAULT_IGNORE)
    settle = SettleConfig(settle=o["settle"], close_delay=o["close_delay"], open_timeout=o["open_timeout"],
                          temp_quiet=o["temp_quiet"], ignore=patterns, exclude=tuple(excluded),
                          close_events=has_close_events() and not once)  # fmt: skip
    return WatchConfig(roots=roots, state=state, log=log_path, plan=plan, jobs=o["jobs"] or os.cpu_count() or 1,
                       settle=settle, reconcile_every=o["reconcile_every"], stale_partial=o["stale_partial"],
                       exclude_globs=o["exclude"], once=once, command_timeout=o["command_timeout"],
                       outbox_max=o["outbox_max"], quarantine_check=o["quarantine_check"],
                       poll=o["poll"], stuck_after=o["stuck_after"],
                       actions_stuck_after=o["actions_stuck_after"], **_test_lease())  # fmt: skip


def _test_lease() -> dict[str, float]:
    """With ``MESHSCAN_WATCH_TEST_HOOKS`` set (tests only), ``MESHSCAN_WATCH_TEST_LEASE``
    shortens the claims' lease, so a test of a killed daemon's work being taken over need
    not wait :data:`scanner.watch.leases.LEASE`."""
    value = os.environ.get("MESHSCAN_WATCH_TEST_LEASE")
    if not (os.environ.get("MESHSCAN_WATCH_TEST_HOOKS") and value):
        return {}
    return {"lease": float(value)}


def _metrics(port: int | None, host: str) -> Any:
    if not port:
        return None
    try:
        from scanner.watch.metrics import PrometheusMetrics

        return PrometheusMetrics(port, host)
    except ImportError:
        raise CommandError("--metrics-port needs prometheus-client: pip install 'meshscan[watch]'") from None
    except OSError as exc:
        raise CommandError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from None


def _actions_now(watcher: Any) -> None:
    """SIGUSR1 (sent by ``watch --actions STATE --retry``): look at the journal's due actions now
    rather than at the next attempt the backoff planned."""
    watcher.next_action_check = 0.0
    watcher.waker.wake()


def _run(config: Any, context: Any, metrics: Any, state: str) -> Any:
    """Run the daemon under its state lock, stopping on SIGTERM or Ctrl-C; its summary."""
    from scanner.watch.daemon import StartError, Watcher

    lock = _lock(state)
    watcher = Watcher(config, context, metrics)
    previous = {sig: signal.signal(sig, lambda *_: watcher.request_stop()) for sig in (signal.SIGTERM, signal.SIGINT)}
    previous[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, lambda *_: _actions_now(watcher))
    try:
        return watcher.run()
    except StartError as exc:
        raise CommandError(str(exc)) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        lock()
        if metrics is not None:
            metrics.close()
