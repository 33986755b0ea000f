"""PrusaSlicer's binary G-code (``.bgcode``, libbgcode's documented format, version 1).

A file header (``GCDE``, version, checksum type) and then blocks, each a header (type,
compression, sizes), parameters, data and an optional CRC32. The metadata and thumbnail
blocks are skipped (their checksums still checked); the G-code blocks are decompressed
(none, deflate, or heatshrink with a window of 2^11 or 2^12), decoded (plain or MeatPack,
with or without comment lines) and joined into the G-code text, which is then read exactly
like a text G-code upload (:mod:`scanner.formats.gcode`): a part sliced to ``.bgcode`` must
match its enrolled STL as its ``.gcode`` does.

Nothing declared is trusted: a block's uncompressed size must be what its data decompresses
to, the total is bounded by the upload's byte budget (``remaining_bytes``), and bytes after
the last block, an unknown block type, compression or encoding, or a wrong checksum make the
upload ``corrupt`` (the printer would refuse such a file; meshscan will not call it ``clear``).

Heatshrink, which PrusaSlicer uses by default, needs the ``compress`` extra
(``heatshrink2``); without it such a file is ``unsupported-format`` with the install hint.
"""

from __future__ import annotations

import struct
import zlib
from types import ModuleType

from scanner.errors import CORRUPT, LIMIT_BYTES, TRUNCATED, UNSUPPORTED_FORMAT, UnreadableInput
from scanner.formats._probe import Probe
from scanner.formats.base import Format, LoadContext, Sniffer
from scanner.formats.blob import Blob, BytesBlob
from scanner.formats.gcode import load_gcode
from scanner.mesh import Mesh

MAGIC = b"GCDE"
VERSION = 1
GCODE_BLOCK = 1
BLOCK_TYPES = {0: "file metadata", 1: "gcode", 2: "slicer metadata", 3: "printer metadata", 4: "print metadata",
               5: "thumbnail"}  # fmt: skip
_PARAM_BYTES = {5: 6}  # thumbnail: format, width, height; every other block: its encoding (2 bytes)
_HEATSHRINK = {2: 11, 3: 12}  # compression code -> window size (log2); lookahead 4 for both
INSTALL_HINT = (
    "binary G-code compressed with heatshrink: reading it needs the optional extra (pip install 'meshscan[compress]')"
)


def heatshrink_module() -> ModuleType:
    """``heatshrink2``, or ``unsupported-format`` naming the extra to install."""
    try:
        import heatshrink2
    except ImportError:
        raise UnreadableInput(UNSUPPORTED_FORMAT, INSTALL_HINT) from None
    return heatshrink2


def _decompress(code: int, data: bytes, size: int) -> bytes:
    """A block's data, decompressed to exactly its declared size (never more is produced)."""
    if code == 0:
        return data
    if code == 1:
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(data, size + 1)
        except zlib.error as exc:
            raise UnreadableInput(CORRUPT, f"binary G-code block: {exc}") from None
    elif code in _HEATSHRINK:
        # LZSS with 4-bit lengths: at most 16 bytes out per 9 bits in, so the output is
        # bounded by the (already size-checked) input; no bomb can come out of it
        out = heatshrink_module().decompress(data, window_sz2=_HEATSHRINK[code], lookahead_sz2=4)
    else:
        raise UnreadableInput(CORRUPT, f"binary G-code block with unknown compression {code}")
    if len(out) != size:
        raise UnreadableInput(CORRUPT, f"binary G-code block decompresses to {len(out)} bytes, declared {size}")
    return out


def read_gcode_text(data: bytes, budget: int) -> bytes:
    """The G-code text of a binary G-code file (every G-code block, in order)."""
    if len(data) < 10 or data[:4] != MAGIC:
        raise UnreadableInput(CORRUPT, "not a binary G-code file header")
    version, checksum = struct.unpack_from("<IH", data, 4)
    if version != VERSION or checksum not in (0, 1):
        raise UnreadableInput(CORRUPT, f"binary G-code version {version}, checksum type {checksum} not known")
    pos, parts, total = 10, [], 0
    while pos < len(data):
        if pos + 8 > len(data):
            raise UnreadableInput(TRUNCATED, "binary G-code block header cut short")
        kind, comp, size = struct.unpack_from("<HHI", data, pos)
        head = 8 if comp == 0 else 12
        if kind not in BLOCK_TYPES or pos + head > len(data):
            raise UnreadableInput(CORRUPT, f"binary G-code block of unknown type {kind} at byte {pos}")
        stored = size if comp == 0 else struct.unpack_from("<I", data, pos + 8)[0]
        params = _PARAM_BYTES.get(kind, 2)
        end = pos + head + params + stored
        if end + 4 * checksum > len(data):
            raise UnreadableInput(TRUNCATED, f"binary G-code {BLOCK_TYPES[kind]} block runs past the end")
        if checksum and zlib.crc32(data[pos:end]) != struct.unpack_from("<I", data, end)[0]:
            raise UnreadableInput(CORRUPT, f"binary G-code {BLOCK_TYPES[kind]} block fails its CRC32")
        if kind == GCODE_BLOCK:
            (encoding,) = struct.unpack_from("<H", data, pos + head)
            total += size
            if total > budget:
                raise UnreadableInput(LIMIT_BYTES, "binary G-code decodes past the upload's byte limit")
            block = _decompress(comp, data[pos + head + params : end], size)
            parts.append(decode_block(block, encoding))
        pos = end + 4 * checksum
    if not parts:
        raise UnreadableInput(CORRUPT, "binary G-code without a G-code block")
    return b"".join(parts)


