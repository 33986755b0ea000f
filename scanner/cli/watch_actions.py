"""``meshscan watch --actions STATE [--retry ID|--all]``: the unfinished actions of a watch
state database, listed, and retried on demand.

The daemon never gives up an action (it retries with capped backoff), but an operator who has
just fixed the quarantine folder should not wait five minutes for the next attempt, nor guess
what is stuck. Listing reads the journal; ``--retry`` makes the chosen actions due now, then:

* if a daemon holds the state (its lock), it is told (SIGUSR1, to the pid in the lock file)
  and performs them at once, as it performs every action - one performer, exactly once; the
  daemons sharing a PostgreSQL state look at the journal every few seconds, and the one that
  claims an action performs it;
* otherwise this command takes the lock (so no daemon starts meanwhile) and performs them
  itself, journalling the outcome as the daemon would: a quarantine or command that fails
  again stays pending with its next attempt backed off.

Webhooks are not listed: their outbox retries them on its own schedule.

Exit codes (the README's table): listing - 0 nothing pending, 1 actions wait (as ``review``
with items waiting); retrying - 0 done (or handed to the running daemon), 2 an action failed
again or an id is unknown (``[unknown-id]``, ``[ambiguous-id]``); 3 a state database that
does not exist or cannot be read (``[not-found]``, ``[bad-state]``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

import click

from scanner.cli.exitcodes import CommandError, ExitCode, exit_with
from scanner.cli.flags import ACTIONS_ADMIN
from scanner.cli.options import uses
from scanner.sinks.output import terminal_safe

SIGNAL = signal.SIGUSR1
"""What tells a running daemon to look at its actions now (see ``watch_cmd._run``)."""


@click.command("watch")
@uses(*ACTIONS_ADMIN)
def actions_cmd(actions_state: str, retry: tuple[str, ...], retry_all: bool) -> None:
    """List the pending and failed actions of a watch state database; with --retry or --all,
    retry them now (see the module doc)."""
    from scanner.watch.journal import Journal

    if retry and retry_all:
        raise click.UsageError("give --retry ID or --all, not both")
    from scanner.store.backend import DB_ERRORS, display_name, is_postgres_url

    if not is_postgres_url(actions_state) and not os.path.isfile(actions_state):
        raise CommandError(f"[not-found] no state database at {actions_state}")
    try:
        journal = Journal(actions_state)
    except DB_ERRORS as exc:
        where = display_name(actions_state)
        raise CommandError(f"[bad-state] cannot read the state database {where}: {exc}") from None
    try:
        rows = journal.listed_actions()
        if not (retry or retry_all):
            _print(rows)
            exit_with(ExitCode.FOUND if rows else ExitCode.OK)
            return
        ids, unknown = _chosen(rows, retry) if retry else ([r["id"] for r in rows], [])
        for problem in unknown:
            click.echo(f"meshscan watch: {terminal_safe(problem)}", err=True)
        journal.retry_now(ids)
        failed = _hand_over(journal, actions_state, ids)
    finally:
        journal.close()
    exit_with(ExitCode.INCOMPLETE if failed or unknown else ExitCode.OK)


def _chosen(rows: list[dict], wanted: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The ids of the listed actions ``wanted`` names (an id or a unique prefix), and why the
    others name none."""
    ids, problems = [], []
    for w in wanted:
        hits = [r["id"] for r in rows if r["id"].startswith(w.lower())] if w else []
        if len(hits) == 1:
            ids.append(hits[0])
        elif hits:
            problems.append(f"[ambiguous-id] {w} names {len(hits)} actions; give more of the id")
        else:
            problems.append(f"[unknown-id] no pending or failed action {w}")
    return sorted(set(ids)), problems


def _hand_over(journal: Any, state: str, ids: list[str]) -> int:
    """Have the actions performed now: by the daemon holding the state, else here. Returns how
    many failed again."""
    import fcntl

    from scanner.store.backend import hold_lock, is_postgres_url
    from scanner.watch.actions import perform

    if not ids:
        click.echo("meshscan watch: no action to retry", err=True)
        return 0
    if is_postgres_url(state):  # daemons hold the lock shared, in the database; they may run on other machines
        release = hold_lock(state, "meshscan watch")
        if release is None:
            click.echo(f"meshscan watch: {len(ids)} action(s) due now; the running daemon(s) perform them within "
                       "seconds")  # fmt: skip
            return 0
        try:
            return _perform(journal, ids, perform)
        finally:
            release()
    fd = os.open(state + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return _nudge(fd, len(ids))
        return _perform(journal, ids, perform)
    finally:
        os.close(fd)


def _perform(journal: Any, ids: list[str], perform: Any) -> int:
    """Perform the actions here, journalled as the daemon would; how many failed again."""
    failed = 0
    for ident in ids:
        a = journal.action_row(ident)
        outcome, detail = perform(journal, a, command_timeout=30.0)
        journal.commit()
        failed += outcome == "pending"
        line = {"id": ident, "kind": a.kind, "path": a.path, "state": outcome, "detail": detail}
        click.echo(terminal_safe(json.dumps(line)), err=outcome == "pending")
    return failed


def _nudge(fd: int, n: int) -> int:
    """A daemon holds the state: it performs the actions. Tell it to look now."""
    raw = os.pread(fd, 32, 0).decode(errors="replace").strip()
    try:
        os.kill(int(raw), SIGNAL)
        click.echo(f"meshscan watch: {n} action(s) due now; the running daemon (pid {int(raw)}) performs them")
    except (ValueError, OSError):
        click.echo(f"meshscan watch: {n} action(s) due now; the running daemon performs them at its next "
                   "action check (it could not be signalled)")  # fmt: skip
    return 0


def _print(rows: list[dict]) -> None:
    """A table on a terminal, JSON lines (one action each) otherwise."""
    now = time.time()
    if not sys.stdout.isatty():
        for r in rows:
            click.echo(json.dumps({**r, "due_in_s": round(max(0.0, r["next_at"] - now), 1)}))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{len(rows)} action(s) not done")
    for col in ("id", "kind", "path", "state", "attempts", "due in", "last error"):
        table.add_column(col, overflow="fold")
    for r in rows:
        due = max(0.0, r["next_at"] - now)
        cells = (r["id"][:12], r["kind"], r["path"], r["state"], str(r["attempts"]),
                 "now" if due == 0 else f"{due:.0f} s", r["error"] or "-")  # fmt: skip
        table.add_row(*(Text(terminal_safe(str(c))) for c in cells))
    Console().print(table)
