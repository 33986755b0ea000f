"""A local folder read as one upload: its files are the members, as an archive's are.

Why: a part cut into pieces reassembles in the slicer whether the pieces travel as members of
one archive or as separate files of one project (a post, a listing, a user's batch). A
platform that stores a project's files one by one scans each alone, and a piece alone is
far from the signature: measured with ``bench/evasion.py``'s proxies (seed 0), a part cut in
4 and posted as 4 files gets at least one piece flagged in 19 of 24 projects and 34 of 96
pieces flagged, where the same pieces in one zip are all flagged (the pieces read together,
:func:`scanner.pipeline.scan_one`). ``meshscan scan --together FOLDER`` and
``Scanner.scan(folder)`` read a folder this way.

What a folder member is: every file under it, recursively, in sorted order, named by its path
relative to the folder (``parts/a.stl``); an archive or 3MF among them is read like any
member, its own members named under it. The archive limits hold for the folder as a whole:
``max_members`` files and members, ``max_uncompressed_bytes`` bytes, ``max_depth`` levels
(the folder is the first), each file at most ``max_file_bytes``. Nothing is skipped by name
(dot-files too, as the folder walk), and nothing outside the folder is read: a symbolic link
(to a file or a folder) and anything that is not a regular file is a member that cannot be
read (``unsafe-path``), so the upload is never ``clear``.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from typing import BinaryIO

from scanner.errors import EMPTY, IO_ERROR, UNSAFE_PATH, UnreadableInput
from scanner.formats._probe import Probe
from scanner.formats.base import Format, LoadContext, MemberResult, Sniffer
from scanner.formats.blob import FileBlob


class FolderBlob:
    """A local folder standing where an upload's blob does: it has no bytes of its own
    (``size`` 0, no head); :func:`iter_folder` reads the files under it."""

    is_folder = True
    """What :func:`scanner.formats.sniff.sniff` asks before calling an empty blob empty."""

    def __init__(self, path: str, max_file_bytes: int | None = None) -> None:
        self.path = self.name = path
        self.size = 0
        self.max_file_bytes = max_file_bytes
        """Files larger are named by their size in the manifest, not hashed: reading them is
        refused anyway (``limit:bytes``), and hashing gigabytes would only spend the time limit."""

    def head(self, n: int) -> bytes:
        return b""

    def open(self) -> BinaryIO:
        raise UnreadableInput(IO_ERROR, "a folder has no bytes of its own: its files are read one by one")

    def read(self) -> bytes:
        return self.open().read()

    def entries(self) -> Iterator[tuple[str, str, os.stat_result]]:
        """(relative name, path, lstat) of everything under the folder, sorted, never
        following a symbolic link; folders themselves are walked, not listed. A folder that
        cannot be listed stops the upload (``io-error``): ``os.walk`` would skip it silently,
        and a folder read in part is never ``clear``."""

        def unlisted(exc: OSError) -> None:
            where = os.path.relpath(exc.filename or self.path, self.path).replace(os.sep, "/")
            raise UnreadableInput(IO_ERROR, f"cannot list {where}: {exc.strerror}")

        for dirpath, dirnames, filenames in os.walk(self.path, onerror=unlisted, followlinks=False):
            dirnames.sort()
            links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
            dirnames[:] = [d for d in dirnames if d not in links]
            for name in sorted(filenames + links):
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, self.path).replace(os.sep, "/")
                try:
                    yield rel, path, os.lstat(path)
                except OSError as exc:
                    raise UnreadableInput(IO_ERROR, f"cannot stat {rel}: {exc.strerror}") from None

    def manifest_sha256(self) -> str | None:
        """The folder's identity: sha256 over each regular file's relative name and sha256,
        in order (None when a file cannot be read). The same files under the same names give
        the same value wherever the folder lies."""
        digest = hashlib.sha256()
        try:
            for rel, path, st in self.entries():
                if not stat.S_ISREG(st.st_mode):
                    digest.update(f"{rel}\0{stat.S_IFMT(st.st_mode)}\n".encode())
                    continue
                if self.max_file_bytes is not None and st.st_size > self.max_file_bytes:
                    digest.update(f"{rel}\0size {st.st_size}\n".encode())
                    continue
                with open(path, "rb") as fh:
                    digest.update(f"{rel}\0{hashlib.file_digest(fh, 'sha256').hexdigest()}\n".encode())
        except (OSError, UnreadableInput):
            return None
        return digest.hexdigest()


class _FolderFile(FileBlob):
    """A file of the folder, opened without following a link: one swapped in for the file
    after the walk saw a regular file is refused (``unsafe-path``), not read."""

    def open(self) -> BinaryIO:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as exc:
            if os.path.islink(self.path):
                raise UnreadableInput(UNSAFE_PATH, "a symbolic link: not followed") from None
            raise UnreadableInput(IO_ERROR, f"cannot open: {exc.strerror}") from None
        return os.fdopen(fd, "rb")


def iter_folder(blob: FolderBlob, ctx: LoadContext) -> Iterator[MemberResult]:
    """Every mesh of every file under the folder (:class:`FolderBlob`), as archive members."""
    ctx = ctx.nested()
    seen = False
    for rel, path, st in blob.entries():
        seen = True
        ctx.count_member()
        if stat.S_ISLNK(st.st_mode):
            yield MemberResult(rel, "", error=UnreadableInput(UNSAFE_PATH, "a symbolic link: not followed"))
            continue
        if not stat.S_ISREG(st.st_mode):
            yield MemberResult(rel, "", error=UnreadableInput(UNSAFE_PATH, "not a regular file"))
            continue
        try:
            member = _FolderFile(path, ctx.limits.max_file_bytes)
        except UnreadableInput as err:
            yield MemberResult(rel, "", error=err)
            continue
        ctx.spend(member.size)  # past the folder's total the upload stops here, never clear
        for result in ctx.read(member):
            result.member = rel if result.member is None else f"{rel}/{result.member}"
            yield result
    if not seen:  # a result, not silence: an empty folder is unscannable, not clean
        raise UnreadableInput(EMPTY, "folder holds no files")


FORMATS = (
    Format(
        "folder",
        "Folder (`scan --together`)",
        90,
        "a local folder as one upload: every file under it is a member, read together like an archive's",
        container=iter_folder,
    ),
)


def _sniff(p: Probe) -> str | None:
    """A folder is known by what it is on disk, never from bytes (it has none)."""
    return "folder" if isinstance(p.blob, FolderBlob) else None


SNIFFERS = (Sniffer(10, _sniff, frozenset({"folder"})),)
