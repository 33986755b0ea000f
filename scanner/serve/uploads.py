"""Receiving an upload: streamed to a private temporary file chunk by chunk, never held whole
in memory, and refused (413) as soon as it passes the size limit.

Two shapes are accepted on the same endpoints: ``multipart/form-data`` with the file in the
field ``file`` (what ``curl -F file=@x.stl`` sends), parsed with python-multipart's streaming
parser, or a raw body (any other content type) named by ``?name=``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass

UPLOAD_FIELD = "file"


class UploadError(Exception):
    """An upload refused before scanning: ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(f"[{reason}] {detail}")
        self.status, self.reason, self.detail = status, reason, detail


@dataclass
class SpooledUpload:
    path: str
    """The temporary file holding the upload's bytes."""
    name: str
    """The name the client gave (the multipart filename or ``?name=``), used as the record's path."""
    size: int
    tmpdir: tempfile.TemporaryDirectory[str]
    sha256: str = ""
    """The sha256 of the upload's bytes, hashed as they arrived (``serve --db`` keys on it)."""

    def cleanup(self) -> None:
        self.tmpdir.cleanup()


def safe_suffix(name: str) -> str:
    """The extension of a client-given name, kept on the temporary file (some formats are
    recognised by it), restricted to a short alphanumeric suffix: the name never becomes a path."""
    suffix = os.path.splitext(os.path.basename(name.replace("\\", "/")))[1].lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""


def check_declared_length(content_length: str | None, limit: int) -> None:
    """Refuse up front a body whose declared length is already over the limit."""
    if content_length is None:
        return
    try:
        declared = int(content_length)
    except ValueError:
        raise UploadError(400, "bad-request", "Content-Length is not a number") from None
    if declared > limit:
        raise UploadError(413, "limit:upload-bytes", f"the upload declares {declared} bytes; the limit is {limit}")


async def spool(chunks: AsyncIterator[bytes], content_type: str, query_name: str | None, limit: int) -> SpooledUpload:
    """Write the request body to a temporary file, counting bytes as they arrive.

    Raises :class:`UploadError` with 413 as soon as more than ``limit`` body bytes have come
    (the rest is never read), and 400 for a multipart body without a ``file`` field.
    """
    tmpdir = tempfile.TemporaryDirectory(prefix="meshscan-serve-")
    try:
        return await _spool(chunks, content_type, query_name, limit, tmpdir)
    except BaseException:
        tmpdir.cleanup()
        raise


async def _spool(
    chunks: AsyncIterator[bytes],
    content_type: str,
    query_name: str | None,
    limit: int,
    tmpdir: tempfile.TemporaryDirectory[str],
) -> SpooledUpload:
    from python_multipart.multipart import MultipartParser, parse_options_header

    mime, params = parse_options_header(content_type or "")
    received = 0
    if mime != b"multipart/form-data":
        name = query_name or "upload"
        path = os.path.join(tmpdir.name, "upload" + safe_suffix(name))
        digest = hashlib.sha256()
        with open(path, "wb") as out:
            async for chunk in chunks:
                received += len(chunk)
                if received > limit:
                    raise _too_large(limit)
                out.write(chunk)
                digest.update(chunk)
        return SpooledUpload(path, name, received, tmpdir, digest.hexdigest())

    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(400, "bad-request", "multipart body without a boundary")
    state = _MultipartState(tmpdir.name)
    parser = MultipartParser(boundary, state.callbacks())
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > limit:
                raise _too_large(limit)
            parser.write(chunk)
        parser.finalize()
    except UploadError:
        raise
    except Exception as exc:  # python-multipart's parse errors: the client's body is malformed
        raise UploadError(400, "bad-request", f"malformed multipart body: {exc}") from None
    finally:
        state.close()
    if state.file_path is None:
        raise UploadError(400, "bad-request", f"multipart body without a '{UPLOAD_FIELD}' field")
    name = state.file_name or "upload"
    return SpooledUpload(state.file_path, name, state.file_size, tmpdir, state.digest.hexdigest())


def _too_large(limit: int) -> UploadError:
    return UploadError(413, "limit:upload-bytes", f"the upload is larger than the limit of {limit} bytes")


class _MultipartState:
    """Callbacks for python-multipart: the first ``file`` part goes to disk, other parts are
    ignored (their bytes still count towards the limit)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.header_field = b""
        self.header_value = b""
        self.headers: dict[bytes, bytes] = {}
        self.out = None
        self.file_path: str | None = None
        self.file_name: str | None = None
        self.file_size = 0
        self.digest = hashlib.sha256()

    def callbacks(self) -> dict:
        def on_part_begin() -> None:
            self.headers = {}

        def on_header_field(data: bytes, start: int, end: int) -> None:
            self.header_field += data[start:end]

        def on_header_value(data: bytes, start: int, end: int) -> None:
            self.header_value += data[start:end]

        def on_header_end() -> None:
            self.headers[self.header_field.strip().lower()] = self.header_value.strip()
            self.header_field = self.header_value = b""

        def on_headers_finished() -> None:
            from python_multipart.multipart import parse_options_header

            _, params = parse_options_header(self.headers.get(b"content-disposition", b""))
            if params.get(b"name") == UPLOAD_FIELD.encode() and self.file_path is None:
                self.file_name = params.get(b"filename", b"upload").decode("utf-8", "replace") or "upload"
                self.file_path = os.path.join(self.directory, "upload" + safe_suffix(self.file_name))
                self.out = open(self.file_path, "wb")  # noqa: SIM115 - closed in on_part_end / close

        def on_part_data(data: bytes, start: int, end: int) -> None:
            if self.out is not None:
                self.out.write(data[start:end])
                self.digest.update(data[start:end])
                self.file_size += end - start

        def on_part_end() -> None:
            self.close()

        return {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        }

    def close(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None
