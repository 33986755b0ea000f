"""Bring a bundle home: a local path or any fsspec URL (https, s3, ...), copied to a temporary
file with a size cap, so a hostile or broken server cannot fill the disk or memory, and a
download cut short is caught (the bundle then fails to parse: ``malformed``) rather than half
applied."""

from __future__ import annotations

import os
import tempfile

from scanner.exchange import errors as why
from scanner.exchange.errors import Refused
from scanner.util import CHUNK, is_url


def _open(source: str):  # noqa: ANN202 - a binary file object
    if not is_url(source):
        return open(source, "rb")  # noqa: SIM115 - closed by the caller's with
    try:
        import fsspec
    except ImportError:
        raise Refused(why.FETCH_FAILED, "reading a URL needs fsspec: pip install 'meshscan[share]'") from None
    return fsspec.open(source, "rb").open()


def fetch(source: str, max_bytes: int) -> bytes:
    """The bytes of ``source``, read through a temporary file; :class:`Refused` with
    ``too-large`` past ``max_bytes`` and ``fetch-failed`` when it cannot be read."""
    with tempfile.TemporaryFile(prefix="meshscan-bundle-") as tmp:
        try:
            with _open(source) as fh:
                copied = 0
                while chunk := fh.read(CHUNK):
                    copied += len(chunk)
                    if copied > max_bytes:
                        raise Refused(why.TOO_LARGE, f"{source} is over the cap of {max_bytes} bytes; not read further")
                    tmp.write(chunk)
        except Refused:
            raise
        except Exception as exc:  # noqa: BLE001 - fsspec backends raise their own kinds
            raise Refused(why.FETCH_FAILED, f"cannot read {source}: {type(exc).__name__}: {exc}") from None
        tmp.flush()
        os.fsync(tmp.fileno())
        tmp.seek(0)
        return tmp.read()
