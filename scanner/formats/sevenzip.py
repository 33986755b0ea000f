"""7-Zip archives, through ``py7zr`` (the optional ``compress`` extra).

Members are read as zip members are (:mod:`scanner.formats.archive`): each counts against the
member limit before anything is decompressed, names are checked like zip names (no absolute
paths or ``..``), links are not followed, and every member is sniffed and read like an upload,
one nesting level down. Decompressed bytes are capped as they are written - at the upload's
remaining byte budget and ``max_ratio`` times the archive's size, the sizes in the archive's
header never trusted - so a bomb stops at the cap, not after it is in memory.

An archive with encrypted members (or an encrypted header: then not even the names can be
read) is ``encrypted``. Without ``py7zr``, 7z is still recognised and reported
``unsupported-format`` with the install hint.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from types import ModuleType

from scanner.errors import (
    CORRUPT,
    EMPTY,
    ENCRYPTED,
    TRUNCATED,
    UNSAFE_PATH,
    UNSUPPORTED_FORMAT,
    UnreadableInput,
)
from scanner.formats._probe import Probe
from scanner.formats.archive import check_member_path, over_budget, read_member_bytes
from scanner.formats.base import Format, LoadContext, MemberResult, Sniffer
from scanner.formats.blob import Blob

SEVENZIP_MAGIC = b"7z\xbc\xaf\x27\x1c"
_START_HEADER = struct.Struct("<8sIQQI")  # magic + version, CRC, next header offset and size, CRC
INSTALL_HINT = "7-Zip archive: reading it needs the optional extra (pip install 'meshscan[compress]')"


def py7zr_module() -> ModuleType:
    """``py7zr``, or ``unsupported-format`` naming the extra to install."""
    try:
        import py7zr
    except ImportError:
        raise UnreadableInput(UNSUPPORTED_FORMAT, INSTALL_HINT) from None
    return py7zr


class _Budget:
    """Bytes written so far across the archive's members, refused past the cap."""

    def __init__(self, compressed_size: int, ctx: LoadContext) -> None:
        self.by_ratio = int(max(compressed_size, 1) * ctx.limits.max_ratio)
        self.by_bytes = ctx.remaining_bytes()
        self.cap = min(self.by_ratio, self.by_bytes)
        self.total = 0
        self.ctx = ctx

    def take(self, n: int) -> None:
        self.total += n
        if self.total > self.cap:
            raise over_budget(self.by_ratio, self.by_bytes, self.ctx)


class _CappedWriter:
    """What py7zr writes one member into (its ``Py7zIO`` interface), counted as it comes."""

    def __init__(self, budget: _Budget) -> None:
        self.budget = budget
        self.buffer = io.BytesIO()

    def write(self, s: bytes | bytearray) -> int:
        self.budget.take(len(s))
        return self.buffer.write(s)

    def read(self, size: int | None = None) -> bytes:
        return self.buffer.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.buffer.seek(offset, whence)

    def flush(self) -> None:
        return None

    def size(self) -> int:
        return self.buffer.getbuffer().nbytes

    def close(self) -> None:
        return None


class _Factory:
    """py7zr's ``WriterFactory``: one capped writer per member name."""

    def __init__(self, budget: _Budget) -> None:
        self.budget = budget
        self.products: dict[str, _CappedWriter] = {}

    def create(self, filename: str) -> _CappedWriter:
        self.products[filename] = writer = _CappedWriter(self.budget)
        return writer


def _open(py7zr: ModuleType, raw: io.BufferedIOBase, max_extract_size: int):
    """The archive, its header read (py7zr caps a compressed header at 256 MB decoded)."""
    try:
        return py7zr.SevenZipFile(raw, mode="r", max_extract_size=max_extract_size)
    except py7zr.exceptions.PasswordRequired:
        raise UnreadableInput(ENCRYPTED, "7z archive with an encrypted header") from None
    except EOFError as exc:
        raise UnreadableInput(TRUNCATED, f"7z: {exc}") from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - py7zr and its codecs (lzma, zstd, ppmd, ...) raise many kinds
        raise UnreadableInput(CORRUPT, f"7z: {type(exc).__name__}: {exc}") from None


