"""The ``[watch]`` table: every option of the ``meshscan watch`` daemon, so that it can run
from a settings file alone (``meshscan watch --config FILE``); a flag given on the command line
overrides the file. The TOML key of each option is its flag without the dashes (``--act-on``:
``act_on``; a repeatable flag is an array); ``dirs`` are the folders to watch. Only ``--once``
(a way of running, for cron) and ``--config`` itself have no key.

Relative paths are taken from the working directory, as the flags' are.
"""

from __future__ import annotations

from dataclasses import dataclass

from scanner.config.schema import setting

ACT_ON_ALIASES: dict[str, tuple[str, ...]] = {
    "flagged": ("flag", "review"),
    "flagged+unscannable": ("flag", "review", "unscannable"),
    "all": ("flag", "review", "unscannable", "clear"),
}
"""Older ``--act-on`` values, still accepted (deprecated): what they meant before ``act_on``
became a list (they moved files sent to review too)."""


@dataclass(frozen=True)
class WatchSettings:
    """The daemon's options as a settings file gives them (the daemon's own configuration,
    ``scanner.watch.daemon.WatchConfig``, is built from them by the command)."""

    dirs: tuple[str, ...] = setting(
        (), "Upload folders to watch (recursively).", argument=True, path="any", required=True
    )
    quarantine: str | None = setting(
        None, "Quarantine folder: flagged uploads are moved here (relative path kept, with a sidecar JSON).",
        "--quarantine", kind=str, path="dir", dest="quarantine_dir")  # fmt: skip
    state: str = setting("meshscan-watch.sqlite", "State database (SQLite): verdicts, per-file journal, pending "
                         "actions.", "--state", path="file", show_default=True)  # fmt: skip
    log: str | None = setting(None, "Append each verdict to this JSON lines file (default: standard output).", "--log",
                              kind=str, path="file", dest="log_path")  # fmt: skip
    action: tuple[str, ...] = setting(
        (), "What to do with flagged uploads (repeatable). Default: quarantine with --quarantine, else report.",
        "--action", dest="actions", metavar="quarantine|report|command:CMD|webhook:URL")  # fmt: skip
    act_on: tuple[str, ...] = setting(
        ("flag",), "Verdicts whose files are quarantined (repeatable; default: flag). Files sent to review are "
        "reported (log, command, webhook actions) but moved only with --act-on review; unscannable files get "
        "every action with --act-on unscannable. Deprecated aliases: flagged (= flag review), "
        "flagged+unscannable (= flag review unscannable), all (= those and clear).", "--act-on",
        choices=("flag", "review", "unscannable", *ACT_ON_ALIASES), metavar="flag|review|unscannable")  # fmt: skip
    jobs: int | None = setting(None, "Scan worker processes (default: all cores).", "--jobs", kind=int, minimum=1)
    settle: float = setting(2.0, "Seconds a file without a close event must stay unchanged before it is scanned.",
                            "--settle", minimum=0, show_default=True)  # fmt: skip
    quiet: float = setting(
        1.0, "Quiet period: seconds after a close-after-write or a rename before the file is scanned; any "
        "further open or write of it starts the period again (uploads appended in several cycles).",
        "--quiet", alias="--close-delay", dest="close_delay", minimum=0, show_default=True)  # fmt: skip
    temp_quiet: float = setting(
        30.0, "Quiet period of a name that looks temporary (a model suffix followed by an unknown one: "
        "part.stl.uploading).", "--temp-quiet", minimum=0, show_default=True)  # fmt: skip
    open_timeout: float = setting(
        300.0, "Seconds a file written but never closed must stay unchanged before it is scanned anyway.",
        "--open-timeout", minimum=0, show_default=True)  # fmt: skip
    ignore: tuple[str, ...] = setting(
        (), "Also ignore file names matching this glob (temporary/partial uploads; repeatable).", "--ignore",
        metavar="PATTERN")  # fmt: skip
    exclude: tuple[str, ...] = setting(
        (), "Never scan files whose path (relative to the watched folder), name or folder matches GLOB "
        "(repeatable; counted as skipped, as in scan).", "--exclude", metavar="GLOB")  # fmt: skip
    no_default_ignore: bool = setting(
        False, "Do not ignore the default temporary names (*.part, *.tmp, .~*, dot-files, ...).", "--no-default-ignore"
    )
    stale_partial: float = setting(
        3600.0, "Scan a file under an ignored temporary name once it is unchanged this long (0: never).",
        "--stale-partial", minimum=0, show_default=True)  # fmt: skip
    reconcile_every: float = setting(60.0, "Seconds between passes that list the folders for files events missed.",
                                     "--reconcile-every", minimum=1, show_default=True)  # fmt: skip
    command_timeout: float = setting(30.0, "Seconds a command action may run.", "--command-timeout", minimum=0.1,
                                     show_default=True)  # fmt: skip
    outbox_max: int = setting(
        10_000, "Undelivered webhook posts kept; when full, scanning pauses until the endpoint recovers.",
        "--outbox-max", minimum=1, show_default=True)  # fmt: skip
    quarantine_check: str = setting(
        "refuse", "At start-up, a quarantine folder that cannot be written: refuse to start, or warn and keep "
        "quarantines pending until it is fixed.", "--quarantine-check", choices=("refuse", "warn"),
        show_default=True)  # fmt: skip
    # -- health and network folders (issue 15 items 5, 6)
    poll: float | None = setting(
        None, "Poll every watched folder every S seconds instead of inotify (same journal, same exactly-once "
        "rules). Default: only folders on network or FUSE file systems (nfs, cifs, smb3, fuse.*), every 5 s; "
        "0: none.", "--poll", kind=float, minimum=0, metavar="S")  # fmt: skip
    stuck_after: float = setting(
        3600.0, "Unhealthy (and no systemd watchdog ping) when a file has waited this many seconds for its "
        "verdict.", "--stuck-after", minimum=1, show_default=True)  # fmt: skip
    actions_stuck_after: float = setting(
        3600.0, "Unhealthy when an action (quarantine, command) has been pending this many seconds.",
        "--actions-stuck-after", minimum=1, show_default=True)  # fmt: skip
    metrics_port: int | None = setting(None, "Serve Prometheus metrics on this port.", "--metrics-port", kind=int,
                                       minimum=1, maximum=65535)  # fmt: skip
    metrics_host: str = setting("127.0.0.1", "Address of the metrics endpoint.", "--metrics-host", show_default=True)
    verbose: bool = setting(False, "Also log debug lines (dropped files, idle reconciliations).", "--verbose",
                            short="-v")  # fmt: skip
    library: str | None = setting(
        None, "Signature library folder (default: the demo library shipped with meshscan).", "--library", kind=str,
        path="dir")  # fmt: skip
    model: str | None = setting(
        None, "Component classifier folder (default: the demo model shipped with meshscan).", "--model", kind=str,
        path="dir", dest="model_dir")  # fmt: skip
    no_model: bool = setting(False, "Signature matching only: no classifier, no review verdicts.", "--no-model")
    no_previews: bool = setting(
        False, "Do not render the PNG previews of flag and review results that are otherwise stored in the results "
        "database (scan --db, watch's state database, serve --db) for reviewers.", "--no-previews")  # fmt: skip
    """Previews (:mod:`scanner.preview`) cost a fraction of a second per flag or review upload
    in the scan worker; a platform without reviewers looking at them turns them off."""
