"""The messages between a parent and its scan worker: JSON, one task and one reply at a time.

A task is ``[task_id, path]``; a reply is ``[task_id, [verdict, ...]]`` with each verdict
as :meth:`Verdict.to_dict` gives it, plus its preview PNG (base64, under
:data:`PREVIEW_KEY`) when the worker rendered one: :func:`from_wire` takes it off again, so
it never reaches a record. JSON and never pickle: the worker is where untrusted bytes are
parsed, so nothing it sends back may be able to execute code in the parent.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from scanner.verdict import Verdict

PREVIEW_KEY = "_preview_png"
"""The wire-only key of a verdict's preview (never a field of the record)."""


def to_wire(verdicts: list[Verdict]) -> list[dict[str, Any]]:
    """Verdicts as JSON-ready dicts, each with its preview beside the record if it has one."""
    out = []
    for v in verdicts:
        d = v.to_dict()
        if v.preview:
            d[PREVIEW_KEY] = base64.b64encode(v.preview).decode("ascii")
        out.append(d)
    return out


def from_wire(records: list[dict[str, Any]]) -> list[Verdict]:
    """Verdicts from :func:`to_wire` dicts, the preview taken off the record and put back
    beside it (one that is not base64 is dropped: a preview is never worth a verdict)."""
    verdicts = []
    for r in records:
        r = dict(r)
        png = r.pop(PREVIEW_KEY, None)
        v = Verdict.from_dict(r)
        if isinstance(png, str):
            try:
                v.preview = base64.b64decode(png, validate=True)
            except (binascii.Error, ValueError):
                v.preview = None
        verdicts.append(v)
    return verdicts


def encode_task(task: int, path: str) -> bytes:
    return json.dumps([task, path]).encode()


def decode_task(raw: bytes) -> tuple[int, str]:
    task, path = json.loads(raw)
    return int(task), str(path)


def encode_reply(task: int, verdicts: list[Verdict]) -> bytes:
    return json.dumps([task, to_wire(verdicts)]).encode()


def decode_reply(raw: bytes) -> tuple[int, list[Verdict]]:
    task, records = json.loads(raw)
    return int(task), from_wire(records)


def decode_records(raw: bytes) -> list[dict[str, Any]]:
    """A reply's verdicts as records, not yet :class:`Verdict` objects (for passing them on)."""
    _, records = json.loads(raw)
    if not isinstance(records, list):
        raise ValueError("a reply's verdicts are a list")
    return records