def _check_tail(blob: Blob) -> None:
    """The archive ends where its start header says (after the next header); bytes past that
    which are not zero padding make it ``corrupt``: py7zr never reads them, so a model
    appended to a benign archive would go unread and the upload come out ``clear``."""
    head = blob.head(_START_HEADER.size)
    if len(head) < _START_HEADER.size:
        raise UnreadableInput(TRUNCATED, "7z start header cut short")
    _magic, _crc, offset, size, _next_crc = _START_HEADER.unpack(head)
    end = _START_HEADER.size + offset + size
    if end >= blob.size:
        return  # a short file is for py7zr to judge (truncated or corrupt)
    with blob.open() as raw:
        raw.seek(end)
        while chunk := raw.read(1 << 20):
            if chunk.strip(b"\0"):
                raise UnreadableInput(CORRUPT, f"bytes from offset {end} after the end of the 7z archive")


def iter_7z(blob: Blob, ctx: LoadContext) -> Iterator[MemberResult]:
    """Every member of the archive, read like an upload; a damaged member is the archive's error."""
    py7zr = py7zr_module()
    ctx = ctx.nested()
    _check_tail(blob)
    budget = _Budget(blob.size, ctx)
    with blob.open() as raw:
        archive = _open(py7zr, raw, budget.cap + 1)
        with archive:
            yield from _members(py7zr, archive, budget, ctx)


def _members(py7zr: ModuleType, archive, budget: _Budget, ctx: LoadContext) -> Iterator[MemberResult]:
    try:
        infos = [i for i in archive.list() if not i.is_directory]
        encrypted = archive.needs_password()
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - as in _open
        raise UnreadableInput(CORRUPT, f"7z: {type(exc).__name__}: {exc}") from None
    if not infos:
        raise UnreadableInput(EMPTY, "archive holds no files")
    if encrypted:
        raise UnreadableInput(ENCRYPTED, "password-protected 7z archive")
    wanted, refused = [], []
    for info in infos:
        ctx.count_member()
        try:
            check_member_path(info.filename)
            if getattr(info, "is_symlink", False):
                raise UnreadableInput(UNSAFE_PATH, "links and devices are not read")
            wanted.append(info.filename)
        except UnreadableInput as err:
            refused.append(MemberResult(info.filename, "", error=err))
    yield from refused
    if not wanted:
        return
    factory = _Factory(budget)
    try:
        archive.extract(targets=wanted, factory=factory)
    except UnreadableInput:
        raise
    except py7zr.exceptions.PasswordRequired:
        raise UnreadableInput(ENCRYPTED, "password-protected 7z archive") from None
    except py7zr.exceptions.DecompressionBombError:  # members not written to us (skipped ones) count too
        raise over_budget(budget.by_ratio, budget.by_bytes, ctx) from None
    except EOFError as exc:
        raise UnreadableInput(TRUNCATED, f"7z data ends early: {exc}") from None
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - as in _open
        raise UnreadableInput(CORRUPT, f"cannot decompress 7z: {type(exc).__name__}: {exc}") from None
    ctx.spend(budget.total)
    for name in wanted:
        writer = factory.products.get(name)
        if writer is None:
            yield MemberResult(name, "", error=UnreadableInput(TRUNCATED, "7z member was not extracted"))
            continue
        yield from read_member_bytes(name, writer.buffer.getvalue(), ctx)


def _sniff(p: Probe) -> str | None:
    return "7z" if p.head.startswith(SEVENZIP_MAGIC) else None


FORMATS = (
    Format(
        "7z",
        "7z",
        74,
        "with `meshscan[compress]`: members through the same member, size, ratio and depth limits as "
        "zip; encrypted archives are `encrypted`; without it recognised and reported "
        "`unsupported-format` (as RAR always is)",
        container=iter_7z,
    ),
)
SNIFFERS = (Sniffer(115, _sniff, frozenset({"7z"})),)