def decode_block(block: bytes, encoding: int) -> bytes:
    """A G-code block's text: as stored (0), or MeatPack-decoded (1; 2 keeps comments)."""
    if encoding == 0:
        return block
    if encoding in (1, 2):
        return meatpack_decode(block)
    raise UnreadableInput(CORRUPT, f"binary G-code block with unknown encoding {encoding}")


_SIGNAL = 0xFF
_ENABLE, _DISABLE, _RESET, _NO_SPACES, _SPACES = 251, 250, 249, 247, 246
_NIBBLE = b"0123456789. \nGX"


def _nibble_table(no_spaces: bool) -> list[int]:
    chars = _NIBBLE.replace(b" ", b"E") if no_spaces else _NIBBLE
    return list(chars) + [-1]  # 0b1111: a full byte follows


def meatpack_decode(src: bytes) -> bytes:
    """Undo MeatPack (libbgcode's ``unbinarize``; G-code words need no spaces to be read).

    In packing mode each byte holds two 4-bit characters (low nibble first) from a 15-letter
    alphabet; a nibble of ``1111`` says the character comes as a whole byte next. A newline in
    the low nibble ends the pair. ``FF FF cmd`` switches packing, and space-less mode (where
    the space code means ``E``), on and off; outside packing bytes are copied as they are.
    """
    unpacker = _Unpacker()
    signals, command = 0, False
    for c in src:
        if c == _SIGNAL:
            if signals:
                command, signals = True, 0
            else:
                signals = 1
        elif command:
            command = False
            unpacker.command(c)
        else:
            if signals:  # a lone FF is data: a pair whose two characters both come whole
                signals = 0
                unpacker.take(_SIGNAL)
            unpacker.take(c)
    return bytes(unpacker.out)


class _Unpacker:
    """The receiving half of MeatPack: one byte at a time, as the printer's firmware does."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.table = _nibble_table(False)
        self.packing = False
        self.queued = 0  # characters still to come as whole bytes
        self.pending = -1  # a packed character to write after the next whole one

    def command(self, c: int) -> None:
        if c == _ENABLE:
            self.packing = True
        elif c in (_DISABLE, _RESET):
            self.packing = False
        elif c in (_NO_SPACES, _SPACES):
            self.table = _nibble_table(c == _NO_SPACES)

    def take(self, c: int) -> None:
        out = self.out
        if not self.packing:
            out.append(c)
        elif self.queued:
            out.append(c)
            self.queued -= 1
            if self.pending >= 0:
                out.append(self.pending)
                self.pending = -1
        else:
            low, high = self.table[c & 0xF], self.table[c >> 4]
            if low < 0:
                self.queued += 1 if high >= 0 else 2
                self.pending = high
            else:
                out.append(low)
                if low != 10:
                    if high < 0:
                        self.queued += 1
                    else:
                        out.append(high)


def load_bgcode(blob: Blob, ctx: LoadContext) -> Mesh:
    """Decode to G-code text within the byte budget, then rebuild the printed solid."""
    text = read_gcode_text(blob.read(), ctx.remaining_bytes())
    ctx.spend(len(text))
    return load_gcode(BytesBlob(blob.name, text), ctx, fmt="bgcode")


def _sniff(p: Probe) -> str | None:
    return "bgcode" if p.head.startswith(MAGIC) else None


FORMATS = (
    Format(
        "bgcode",
        "binary G-code",
        56,
        "PrusaSlicer's `.bgcode` (version 1; CRC32 checked; deflate, or heatshrink with `meshscan[compress]`; "
        "MeatPack decoded): read as the G-code it holds",
        loader=load_bgcode,
    ),
)
SNIFFERS = (Sniffer(405, _sniff, frozenset({"bgcode"})),)
