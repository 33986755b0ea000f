"""Every option of ``scan``, ``survey``, ``watch`` and ``serve``, from the one settings schema
(:mod:`scanner.config.schema`), and which command uses which.

A setting a TOML file may set is declared by its table's dataclass in :mod:`scanner.config`
(``[limits]``, ``[match]``, ``[classify]``, ``[watch]``) and picked up here by name; the few
that only the command line has (where to write, how to run) are declared below, once each.
``scanner/cli/options.py`` turns these tuples into click options (:func:`~scanner.cli.options.uses`);
``tests/unit/test_settings_schema.py`` checks that every flag of the four commands comes from here.
"""

from __future__ import annotations

import dataclasses

from scanner.config import SCHEMA
from scanner.config.schema import Setting


def _table(table: str) -> dict[str, Setting]:
    return {s.name: s for s in SCHEMA[table]}


def _cli_only(s: Setting) -> Setting:
    """A file-backed setting that a command reads from its flag only (``--library`` of ``scan``
    is the ``library`` of ``[watch]``, declared once)."""
    return dataclasses.replace(s, table=None)


LIMITS = SCHEMA["limits"]
THRESHOLD = _table("match")["distance_threshold"]
REVIEW_THRESHOLD = _table("classify")["review_threshold"]
WATCH = _table("watch")
LIBRARY, MODEL, NO_MODEL, NO_PREVIEWS = (
    _cli_only(WATCH[name]) for name in ("library", "model", "no_model", "no_previews")
)

CONFIG = Setting("config", str, None, "TOML settings file ([limits], [match], [classify] and [watch] tables); "
                 "command-line flags override it.", "--config", dest="config_path", path="file")  # fmt: skip


def _flag(name: str, help: str, dest: str | None = None) -> Setting:
    return Setting(name, bool, False, help, "--" + name.replace("_", "-"), dest=dest)


def _jobs(help: str) -> Setting:
    return Setting("jobs", int, None, help, "--jobs", minimum=1)


def _db(help: str) -> Setting:
    return Setting("db", str, None, help, "--db", dest="db_path", path="file")


def _out(help: str) -> Setting:
    return Setting("out", str, None, help, "--out", dest="out_path", path="file")


SCAN = (
    Setting(
        "files_from",
        str,
        None,
        "Also scan the paths listed in this file ('-': stdin), one per line (blank "
        "lines and lines starting with '#' ignored) or NUL-separated (find -print0).",
        "--files-from",
        path="file-or-dash",
    ),
    LIBRARY,
    Setting(
        "format",
        str,
        None,
        "Output format (default: table on a terminal, jsonl otherwise).",
        "--format",
        dest="fmt",
        choices=("table", "jsonl", "csv", "json"),
    ),
    _out("Write results here (a non-empty file is refused: see --force and --append)."),
    _flag("force", "With --out: overwrite a non-empty file."),
    _flag("append", "With --out: append to the file (jsonl and csv; csv keeps one header)."),
    _flag("all", "Table: list clear results too (default: folded into a count).", dest="show_all"),
    _flag("only_flagged", "Output only flagged and review results."),
    Setting(
        "exclude",
        list,
        (),
        "In folder walks, do not scan files whose path (relative to the folder), name or "
        "folder matches GLOB (repeatable; counted in the summary).",
        "--exclude",
        metavar="GLOB",
    ),
    _flag("list_skipped", "Name on stderr each file a folder walk skipped (not a model, or --exclude)."),
    _flag(
        "together",
        "Read each FOLDER given as one upload: its files (recursively) are matched together, as an "
        "archive's members are, so a part cut into pieces across a project's files is found. Files "
        "given are scanned alone as usual.",
    ),
    Setting("move", str, None, "Move flagged files into this quarantine folder.", "--move", dest="move_to", path="dir"),
    Setting("copy", str, None, "Copy flagged files into this quarantine folder.", "--copy", dest="copy_to", path="dir"),
    THRESHOLD,
    MODEL,
    NO_MODEL,
    REVIEW_THRESHOLD,
    _db("Record every verdict in this SQLite results database (for --resume, report, review)."),
    _flag("resume", "With --db: skip files unchanged since their recorded scan."),
    NO_PREVIEWS,
    Setting(
        "engine",
        str,
        "local",
        "local: isolated worker processes on this machine; dask: a Dask cluster.",
        "--engine",
        choices=("local", "dask"),
        show_default=True,
    ),
    Setting("scheduler", str, None, "Dask scheduler address (default: start a LocalCluster).", "--scheduler"),
    _jobs("Worker processes (default: all cores). Each file is scanned in a worker under the time and memory limits."),
    CONFIG,
    *LIMITS,
)

