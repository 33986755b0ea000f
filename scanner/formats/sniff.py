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

from scanner.formats._probe import HEAD_BYTES, Probe
from scanner.formats.archive import BZ2_MAGIC, GZIP_MAGIC, ZIP_MAGIC
from scanner.formats.blob import Blob
from scanner.formats.others import NON_MODEL, UNSUPPORTED
from scanner.formats.registry import SNIFFERS

__all__ = ["HEAD_BYTES", "NON_MODEL", "UNSUPPORTED", "describe", "is_non_model", "non_model_kind", "sniff"]


def sniff(blob: Blob, max_members: int | None = None) -> str:
    """Return a format name: of the registry, of ``UNSUPPORTED``, of ``NON_MODEL``, or ``empty``.

    ``max_members``: a zip whose directory lists more entries is not opened to look for a
    3MF package (the zip reader then refuses it).
    """
    head = blob.head(HEAD_BYTES)
    if not head:
        return "empty"
    probe = Probe(blob, head, max_members, sniff)
    for sniffer in SNIFFERS:
        name = sniffer.test(probe)
        if name is not None:
            return name
    return "unknown"  # not reached: the last text sniffer always answers, and others are not text


def is_non_model(fmt: str) -> bool:
    """Recognised by content as not a model (a folder walk skips it; an archive lists it)."""
    return fmt in NON_MODEL


def describe(fmt: str) -> str:
    """A few words for a sniffed format name, for messages."""
    return UNSUPPORTED.get(fmt) or NON_MODEL.get(fmt) or ("zero-byte file" if fmt == "empty" else fmt)


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
    fmt = sniff(blob)
    return fmt if fmt in NON_MODEL else None
