"""Decide what a blob *is* from its bytes; the file name is never consulted.

Every blob gets one of three kinds of answer:

* a format meshscan reads (a loader's or a container's name in the registry);
* a model or container format meshscan does **not** read (``UNSUPPORTED``), or ``unknown``
  bytes - reported as ``unsupported-format``, an error;
* something recognised by content as *not a model* (``NON_MODEL``) - listed inside archives,
  skipped by folder walks.

The tests themselves are declared by the format modules (``SNIFFERS``, see
:class:`scanner.formats.base.Sniffer` for the priority bands) and run here in priority order:
containers first (their magic numbers are unambiguous), then PLY and OFF headers, then the
STL binary/ASCII question, then the other binary signatures, then text. What meshscan does
not read is declared in :mod:`scanner.formats.others`.
"""

from __future__ import annotations

import zipfile
import zlib

from scanner.formats._hidden import MIN_HIDDEN_BYTES, image_trailer_at
from scanner.formats._probe import HEAD_BYTES, Probe
from scanner.formats.archive import BZ2_MAGIC, GZIP_MAGIC, ZIP_MAGIC, zip_has_more_entries_than
from scanner.formats.blob import Blob, BytesBlob
from scanner.formats.others import NON_MODEL, UNSUPPORTED
from scanner.formats.registry import LOADERS, SNIFFERS

__all__ = ["HEAD_BYTES", "NON_MODEL", "UNSUPPORTED", "describe", "is_non_model", "non_model_kind", "sniff"]


def sniff(blob: Blob, max_members: int | None = None) -> str:
    """Return a format name: of the registry, of ``UNSUPPORTED``, of ``NON_MODEL``, or ``empty``.

    ``max_members``: a zip whose directory lists more entries is not opened to look for a
    3MF package (the zip reader then refuses it).
    """
    name = _content_format(blob, max_members)
    if name in LOADERS and _zip_appended(blob, max_members):
        return "mesh+zip"
    return name


def _content_format(blob: Blob, max_members: int | None = None) -> str:
    """:func:`sniff` without its last step, the zip-appended test of a mesh: what the first
    bytes say. Enough for :func:`non_model_kind`, for which a mesh is scanned whether or not a
    zip follows it (measured: the test re-opened every small STL of a batch scan's folder walk
    in the parent and read up to 64 kB of its tail: ``non_model_kind`` of a small STL 77 -> 25 us)."""
    head = blob.head(HEAD_BYTES)
    if not head and not getattr(blob, "is_folder", False):  # a folder has no bytes of its own
        return "empty"
    probe = Probe(blob, head, max_members, sniff)
    for sniffer in SNIFFERS:
        name = sniffer.test(probe)
        if name is not None:
            return name
    return "unknown"  # not reached: the last text sniffer always answers, and others are not text


def _zip_appended(blob: Blob, max_members: int | None) -> bool:
    """Does a mesh end in a zip directory that zipfile opens, listing at least one entry?

    unzip, 7-Zip and zipfile all find a zip appended to other bytes (they read the directory
    at the end), while a mesh reader reads the mesh: an OBJ, ASCII STL, OFF or PLY of a decoy
    with a zip of the part appended loaded as the decoy and came out ``clear``. Read as the zip
    instead, the part as a binary STL with a zip of a decoy appended came out ``clear`` the
    other way round. Such a file is ``mesh+zip`` (``UNSUPPORTED``: unscannable, with the
    reason), not either reading. A directory listing more than ``max_members`` entries counts
    as a zip here (the zip reader would refuse it).
    """
    size = blob.size
    tail_len = min(size, _EOCD_SEARCH)
    with blob.open() as fh:
        fh.seek(size - tail_len)
        if _EOCD not in fh.read(tail_len):
            return False
    if max_members is not None and zip_has_more_entries_than(blob, max_members):
        return True
    try:
        with blob.open() as fh, zipfile.ZipFile(fh) as zf:
            return bool(zf.infolist())
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError, NotImplementedError, RuntimeError):
        return False


def is_non_model(fmt: str) -> bool:
    """Recognised by content as not a model (a folder walk skips it; an archive lists it)."""
    return fmt in NON_MODEL


def describe(fmt: str) -> str:
    """A few words for a sniffed format name, for messages."""
    return UNSUPPORTED.get(fmt) or NON_MODEL.get(fmt) or ("zero-byte file" if fmt == "empty" else fmt)


_EOCD = b"PK\x05\x06"
_EOCD_SEARCH = 22 + 0xFFFF  # the end record and the longest comment: where zipfile looks
_CONTAINER_MAGIC = (*ZIP_MAGIC, GZIP_MAGIC, BZ2_MAGIC)


def non_model_kind(blob: Blob) -> str | None:
    """What a folder walk may skip: the ``NON_MODEL`` name of a blob recognised by content as
    not a model, ``empty`` for a zero-byte file (nothing can hide in it), or None when it must
    be scanned (a model, a container, a format meshscan cannot read, unknown bytes)."""
    head = blob.head(HEAD_BYTES)
    if not head:
        return "empty"
    if head.startswith(_CONTAINER_MAGIC):
        return None  # archives are always opened (the scan reads their directory, not this walk)
    fmt = _content_format(blob)  # a mesh with a zip appended is scanned (and unscannable) either way
    if image_trailer_at(blob, fmt) is not None and _hides_something(blob, fmt):
        return None  # a model after its end is read (scanner/formats/_hidden.py)
    return fmt if fmt in NON_MODEL else None


def _hides_something(blob: Blob, fmt: str) -> bool:
    """Do the bytes after an image's end sniff as anything but text, an image or unknown bytes?"""
    at = image_trailer_at(blob, fmt)
    if at is None or blob.size - at < MIN_HIDDEN_BYTES:
        return False
    with blob.open() as fh:
        fh.seek(at)
        trailer = fh.read()
    return sniff(BytesBlob(blob.name, trailer)) not in {*NON_MODEL, "unknown", "empty"}
