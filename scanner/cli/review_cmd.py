"""``meshscan review DB``: list what waits for a person, record their decisions, show the audit log."""

from __future__ import annotations

import json
import sys
from typing import IO, Any

import click

from scanner.cli.exitcodes import CommandError, ExitCode, exit_with
from scanner.cli.signatures_cmd import CATEGORY_CHOICES
from scanner.sinks.output import terminal_safe

ITEM_REFUSALS = frozenset(
    {"bad-id", "unknown-id", "ambiguous-id", "not-reviewable", "already-decided", "file-missing", "content-changed",
     "allowlist-conflict",
     "unreadable", "no-hash", "bad-category", "enrol",
     "not-decided", "appeal-open", "appeal-closed", "no-open-appeal", "same-reviewer", "same-appellant"}
)  # fmt: skip
"""Reason codes of a decision refused for its item (exit 2); any other ReviewError means the
database, library or request cannot be used at all (exit 3)."""


WEB_DEFAULTS = {"host": "127.0.0.1", "port": 8765, "claim_minutes": 30.0}
"""The defaults of the --web options (given anything else without --web is a usage error)."""


@click.command("review")
@click.argument("db", type=click.Path(dir_okay=False))
@click.option(
    "--verdict",
    "verdicts",
    multiple=True,
    type=click.Choice(["review", "flag"]),
    help="Which verdicts to list (repeatable; default: review).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "jsonl", "json"]),
    default=None,
    help="Output format (default: table on a terminal, jsonl otherwise).",
)
@click.option(
    "--decide",
    nargs=2,
    type=(str, click.Choice(["confirm", "dismiss"])),
    default=None,
    metavar="ID confirm|dismiss",
    help="Record a decision on item ID (an unambiguous prefix will do).",
)
@click.option(
    "--appeal",
    default=None,
    metavar="ID",
    help="Reopen the decision on item ID as an appeal (needs --by and --reason; one appeal per decision).",
)
@click.option(
    "--decide-appeal",
    default=None,
    metavar="ID",
    help="Record the outcome of the open appeal on item ID (with --outcome, --by, --reason); four eyes: "
    "never by the original reviewer or the appellant.",
)
@click.option(
    "--outcome",
    type=click.Choice(["upheld", "overturned"]),
    default=None,
    help="With --decide-appeal: upheld, or overturned (undoes the decision's enrolment or allowlisting).",
)
@click.option("--by", default=None, help="Who decides or appeals (required with --decide, --appeal, --decide-appeal).")
@click.option("--reason", default=None, help="Why (required with --decide, --appeal, --decide-appeal).")
@click.option(
    "--enrol",
    "enrol_library",
    type=click.Path(file_okay=False),
    default=None,
    help="With confirm: enrol the file into this signature library.",
)
@click.option(
    "--category",
    type=CATEGORY_CHOICES,
    default=None,
    help="With --enrol: the category to enrol under (default: the verdict's).",
)
@click.option(
    "--allowlist",
    "allowlist_library",
    type=click.Path(file_okay=False),
    default=None,
    help="With dismiss: add the file's sha256 and geometry hash to this library's allowlist.",
)
@click.option(
    "--file",
    "file_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Where the reviewed file is now, if it moved (e.g. into quarantine); its sha256 must match.",
)
@click.option("--audit", is_flag=True, help="Print the audit log of decisions instead of the queue.")
@click.option(
    "--verify", is_flag=True, help="Verify the audit log's hash chain (and --audit-log mirror); exit 3 if broken."
)
@click.option(
    "--audit-log",
    "audit_log",
    type=click.Path(dir_okay=False),
    default=None,
    help="JSONL mirror of the audit log: appended (and fsynced) with --decide, checked with --verify.",
)
@click.option("--web", is_flag=True, help="Serve the review queue in a browser (needs the serve extra).")
@click.option("--host", default="127.0.0.1", show_default=True, help="With --web: address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="With --web: port to listen on.")  # fmt: skip
@click.option("--reviewers", type=click.Path(dir_okay=False, exists=True), default=None,
              help="With --web (required): TOML/JSON file of reviewers and their password/API key hashes.")  # fmt: skip
@click.option("--library", type=click.Path(file_okay=False), default=None,
              help="With --web: the library that confirm+enrol and dismiss+allowlist decisions change.")  # fmt: skip
@click.option("--claim-minutes", type=click.FloatRange(min=1, max=24 * 60), default=30.0, show_default=True,
              help="With --web: how long a reviewer's claim on an item holds.")  # fmt: skip
@click.option("--allow-remote", is_flag=True, help="With --web: allow a non-loopback --host (put TLS in front).")
def review_cmd(
    db: str,
    verdicts: tuple[str, ...],
    fmt: str | None,
    decide: tuple[str, str] | None,
    by: str | None,
    reason: str | None,
    enrol_library: str | None,
    category: str | None,
    allowlist_library: str | None,
    file_path: str | None,
    audit: bool,
    verify: bool,
    audit_log: str | None,
    **options: Any,
) -> None:
    """Human review of a results database (from 'scan --db' or 'watch --state').

    \b
    meshscan review DB                       the queue: review verdicts without a decision
    meshscan review DB --verdict flag        flags too (repeat --verdict for both)
    meshscan review DB --decide ID confirm --by NAME --reason TEXT [--enrol LIBRARY [--category C]]
    meshscan review DB --decide ID dismiss --by NAME --reason TEXT [--allowlist LIBRARY]
    meshscan review DB --appeal ID --by NAME --reason TEXT
    meshscan review DB --decide-appeal ID --outcome upheld|overturned --by NAME --reason TEXT
    meshscan review DB --audit [--verify] [--audit-log FILE]
    meshscan review DB --web --reviewers FILE [--port N] [--library DIR] [--audit-log FILE]

    Exit code: listing 0 when nothing waits, 1 when items wait for review (open appeals
    included); deciding or appealing 0 when recorded, 2 when refused for this item (unknown or
    ambiguous id, already decided, content changed, file missing, not reviewable, not decided,
    appeal open or closed, no open appeal, four eyes) or recorded but its --audit-log mirror
    could not be written; --verify 0 when the audit log is intact; 3 when the
    database, library or audit log cannot be used (not a results database, a broken hash
    chain, an unusable library) or the arguments are wrong.
    """
    from scanner.review import ReviewError, ReviewStore

    appeal, decide_appeal, outcome = (options.pop(k) for k in ("appeal", "decide_appeal", "outcome"))
    web = options
    if web.pop("web"):
        if decide is not None or audit or verify or verdicts or fmt or appeal or decide_appeal:
            raise click.UsageError(
                "--web cannot be combined with --decide, --appeal, --decide-appeal, --audit, --verify, --verdict "
                "or --format"
            )
        from scanner.cli.review_web import serve_review

        serve_review(db, audit_log=audit_log, **web)
        return
    given = [f"--{k.replace('_', '-')}" for k, v in web.items() if v not in (None, False) and v != WEB_DEFAULTS.get(k)]
    if given:
        raise click.UsageError(f"{', '.join(given)} go(es) with --web")
    appealing = _check_appeal_usage(appeal, decide_appeal, outcome, by, reason, decide, audit or verify)
    decide_only = {
        "--by": by,
        "--reason": reason,
        "--enrol": enrol_library,
        "--category": category,
        "--allowlist": allowlist_library,
        "--file": file_path,
    }
    if appealing:
        decide_only = {k: v for k, v in decide_only.items() if k not in ("--by", "--reason")}
    if decide is None:
        given = [name for name, value in decide_only.items() if value is not None]
        if given:
            raise click.UsageError(f"{', '.join(given)} go(es) with --decide")
    if decide is not None and (audit or verify):
        raise click.UsageError("--decide cannot be combined with --audit/--verify")
    if audit_log is not None and decide is None and not verify and not appealing:
        raise click.UsageError("--audit-log goes with --decide/--appeal/--decide-appeal (to append) or --verify")
    out = sys.stdout
    fmt = fmt or ("table" if out.isatty() else "jsonl")
    try:
        with ReviewStore(db, readonly=decide is None and not appealing) as store:
            if appealing:
                _appeal(store, appeal, decide_appeal, outcome, by, reason, audit_log, fmt)
            elif decide is not None:
                _decide(
                    store, decide, by, reason, enrol_library, category, allowlist_library, file_path, audit_log, fmt
                )
            elif audit or verify:
                _audit(store, verify, audit_log, fmt, out)
            else:
                queue = store.queue(verdicts or ("review",))
                _print_queue(queue, fmt, out, store.open_appeals())
                click.echo(f"meshscan review: {len(queue)} item(s) waiting", err=True)
                exit_with(ExitCode.FOUND if queue else ExitCode.OK)
    except ReviewError as exc:
        code = ExitCode.INCOMPLETE if exc.code in ITEM_REFUSALS else ExitCode.FATAL
        raise CommandError(f"{exc} [{exc.code}]", code) from None


def _check_appeal_usage(
    appeal: str | None,
    decide_appeal: str | None,
    outcome: str | None,
    by: str | None,
    reason: str | None,
    decide: object,
    auditing: bool,
) -> bool:
    """Is this an appeal or an appeal outcome? A usage error when its options are missing or
    combined with another mode."""
    if outcome is not None and decide_appeal is None:
        raise click.UsageError("--outcome goes with --decide-appeal")
    if appeal is None and decide_appeal is None:
        return False
    if appeal is not None and decide_appeal is not None:
        raise click.UsageError("--appeal and --decide-appeal are separate steps: give one")
    if decide is not None or auditing:
        raise click.UsageError("--appeal/--decide-appeal cannot be combined with --decide, --audit or --verify")
    if decide_appeal is not None and outcome is None:
        raise click.UsageError("--decide-appeal needs --outcome upheld|overturned")
    if not by or not by.strip() or not reason or not reason.strip():
        raise click.UsageError(f"{'--appeal' if appeal else '--decide-appeal'} needs --by NAME and --reason TEXT")
    return True


def _appeal(
    store,  # noqa: ANN001
    appeal: str | None,
    decide_appeal: str | None,
    outcome: str | None,
    by: str,
    reason: str,
    audit_log: str | None,
    fmt: str,
) -> None:
    if appeal is not None:
        row = store.appeal(appeal, by, reason, mirror=audit_log)
    else:
        row = store.decide_appeal(decide_appeal, by, outcome, reason, mirror=audit_log)
    mirror_error = row.pop("mirror_error", None)
    if fmt == "table":
        what = "appeal" if row["decision"] == "appeal" else f"appeal {row['outcome']}"
        original = row["original"]
        click.echo(
            f"recorded {row['decision_id']} (#{row['seq']}): {what} {row['item_id'][:12]} "
            f"{terminal_safe(_label(str(row['path']), row['member']))} by {terminal_safe(row['by'])} "
            f"(decision {row['appeals']}: {original['decision']} by {terminal_safe(str(original['by']))})"
        )
        for a in row["actions"]:
            click.echo("  " + terminal_safe(_describe_action(a)))
    else:
        click.echo(json.dumps(row, indent=2 if fmt == "json" else None))
    if mirror_error:
        click.echo(f"meshscan review: recorded in {terminal_safe(store.path)}, but {terminal_safe(mirror_error)}",
                   err=True)  # fmt: skip
        exit_with(ExitCode.INCOMPLETE)


def _decide(
    store,
    decide: tuple[str, str],
    by: str | None,
    reason: str | None,
    enrol_library: str | None,  # noqa: ANN001
    category: str | None,
    allowlist_library: str | None,
    file_path: str | None,
    audit_log: str | None,
    fmt: str,
) -> None:
    item_prefix, decision = decide
    if not by or not by.strip() or not reason or not reason.strip():
        raise click.UsageError("--decide needs --by NAME and --reason TEXT")
    outcome = store.decide(
        item_prefix,
        decision,
        by,
        reason,
        enrol_library=enrol_library,
        category=category,
        allowlist_library=allowlist_library,
        file=file_path,
        mirror=audit_log,
    )
    row = outcome.row
    if fmt == "table":
        click.echo(
            f"recorded {row['decision_id']} (#{row['seq']}): {row['decision']} {row['item_id'][:12]} "
            f"{terminal_safe(_label(row['path'], row['member']))} by {terminal_safe(row['by'])}"
        )
        for a in row["actions"]:
            click.echo("  " + terminal_safe(_describe_action(a)))
    else:
        click.echo(json.dumps(row, indent=2 if fmt == "json" else None))
    if outcome.mirror_error:
        click.echo(
            f"meshscan review: decision recorded in {terminal_safe(store.path)}, "
            f"but {terminal_safe(outcome.mirror_error)}",
            err=True,
        )
        exit_with(ExitCode.INCOMPLETE)


def _describe_action(a: dict[str, Any]) -> str:
    versions = f"(library version {a['library_version_before']} -> {a['library_version_after']})"
    if a["action"] == "enrol":
        return f"enrol: {a['status']} {a['signature_id']} as {a['category']} in {a['library']} {versions}"
    if a["action"] == "disable":
        return f"disable: {a['status']} {a['signature_id']} in {a['library']} {versions}"
    return f"{a['action']}: {a['status']} in {a['library']} {versions}"


def _audit(store, verify: bool, audit_log: str | None, fmt: str, out: IO[str]) -> None:  # noqa: ANN001
    if verify:
        check = store.verify(audit_log)
        for note in check.notes:
            click.echo(f"note: {terminal_safe(note)}", err=True)
        if not check.ok:
            for p in check.problems:
                click.echo(f"FAILED: {terminal_safe(p)}", err=True)
            raise CommandError(f"audit log of {store.path} failed verification ({len(check.problems)} problem(s))",
                               ExitCode.FATAL)  # fmt: skip
        click.echo(f"OK: {check.rows} decision(s), hash chain intact, head {check.head}")
        return
    rows = store.decisions()
    if fmt == "jsonl":
        for r in rows:
            out.write(json.dumps(r) + "\n")
    elif fmt == "json":
        json.dump(rows, out, indent=2)
        out.write("\n")
    else:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        table = Table(title=Text(f"review decisions in {terminal_safe(str(store.path))}"))
        for col in ("#", "at", "decision", "by", "item", "file", "actions", "reason"):
            table.add_column(col, overflow="fold")
        for r in rows:
            actions = "; ".join(f"{a['action']}:{a['status']}" for a in r.get("actions", []))
            table.add_row(
                *(
                    Text(terminal_safe(str(x)))
                    for x in (
                        r.get("seq"),
                        r.get("at"),
                        str(r.get("decision")) + (f" ({r['outcome']})" if r.get("outcome") else ""),
                        r.get("by"),
                        str(r.get("item_id", ""))[:12],
                        _label(str(r.get("path")), r.get("member")),
                        actions,
                        r.get("reason"),
                    )
                )
            )
        Console(file=out).print(table)


def _queue_dict(item, appeals: dict) -> dict[str, Any]:  # noqa: ANN001 - a ReviewItem
    """An item as JSON; an item with an open appeal says so, with the contested decision."""
    doc = item.to_dict()
    history = appeals.get(item.id)
    if history is not None:
        keys = ("decision_id", "decision", "by", "reason", "at")
        doc["appeal"] = {
            **{k: history.appeal.get(k) for k in ("appeal_id", "by", "reason", "at")},
            "decision": {k: history.decision.get(k) for k in keys},
        }
    return doc


def _print_queue(queue: list, fmt: str, out: IO[str], appeals: dict | None = None) -> None:
    appeals = appeals or {}
    if fmt == "jsonl":
        for item in queue:
            out.write(json.dumps(_queue_dict(item, appeals)) + "\n")
        return
    if fmt == "json":
        json.dump([_queue_dict(item, appeals) for item in queue], out, indent=2)
        out.write("\n")
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{len(queue)} item(s) waiting for review")
    for col in ("id", "verdict", "top score", "sha256"):
        table.add_column(col, no_wrap=True)  # ids and hashes are copied from here: never fold them
    for col in ("file", "scanned", "explanation"):
        table.add_column(col, overflow="fold")
    for item in queue:
        cat, score = item.top
        top = f"{cat} {score:.2f}" if cat is not None else (item.category or "-")
        style = "bold red" if item.verdict == "flag" else "yellow"
        verdict = Text(item.verdict, style=style)
        if item.id in appeals:
            decision = appeals[item.id].decision
            verdict = Text(f"APPEAL of {decision.get('decision')} by ", style="bold magenta") + Text(
                terminal_safe(str(decision.get("by"))) + f" ({item.verdict})"
            )
        table.add_row(
            Text(item.short_id),
            verdict,
            Text(terminal_safe(top)),
            Text(terminal_safe((item.sha256 or "-")[:12])),
            Text(terminal_safe(_label(item.path, item.member))),
            Text(terminal_safe(item.scanned_at)),
            Text(terminal_safe(item.explanation)),
        )
    Console(file=out).print(table)


def _label(path: str, member: str | None) -> str:
    return path + (f" :: {member}" if member else "")
