"""Structured operational log lines for the daemon: one JSON object per line on stderr
(journald, Docker and log shippers index the fields), e.g.
``{"ts": "2026-11-29T06:00:00.123Z", "level": "info", "msg": "scanned", "path": "...", "verdict": "clear"}``.

Call sites pass their fields as ``extra={"fields": {...}}``. Verdicts themselves go to the
JSONL verdict log (``--log``), not here."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from datetime import UTC, datetime

LOGGER = "meshscan.watch"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        doc = {"ts": ts, "level": record.levelname.lower(), "msg": record.getMessage()}
        doc.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(doc, default=str)


def setup(level: int = logging.INFO, stream=None) -> logging.Logger:  # noqa: ANN001 - a text stream
    """JSON lines on stderr for the daemon's logger (and watchdog's warnings)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger(LOGGER)
    log.handlers[:] = [handler]
    log.setLevel(level)
    log.propagate = False
    wd = logging.getLogger("watchdog")
    wd.handlers[:] = [handler]
    wd.setLevel(logging.WARNING)
    wd.propagate = False
    # Python warnings become log lines too, so that stderr stays one JSON object per line;
    # watchdog warns when a new folder's watch is registered twice (its own event and its
    # recursive walk racing), which is harmless.
    warnings.filterwarnings("ignore", r"Callback with id .* already exists", RuntimeWarning)
    logging.captureWarnings(True)
    pw = logging.getLogger("py.warnings")
    pw.handlers[:] = [handler]
    pw.propagate = False
    return log
