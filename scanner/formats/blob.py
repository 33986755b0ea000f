"""Where a loader's bytes come from: a file on disk (read lazily, so a 4M-triangle STL is
never held twice) or bytes already in memory (an archive member)."""

from __future__ import annotations

import io
import os
import stat
from typing import BinaryIO, Protocol

from scanner.errors import IO_ERROR, LIMIT_BYTES, UnreadableInput


class Blob(Protocol):
    name: str
    size: int

    def head(self, n: int) -> bytes: ...
    def open(self) -> BinaryIO: ...
    def read(self) -> bytes: ...


def cached_head(blob: FileBlob, n: int) -> bytes:
    """The first ``n`` bytes of a streamed blob, read once (at least 64 KiB) and kept."""
    if blob._head is None or len(blob._head) < min(n, blob.size):
        with blob.open() as fh:
            blob._head = fh.read(max(n, 65536))
    return blob._head[:n]


class FileBlob:
    def __init__(self, path: str | os.PathLike[str], max_bytes: int) -> None:
        self.path = os.fspath(path)
        self.name = self.path
        try:
            status = os.stat(self.path)
        except OSError as exc:
            raise UnreadableInput(IO_ERROR, f"cannot stat: {exc.strerror}") from None
        self.size = status.st_size
        self.regular = stat.S_ISREG(status.st_mode)
        """A regular file (not a device, pipe or socket, whose stat size says nothing)."""
        if self.size > max_bytes:
            raise UnreadableInput(LIMIT_BYTES, f"{self.size} bytes > limit {max_bytes}")
        self._head: bytes | None = None

    def open(self) -> BinaryIO:
        try:
            return open(self.path, "rb")
        except OSError as exc:
            raise UnreadableInput(IO_ERROR, f"cannot open: {exc.strerror}") from None

    def head(self, n: int) -> bytes:
        return cached_head(self, n)

    def read(self) -> bytes:
        with self.open() as fh:
            try:
                return fh.read()
            except OSError as exc:
                raise UnreadableInput(IO_ERROR, f"cannot read: {exc.strerror}") from None


class BytesBlob:
    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.data = data
        self.size = len(data)

    def head(self, n: int) -> bytes:
        return self.data[:n]

    def open(self) -> BinaryIO:
        return io.BytesIO(self.data)

    def read(self) -> bytes:
        return self.data
