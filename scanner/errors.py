"""Typed errors. Every unreadable input becomes an :class:`UnreadableInput` with a stable
reason code, so that a scan reports it as ``unscannable`` instead of crashing or skipping.

Reason codes are part of the JSON contract (``reason`` field); add new ones, never rename.
"""

from __future__ import annotations

from typing import Final

# Stable reason codes. ``limit:*`` codes name the limit that was hit (see config.Limits).
TRUNCATED: Final = "truncated"
CORRUPT: Final = "corrupt"
NON_FINITE: Final = "non-finite"
BAD_INDEX: Final = "bad-index"
EMPTY: Final = "empty"
ENCRYPTED: Final = "encrypted"
UNSUPPORTED_FORMAT: Final = "unsupported-format"
"""A model or container format meshscan cannot read (GLB, STEP, xz, ...), or unknown bytes: an error."""
NOT_A_MODEL: Final = "not-a-model"
"""Recognised by content as something other than a model (text, image, material, AppleDouble
metadata). Inside an archive it is listed but is not an error; a whole upload that is not a
model (or an archive in which nothing is) is.
"""
UNSAFE_PATH: Final = "unsafe-path"
IO_ERROR: Final = "io-error"
LIMIT_BYTES: Final = "limit:bytes"
LIMIT_TRIANGLES: Final = "limit:triangles"
LIMIT_VERTICES: Final = "limit:vertices"
LIMIT_MEMBERS: Final = "limit:members"
LIMIT_RATIO: Final = "limit:ratio"
LIMIT_DEPTH: Final = "limit:depth"
LIMIT_XML: Final = "limit:xml"
LIMIT_BODIES: Final = "limit:bodies"
LIMIT_TIME: Final = "limit:time"
LIMIT_MEMORY: Final = "limit:memory"
WORKER_CRASHED: Final = "worker-crashed"

REASON_CODES: Final = frozenset(
    {
        TRUNCATED,
        CORRUPT,
        NON_FINITE,
        BAD_INDEX,
        EMPTY,
        ENCRYPTED,
        UNSUPPORTED_FORMAT,
        NOT_A_MODEL,
        UNSAFE_PATH,
        IO_ERROR,
        LIMIT_BYTES,
        LIMIT_TRIANGLES,
        LIMIT_VERTICES,
        LIMIT_MEMBERS,
        LIMIT_RATIO,
        LIMIT_DEPTH,
        LIMIT_XML,
        LIMIT_BODIES,
        LIMIT_TIME,
        LIMIT_MEMORY,
        WORKER_CRASHED,
    }
)


class MeshscanError(Exception):
    """Base class of every error meshscan raises on purpose."""


class UnreadableInput(MeshscanError):
    """An input that cannot be read as a mesh; ``reason`` is a stable machine code."""

    def __init__(self, reason: str, detail: str = "", *, member: str | None = None) -> None:
        if reason not in REASON_CODES:
            raise ValueError(f"unknown reason code {reason!r}")
        self.reason = reason
        self.detail = detail
        self.member = member
        super().__init__(f"{reason}: {detail}" if detail else reason)


class ConfigError(MeshscanError):
    """A configuration file or option that cannot be used."""
