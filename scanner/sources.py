"""Where uploads come from: local paths, or any fsspec URL (``s3://``, ``gs://``, ``az://``,
``memory://``, ``file://``, ...; credentials as fsspec reads them).

Remote files are fetched whole (after a size check against ``max_file_bytes``) into memory and
read from there; so are local files up to ``READ_WHOLE_BYTES``, and larger ones are read lazily
from disk. Listing a remote "folder" uses the filesystem's own ``find``, sorted, like the local
walk.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import BinaryIO

from scanner.errors import IO_ERROR, LIMIT_BYTES, UnreadableInput
from scanner.formats.blob import Blob, BytesBlob, FileBlob
from scanner.formats.folder import FolderBlob
from scanner.util import is_url, sha256_hex, sha256_stream


def _fs(url: str):  # noqa: ANN202 - fsspec types are optional
    try:
        import fsspec
    except ImportError:
        raise UnreadableInput(IO_ERROR, "URLs need fsspec: pip install 'meshscan[dask]'") from None
    try:
        return fsspec.core.url_to_fs(url)
    except (ValueError, ImportError) as exc:
        raise UnreadableInput(IO_ERROR, f"cannot open {url}: {exc}") from None


def open_blob(source: str, max_bytes: int) -> Blob:
    """A blob for a local path or a URL; raises UnreadableInput (io-error, limit:bytes). A
    local folder is one upload of all its files (:mod:`scanner.formats.folder`)."""
    if not is_url(source):
        if os.path.isdir(source):
            return FolderBlob(source, max_bytes)
        return _local_blob(FileBlob(source, max_bytes))
    fs, path = _fs(source)
    try:
        size = fs.size(path)
        if size is not None and size > max_bytes:
            raise UnreadableInput(LIMIT_BYTES, f"{size} bytes > limit {max_bytes}")
        with fs.open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except UnreadableInput:
        raise
    except (OSError, ValueError) as exc:
        raise UnreadableInput(IO_ERROR, f"cannot read {source}: {exc}") from None
    if len(data) > max_bytes:
        raise UnreadableInput(LIMIT_BYTES, f"more than {max_bytes} bytes")
    return BytesBlob(source, data)


READ_WHOLE_BYTES = 1 << 20
"""A local regular file up to this size is read once, whole, into memory (:func:`_local_blob`):
the small files that are most uploads (a binary STL of up to ~20k triangles), not an archive
whose members are read one at a time."""


def _local_blob(blob: FileBlob) -> Blob:
    """A small regular file's bytes, read once (a :class:`BytesBlob` named by its path); a
    larger one, one that grows while it is read, or not a regular file: the lazily read ``blob``.

    Why: a small file was opened four times - its head to sniff the format, its tail for an
    appended zip, its triangles, its sha256 - and a file rewritten between those reads could be
    judged by one content and recorded under another's hash (the watch daemon scans folders
    others write to). Read once, the verdict and its sha256 come from the same bytes, and three
    opens and reads a file are saved (the bench's small files, alternated: open, parse and hash
    0.49-0.56 -> 0.42-0.45 ms a file). Larger files still stream: a 4M-triangle STL or a large
    archive is never held whole."""
    if not blob.regular or blob.size > READ_WHOLE_BYTES:
        return blob
    with blob.open() as fh:  # io-error when it cannot be opened
        try:
            data = fh.read(blob.size + 1)
        except OSError as exc:
            raise UnreadableInput(IO_ERROR, f"cannot read: {exc.strerror}") from None
    if len(data) > blob.size:  # it grew since its size was read: stream it, as a large file
        return blob
    return BytesBlob(blob.path, data)


def blob_sha256(blob: Blob) -> str | None:
    if isinstance(blob, BytesBlob):
        return sha256_hex(blob.data)
    if isinstance(blob, FolderBlob):
        return blob.manifest_sha256()
    try:
        with blob.open() as fh:
            return sha256_stream(fh)
    except (OSError, UnreadableInput):
        return None


def list_url(url: str) -> Iterator[str]:
    """Files under a URL (itself, if it is a file), sorted. Nothing is skipped by name: the
    walk (:func:`scanner.batch.iter_uploads`) judges each file by its content."""
    fs, path = _fs(url)
    protocol = url.split("://", 1)[0]
    if fs.isfile(path):
        yield url
        return
    for found in sorted(fs.find(path)):
        yield found if is_url(found) else f"{protocol}://{found.lstrip('/') if protocol == 'memory' else found}"


class RemoteBlob:
    """A remote file read lazily: its head for sniffing, the rest only if sniffing needs it.

    Used by folder walks over URLs, which must judge each file by its content without
    downloading every model twice (the scan fetches it again, whole, in its worker)."""

    def __init__(self, url: str) -> None:
        self.fs, self.path = _fs(url)
        self.name = url
        try:
            self.size = int(self.fs.size(self.path) or 0)
        except (OSError, ValueError) as exc:
            raise UnreadableInput(IO_ERROR, f"cannot stat {url}: {exc}") from None
        self._head: bytes | None = None

    def open(self) -> BinaryIO:
        try:
            return self.fs.open(self.path, "rb")
        except (OSError, ValueError) as exc:
            raise UnreadableInput(IO_ERROR, f"cannot open {self.name}: {exc}") from None

    def head(self, n: int) -> bytes:
        from scanner.formats.blob import cached_head

        return cached_head(self, n)

    def read(self) -> bytes:
        with self.open() as fh:
            return fh.read()


def remote_blob(url: str) -> RemoteBlob:
    return RemoteBlob(url)
