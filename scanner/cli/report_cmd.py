"""``meshscan report SOURCE --out DIR``: a prevalence report for researchers from a results
database (``scan --db``, ``watch --state``) or a JSONL verdict log (scanner/report/)."""

from __future__ import annotations

import click

from scanner.cli.exitcodes import CommandError


@click.command("report")
@click.argument("source", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False),
    required=True,
    help="Folder to write report.html, summary.json and one CSV per table into.",
)
@click.option(
    "--time-field",
    type=click.Choice(["scanned", "mtime"]),
    default="scanned",
    show_default=True,
    help="Time axis: the scan time of each record, or the file's modification time (results DB only).",
)
@click.option(
    "--period",
    type=click.Choice(["auto", "day", "week", "month", "quarter"]),
    default="auto",
    show_default=True,
    help="Bin width over time (auto: days up to two months, weeks up to two years, then months; "
    "the transparency section: month unless week, month or quarter is given).",
)
@click.option(
    "--transparency",
    is_flag=True,
    help="Add the transparency section (results DB only): per period, scanned, flagged, sent to review, "
    "decided, appealed, overturned and median times; aggregate only. Also printed as text on stdout.",
)
@click.option(
    "--include-paths",
    is_flag=True,
    help="Also list file paths, archive members, sha256 and per-folder figures (personal data on most "
    "platforms; off by default).",
)
@click.option(
    "--review-threshold",
    type=click.FloatRange(0, 1, min_open=True),
    default=None,
    help="Review threshold to mark on the score plot (default: as stated in the records, or --config).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="The TOML settings the scan used ([classify] review_threshold, [match] distance_threshold).",
)
@click.option("--title", default="meshscan prevalence report", show_default=True, help="Report title.")
def report_cmd(
    source: str,
    out_dir: str,
    time_field: str,
    period: str,
    include_paths: bool,
    review_threshold: float | None,
    config_path: str | None,
    title: str,
    transparency: bool,
) -> None:
    """Write a self-contained HTML report (report.html, figures embedded, opens offline),
    summary.json and CSV tables about the verdicts in SOURCE: prevalence of flag and review
    with 95% Wilson intervals, score distributions, trends over time, breakdowns by source and
    format, matched signatures, unscannable files by reason, and the methods and versions.

    Aggregate only unless --include-paths. --transparency adds what people did with the
    verdicts (the review audit log: decisions, appeals, outcomes) per period, never naming a
    file or a person. Exit code 0 on success, 3 when no report can be made (with a reason code
    in brackets).
    """
    import importlib.util

    from scanner.report.records import ReportError
    from scanner.report.render import make_report

    if any(importlib.util.find_spec(name) is None for name in ("jinja2", "matplotlib")):
        raise CommandError("[missing-dependency] reports need jinja2 and matplotlib: pip install 'meshscan[report]'")

    distance_threshold = None
    if config_path is not None:
        from scanner.config import load_settings
        from scanner.errors import ConfigError

        try:
            settings = load_settings(config_path)
        except ConfigError as exc:
            raise CommandError(f"[bad-config] {exc}") from None
        distance_threshold = settings.match.distance_threshold
        if review_threshold is None and not isinstance(settings.classify.review_threshold, str):
            review_threshold = settings.classify.review_threshold  # a named one: the records carry the number
    figures = _transparency(source, period) if transparency else None
    try:
        written = make_report(
            source,
            out_dir,
            time_field=time_field,
            period=period,
            include_paths=include_paths,
            review_threshold=review_threshold,
            distance_threshold=distance_threshold,
            title=title,
            transparency=figures,
        )
    except ReportError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"[io-error] cannot write the report to {out_dir}: {exc.strerror}") from None
    if figures is not None:
        from scanner.report.transparency import transparency_text

        click.echo(transparency_text(figures), nl=False)
    s = written.analysis.summary
    flag = s["prevalence"]["flag"]
    where = f"{flag['estimate']:.2%} [{flag['ci95'][0]:.2%}, {flag['ci95'][1]:.2%}]" if flag["n"] else "n/a"
    click.echo(
        f"meshscan: {s['results']} result(s); flag prevalence {where} (95% Wilson); "
        f"wrote {written.html}, {written.summary} and {len(written.csvs)} CSV table(s)",
        err=True,
    )


def _transparency(source: str, period: str) -> dict:
    """The transparency figures of ``source``, which must be a results database (the audit log
    of decisions and appeals lives in it)."""
    from scanner.report.records import SQLITE_MAGIC
    from scanner.review import ReviewError
    from scanner.review.transparency import PERIODS, transparency
    from scanner.store.backend import is_postgres_url

    try:
        if is_postgres_url(source):
            is_db = True
        else:
            with open(source, "rb") as fh:
                is_db = fh.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError as exc:
        raise CommandError(f"[not-found] {source}: {exc.strerror}") from None
    if not is_db:
        raise CommandError(
            f"[transparency-needs-db] {source} is not a results database: the transparency section needs the review "
            "audit log, which lives in the database ('scan --db', 'watch --state')"
        )
    try:
        return transparency(source, period if period in PERIODS else "month")
    except ReviewError as exc:
        raise CommandError(f"[{exc.code}] {exc}") from None
