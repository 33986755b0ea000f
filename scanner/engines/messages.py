"""The messages between a parent and its scan worker: JSON, one task and one reply at a time.

A task is ``[task_id, path]``; a reply is ``[task_id, [verdict, ...]]`` with each verdict
as :meth:`Verdict.to_dict` gives it. JSON and never pickle: the worker is where untrusted
bytes are parsed, so nothing it sends back may be able to execute code in the parent.
"""

from __future__ import annotations

import json

from scanner.verdict import Verdict


def encode_task(task: int, path: str) -> bytes:
    return json.dumps([task, path]).encode()


def decode_task(raw: bytes) -> tuple[int, str]:
    task, path = json.loads(raw)
    return int(task), str(path)


def encode_reply(task: int, verdicts: list[Verdict]) -> bytes:
    return json.dumps([task, [v.to_dict() for v in verdicts]]).encode()


def decode_reply(raw: bytes) -> tuple[int, list[Verdict]]:
    task, records = json.loads(raw)
    return int(task), [Verdict.from_dict(r) for r in records]