SURVEY = (
    Setting("sample", int, None, "Files to sample and scan.", "--sample", dest="sample_size", minimum=1, required=True),
    Setting(
        "seed",
        int,
        None,
        "Random seed: the same seed over the same listing gives the same sample.",
        "--seed",
        required=True,
        cli_range=False,
    ),
    _db("Record the sample's verdicts in this results database (readable by 'meshscan report')."),
    LIBRARY,
    MODEL,
    NO_MODEL,
    REVIEW_THRESHOLD,
    _jobs("Worker processes (default: all cores)."),
    _flag("json", "Print the estimates as JSON.", dest="as_json"),
    _out("Also write the JSON here."),
    _flag("include_paths", "List the sampled files and their outcomes (off by default)."),
    CONFIG,
    *LIMITS,
)

ONCE = _flag("once", "Reconcile, scan what needs it, run the actions, exit (for cron).")

# `meshscan watch --actions STATE [--retry ID|--all]`: the state database's unfinished actions, a
# mode of its own (scanner/cli/watch_actions.py) that takes none of the options above
ACTIONS_ADMIN = (
    Setting(
        "actions_state",
        str,
        None,
        "List the pending and failed actions of this state database (a table; "
        "JSON lines when piped) instead of watching; no DIR needed.",
        "--actions",
        path="file",
        metavar="STATE",
        required=True,
    ),  # fmt: skip
    Setting(
        "retry",
        list,
        (),
        "With --actions: retry this action now (its id or a unique prefix; repeatable).",
        "--retry",
        metavar="ID",
    ),  # fmt: skip
    _flag("all", "With --actions: retry every pending and failed action now.", dest="retry_all"),
)

WATCH_OPTIONS = (
    *(WATCH[name] for name in ("dirs", "quarantine", "state", "log", "action", "act_on", "jobs")),
    ONCE,
    *(
        WATCH[name]
        for name in (
            "settle",
            "quiet",
            "temp_quiet",
            "open_timeout",
            "ignore",
            "exclude",
            "no_default_ignore",
            "stale_partial",
            "reconcile_every",
            "command_timeout",
            "outbox_max",
            "quarantine_check",
            "metrics_port",
            "metrics_host",
            # -- health and network folders
            "poll",
            "stuck_after",
            "actions_stuck_after",
        )
    ),
    WATCH["no_previews"],
    THRESHOLD,
    WATCH["model"],
    WATCH["no_model"],
    REVIEW_THRESHOLD,
    WATCH["verbose"],
    WATCH["library"],
    CONFIG,
    *LIMITS,
)

WATCH_HEALTH = (WATCH["metrics_port"], WATCH["metrics_host"], CONFIG)
"""``meshscan watch-health``: where the daemon serves ``/healthz`` (the daemon's own --config)."""

SERVE = (
    Setting(
        "host",
        str,
        "127.0.0.1",
        "Address to bind. Anything but loopback needs --api-key-file.",
        "--host",
        show_default=True,
    ),
    Setting("port", int, 8765, "Port to bind.", "--port", minimum=0, maximum=65535, show_default=True),
    LIBRARY,
    MODEL,
    NO_MODEL,
    REVIEW_THRESHOLD,
    THRESHOLD,
    Setting(
        "workers",
        int,
        2,
        "Uploads scanned at once, each in a forked worker under the time and memory limits.",
        "--workers",
        minimum=1,
        show_default=True,
    ),
    Setting(
        "queue",
        int,
        None,
        "Requests that may wait for a worker (default: 4 x workers); more get 503.",
        "--queue",
        minimum=0,
    ),
    Setting(
        "max_upload_bytes",
        int,
        256 * 1024 * 1024,
        "Largest upload accepted; a larger one gets 413 before more of it is read.",
        "--max-upload-bytes",
        minimum=1,
        show_default=True,
    ),
    Setting(
        "api_key_file",
        str,
        None,
        "File of API keys, one per line; requests then need 'Authorization: Bearer KEY'.",
        "--api-key-file",
        path="existing-file",
    ),
    _db("Record served verdicts in this results database (as scan --db) for review, report."),
    Setting(
        "review_db",
        str,
        None,
        "Serve the web review queue of this results database under /review (needs --reviewers).",
        "--review-db",
        path="existing-file",
    ),
    Setting(
        "reviewers",
        str,
        None,
        "With --review-db: TOML/JSON file of reviewers and their password or API key hashes.",
        "--reviewers",
        path="existing-file",
    ),
    NO_PREVIEWS,
    _flag(
        "reload_library",
        "On SIGHUP (and when the library's manifest.json changes) load the library again and "
        "swap it in without dropping requests; one failing verification is refused and logged.",
    ),
    Setting(
        "reload_poll",
        float,
        5.0,
        "With --reload-library: seconds between checks of manifest.json (0: on SIGHUP only).",
        "--reload-poll",
        minimum=0,
        show_default=True,
    ),
    CONFIG,
    *LIMITS,
)

INSPECT = (CONFIG, *LIMITS)

COMMANDS: dict[str, tuple[Setting, ...]] = {"scan": SCAN, "survey": SURVEY, "watch": WATCH_OPTIONS, "serve": SERVE}
"""The settings of each scanning command, in the order ``--help`` lists them."""
