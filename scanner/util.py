"""Small helpers every floor may use: content digests, the timestamp format of records, and
what counts as a URL. The bottom floor of the import graph: stdlib only, so any module can
import it without pulling anything else in.

Why one place: the sha256 of a file is the identity reports, review items, allowlists and the
results database join on, so every writer must compute it the same way (same chunking, same
"unreadable" answer); a record's ``scanned_at`` and a library's ``added`` are compared and
sorted as strings, so they must share one format.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, BinaryIO

CHUNK = 1 << 20
"""Bytes read at a time when hashing a file: bounded memory for any file size."""


def sha256_hex(data: bytes) -> str:
    """The hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_chunks(chunks: Iterable[bytes]) -> str:
    """The hex sha256 of the concatenation of ``chunks`` (read lazily)."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def sha256_stream(fh: BinaryIO) -> str:
    """The hex sha256 of what is left to read in ``fh``, read ``CHUNK`` bytes at a time."""
    return sha256_chunks(iter(lambda: fh.read(CHUNK), b""))


def sha256_path(path: str | os.PathLike[str]) -> str:
    """The hex sha256 of the file at ``path``; raises OSError when it cannot be read (for
    callers to whom an unreadable file is an error, e.g. a library checksum)."""
    with open(path, "rb") as fh:
        return sha256_stream(fh)


def file_sha256(path: str | os.PathLike[str]) -> str | None:
    """The hex sha256 of the file at ``path``, or None when it cannot be read (for records,
    where an unreadable file is a reason code, not an exception)."""
    try:
        return sha256_path(path)
    except OSError:
        return None


def utc_now(*, zulu: bool = False) -> str:
    """Now in UTC, ISO 8601 to the second: ``2026-01-01T00:00:00+00:00`` (``...Z`` with
    ``zulu``). Whole seconds, so timestamps written by different modules sort and compare as
    strings."""
    text = datetime.now(UTC).isoformat(timespec="seconds")
    return text.replace("+00:00", "Z") if zulu else text


def is_url(source: str) -> bool:
    """Whether ``source`` names a remote file (``s3://...``, ``memory://...``; any fsspec URL)
    rather than a local path: remote files are read through fsspec, never stat()ed."""
    return "://" in source


def canonical(obj: Any) -> str:
    """The one JSON spelling an audit entry's hash is computed over (sorted keys, no spaces,
    ASCII, no NaN): the review log and the library event log chain the same way."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def chain_hash(prev_hash: str, entry_json: str) -> str:
    """A hash chain's next link: sha256 of the previous hash, a newline and the canonical entry."""
    return hashlib.sha256(f"{prev_hash}\n{entry_json}".encode()).hexdigest()
