"""What the daemon does with a verdict that needs attention: quarantine, a command, a webhook.

Every action is journalled (:mod:`scanner.watch.journal`) in the transaction that records the
verdict, then carried out, then marked done; after a crash the pending ones are carried out
again. So each must be idempotent on replay:

* ``quarantine`` - :func:`scanner.sinks.quarantine.quarantine_once` finds the name an earlier
  attempt reserved (by action id) and completes the move: exactly once; it follows no link
  below the quarantine root (resolved once, when the actions are parsed), so nothing planted
  in the quarantine can send an upload or its sidecar elsewhere;
* ``command:CMD`` - runs CMD (no shell) with the verdict JSON on stdin, ``MESHSCAN_ACTION_ID``,
  ``MESHSCAN_PATH`` and ``MESHSCAN_VERDICT`` in its environment, under a timeout; a non-zero exit
  or a timeout is retried with backoff, then marked failed. Killed while the command runs, the
  daemon runs it again at restart: at least once, exactly once if the command ignores an action
  id it has already seen;
* ``webhook:URL`` - an outbox row (:mod:`scanner.sinks.webhook`) written with the verdict:
  enqueued exactly once, delivered at least once, with the id as ``Idempotency-Key``.

A failing action never touches the verdict, which is already committed.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from dataclasses import dataclass, field

from scanner.watch import journal as J
from scanner.watch.journal import Intent

ACTION_KINDS = ("quarantine", "report", "command", "webhook")


class ActionSpecError(ValueError):
    pass


MOVING_KINDS = ("quarantine",)
"""Actions that take the upload away from its uploader: only for the ``--act-on`` verdicts."""
REPORTED = ("flag", "review")
"""Verdicts every reporting action (command, webhook) gets, whatever ``--act-on`` says."""


@dataclass(frozen=True)
class ActionPlan:
    """The parsed ``--action`` and ``--act-on`` options.

    A classifier's ``review`` is a suspicion (about 0.5% of real printer parts), so by default
    only ``flag`` is moved; review is still reported, by the log and by the command and
    webhook actions, so someone looks at it without the uploader losing the file."""

    intents: tuple[Intent, ...] = ()
    on: tuple[str, ...] = ("flag",)
    """Verdicts whose files the moving actions (quarantine) apply to (``--act-on``)."""

    def for_verdicts(self, verdicts: list) -> list[Intent]:  # noqa: ANN001 - list[Verdict]
        """The intents a file with these verdicts gets: moving ones for the ``--act-on``
        verdicts, reporting ones for those and for flag and review."""
        seen = {v.verdict for v in verdicts}
        move, report = bool(seen & set(self.on)), bool(seen & (set(self.on) | set(REPORTED)))
        return [i for i in self.intents if (move if i.kind in MOVING_KINDS else report)]


def resolve_act_on(values: tuple[str, ...] | list[str] | str) -> tuple[tuple[str, ...], list[str]]:
    """``--act-on`` values (a TOML string is one value) -> (the verdicts, in a fixed order; the
    deprecated aliases among them, for a warning)."""
    from scanner.config.watch import ACT_ON_ALIASES

    if isinstance(values, str):
        values = (values,)
    chosen: set[str] = set()
    old = []
    for v in values or ("flag",):
        if v in ACT_ON_ALIASES:
            old.append(v)
            chosen.update(ACT_ON_ALIASES[v])
        else:
            chosen.add(v)
    order = ("flag", "review", "unscannable", "clear")
    return tuple(v for v in order if v in chosen), old


def parse_actions(specs: tuple[str, ...], quarantine_dir: str | None) -> tuple[Intent, ...]:
    """``quarantine``, ``report``, ``command:CMD``, ``webhook:URL`` -> intents (``report`` is
    none: the verdict is recorded and logged, nothing else)."""
    from scanner.sinks.webhook import WebhookError, check_url

    if not specs:
        specs = ("quarantine",) if quarantine_dir else ("report",)
    intents = []
    for spec in specs:
        kind, _, arg = spec.partition(":")
        if kind == "report" and not arg:
            continue
        if kind == "quarantine" and not arg:
            if not quarantine_dir:
                raise ActionSpecError("--action quarantine needs --quarantine DIR")
            # resolved once, here: a symlinked quarantine root is the operator's choice, and every
            # replay of the action goes to the folder it named at start-up; below the root,
            # scanner.sinks.quarantine follows no link
            intents.append(Intent("quarantine", os.path.realpath(quarantine_dir)))
        elif kind == "command" and arg.strip():
            try:
                if not shlex.split(arg):
                    raise ValueError("empty command")
            except ValueError as exc:
                raise ActionSpecError(f"cannot parse command {arg!r}: {exc}") from None
            intents.append(Intent("command", arg))
        elif kind == "webhook" and arg:
            try:
                intents.append(Intent("webhook", check_url(arg)))
            except WebhookError as exc:
                raise ActionSpecError(str(exc)) from None
        else:
            raise ActionSpecError(f"unknown action {spec!r}; use quarantine, report, command:CMD or webhook:URL")
    if quarantine_dir and not any(i.kind == "quarantine" for i in intents):
        raise ActionSpecError("--quarantine DIR is used by the quarantine action: add --action quarantine")
    return tuple(intents)


@dataclass
class CommandResult:
    ok: bool
    detail: str


@dataclass
class CommandRunner:
    timeout: float = 30.0
    env: dict[str, str] = field(default_factory=dict)

    def run(self, command: str, document: str, ident: str) -> CommandResult:
        """Run once: the verdict JSON on stdin; killed past the timeout."""
        doc = json.loads(document)
        env = dict(os.environ, **self.env)
        env.update(MESHSCAN_ACTION_ID=ident, MESHSCAN_PATH=doc["path"], MESHSCAN_VERDICT=doc["verdict"])
        try:
            proc = subprocess.run(  # noqa: S603 - the operator's own command, no shell
                shlex.split(command),
                input=document.encode(),
                capture_output=True,
                timeout=self.timeout,
                env=env,
                start_new_session=True,  # a signal to the daemon's group does not hit it mid-action
            )
        except subprocess.TimeoutExpired:
            return CommandResult(False, f"timed out after {self.timeout:g} s")
        except OSError as exc:
            return CommandResult(False, f"cannot run: {exc.strerror or exc}")
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            return CommandResult(False, f"exit code {proc.returncode}" + (f": {err[-1][:200]}" if err else ""))
        return CommandResult(True, "exit code 0")


def backoff(attempts: int, first: float = 2.0, cap: float = 300.0) -> float:
    return min(cap, first * 2 ** min(attempts, 20))


def quarantine_problem(folder: str) -> str | None:
    """Why quarantining into ``folder`` would fail now (None: it works), found by creating and
    removing a probe file in it - permission bits, ACLs, read-only mounts, the immutable
    attribute and a full inode table all answer the same way."""
    import tempfile

    if not os.path.isdir(folder):
        return "does not exist"
    try:
        fd, probe = tempfile.mkstemp(prefix=".meshscan-probe-", dir=folder)
    except OSError as exc:
        return f"is not writable: {exc.strerror or exc}"
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError as exc:
        return f"is not writable (cannot remove a probe file): {exc.strerror or exc}"
    return None


def perform(journal: J.Journal, a: J.ActionRow, command_timeout: float = 30.0) -> tuple[str, str]:
    """Carry out one journalled quarantine or command now, outside a daemon (``meshscan watch
    --actions STATE --retry``, when no daemon holds the state), and journal its outcome as the
    daemon would: done, skipped (nothing left to move), or still pending with its next attempt
    backed off. Returns (state, detail); the caller commits. Replays are safe: see the module doc."""
    import time

    from scanner.sinks.quarantine import ContentChanged, QuarantineError, SourceGone, quarantine_once
    from scanner.verdict import Verdict

    if a.kind == "quarantine":
        verdicts = [Verdict.from_dict(v) for v in json.loads(a.payload)["verdicts"]]
        try:
            target = quarantine_once(a.path, a.root, a.spec, verdicts, a.id, a.sha256)
        except (ContentChanged, SourceGone) as exc:
            journal.finish_action(a.id, J.SKIPPED, error=str(exc))
            return J.SKIPPED, str(exc)
        except (QuarantineError, OSError) as exc:
            error = str(exc)
        else:
            journal.finish_action(a.id, J.DONE, result=str(target))
            journal.set_file_state(a.path, J.QUARANTINED, str(target))
            return J.DONE, str(target)
    elif a.kind == "command":
        result = CommandRunner(command_timeout).run(a.spec, a.payload, a.id)
        if result.ok:
            journal.finish_action(a.id, J.DONE, result=result.detail)
            return J.DONE, result.detail
        error = result.detail
    else:
        return J.PENDING, f"unknown action kind {a.kind!r}"
    journal.retry_action(a.id, error, time.time() + backoff(a.attempts))
    return J.PENDING, error
