"""Quarantine: put a flagged upload aside for people to decide, never destroying it.

* keeps the path relative to the scanned root (so two ``a.stl`` from different folders do
  not collide), and never overwrites: a taken name gets ``.1``, ``.2``, ... appended;
* moves atomically: ``rename`` on the same filesystem; across filesystems copy + fsync +
  rename into place + unlink the original (the original is removed only once the copy is
  durable);
* refuses a source that is a symlink (it could point out of the scanned tree);
* writes a sidecar ``<name>.meshscan.json`` holding the verdict(s).

**Never outside the quarantine.** Whoever can write into the quarantine folder (an earlier
quarantined archive unpacked by a reviewer, another tool, an attacker) may plant symlinks in
it. Every component below the quarantine root is therefore created and opened relative to its
parent's descriptor (``mkdir``/``open`` with ``dir_fd``, ``O_NOFOLLOW | O_DIRECTORY``), walking
from the root, and every file is created with ``O_CREAT | O_EXCL | O_NOFOLLOW`` or ``link`` (which
never follows the new name): nothing is followed below the root, with no window between a check
and its use. A link (dangling or not) on a file name is a taken name (``.1``, ``.2``, ...); a
link, or anything that is not a directory, on a folder name is skipped the same way: the folder
``user`` becomes ``user.1``. The quarantine root itself is the operator's choice and is
followed if it is a symlink (``meshscan watch`` resolves it once at start-up).

:func:`quarantine_once` is the daemon's variant (``meshscan watch``): the same move, made
idempotent so that replaying an interrupted action after a crash finishes it instead of making
a second copy. It also refuses a file that resolves out of the watched tree, and one whose
content is no longer what was scanned.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path, PurePath

from scanner.util import CHUNK, file_sha256, sha256_chunks
from scanner.verdict import Verdict

SIDECAR = ".meshscan.json"
_TRIES = 100_000
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NOT_A_DIR = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)
"""What ``open(O_NOFOLLOW | O_DIRECTORY)`` says about a symlink (ELOOP; EMLINK on FreeBSD) or a
non-directory (ENOTDIR)."""


class QuarantineError(Exception):
    pass


class ContentChanged(QuarantineError):
    """The file no longer holds the content that was scanned: its new content gets its own scan."""


class SourceGone(QuarantineError):
    """The file was deleted (or moved) by someone else before it could be quarantined."""


class _Folder:
    """One open directory inside the quarantine: every name is resolved against its descriptor,
    never followed if it is a link. ``path`` is for messages and return values only."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd, self.path = fd, path

    @classmethod
    def open(cls, dest: str | os.PathLike[str], folders: tuple[str, ...], create: bool = True) -> _Folder | None:
        """Open ``dest`` (followed if it is a symlink: the operator's choice), then each of
        ``folders`` below it without following links: a folder name held by a link or a file
        is skipped for ``name.1``, ``name.2``, ... Missing folders are created; without
        ``create``, a missing one gives None (nothing can have been quarantined there)."""
        root = Path(dest)
        try:
            if create:
                os.makedirs(root, exist_ok=True)
            fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            if not create:
                return None
            raise QuarantineError(f"cannot open the quarantine folder {root}: it does not exist") from None
        except OSError as exc:
            raise QuarantineError(f"cannot open the quarantine folder {root}: {exc.strerror or exc}") from None
        folder: _Folder | None = cls(fd, root)
        try:
            for name in folders:
                folder = folder._enter(name, create)
                if folder is None:
                    return None
        except BaseException:
            folder.close()
            raise
        return folder

    def _enter(self, name: str, create: bool = True) -> _Folder | None:
        """The sub-folder ``name`` (or the first ``name.N`` not held by a link or a file),
        created if missing (without ``create``: None); closes self either way."""
        for n in range(_TRIES):
            candidate = name if n == 0 else f"{name}.{n}"
            if create:
                try:
                    os.mkdir(candidate, 0o777, dir_fd=self.fd)
                except FileExistsError:
                    pass  # a folder of earlier quarantines (fine), or a link / file (skipped below)
                except OSError as exc:
                    raise QuarantineError(f"cannot create {self.path / candidate}: {exc.strerror or exc}") from None
            try:
                fd = os.open(candidate, _DIR_FLAGS, dir_fd=self.fd)
            except FileNotFoundError:
                if not create:
                    self.close()
                    return None
                continue  # removed between mkdir and open: someone else is busy here, move on
            except OSError as exc:
                if exc.errno in _NOT_A_DIR:
                    continue  # a symlink (dangling or not) or a file: never followed, never written into
                raise QuarantineError(f"cannot open {self.path / candidate}: {exc.strerror or exc}") from None
            sub = _Folder(fd, self.path / candidate)
            self.close()
            return sub
        raise QuarantineError(f"no free folder name for {self.path / name}")

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> _Folder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- names
    def lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def taken(self, name: str) -> bool:
        """Anything holds the name: a file, a folder, a link (even dangling), a FIFO."""
        return self.lstat(name) is not None

    def free_name(self, name: str) -> str:
        """``name``, or the first ``name.N``, with neither it nor its sidecar name taken."""
        for n in range(_TRIES):
            candidate = name if n == 0 else f"{name}.{n}"
            if not self.taken(candidate) and not self.taken(candidate + SIDECAR):
                return candidate
        raise QuarantineError(f"no free name for {self.path / name}")

    @contextlib.contextmanager
    def _regular(self, name: str) -> Iterator[int | None]:
        """A descriptor open on ``name`` if it is a regular file (None for a link, FIFO,
        device, folder or a missing name): never follows a link, never blocks on a FIFO."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=self.fd)
        except OSError:
            yield None
            return
        try:
            yield fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
        finally:
            os.close(fd)

    def read_small(self, name: str, limit: int = 1 << 20) -> bytes | None:
        """A regular file's bytes (None for a link, FIFO, device, folder or a missing name)."""
        with self._regular(name) as fd:
            return None if fd is None else os.read(fd, limit)

    def sha256(self, name: str) -> str | None:
        with self._regular(name) as fd:
            if fd is None:
                return None
            return sha256_chunks(iter(lambda: os.read(fd, CHUNK), b""))

    def write_new(self, name: str, data: bytes) -> None:
        """Create ``name`` durably, complete or not at all, never over anything (a link
        included): written under a temporary name, then linked into place."""
        self._durably(name, data, lambda tmp: os.link(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd,
                                                      follow_symlinks=False))  # fmt: skip

    def rewrite(self, name: str, data: bytes) -> None:
        """Replace ``name`` (ours: a sidecar) with ``data`` atomically: written under a fresh
        temporary name, then renamed over it (a rename replaces a link, never follows it)."""
        self._durably(name, data, lambda tmp: os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd))

    def _durably(self, name: str, data: bytes, publish: Callable[[str], None]) -> None:
        """``data`` written and fsynced under a fresh temporary name beside ``name``, then
        ``publish``-ed (linked or renamed into place); the temporary name never outlives it."""
        tmp = _temp_name(name, "tmp")
        fd = os.open(tmp, _NEW_FILE, 0o666, dir_fd=self.fd)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            publish(tmp)
        finally:
            self.unlink(tmp)

    def unlink(self, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            pass

    def fsync(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError:
            pass

    def place(self, src: Path, name: str, move: bool) -> None:
        """Put ``src`` under ``name``: a hard link (same filesystem, when moving) or a durable
        copy. Raises FileExistsError when the name was taken meanwhile."""
        if move:
            try:
                os.link(src, name, dst_dir_fd=self.fd, follow_symlinks=False)  # atomic, never overwrites
                return
            except FileExistsError:
                raise
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP):
                    raise QuarantineError(f"cannot move {src}: {exc.strerror}") from None
        self.durable_copy(src, name)

    def durable_copy(self, src: Path, name: str) -> None:
        """Copy ``src`` under a temporary name, fsync, then link it into place (never overwriting)."""
        tmp = _temp_name(name, "partial")
        try:
            fin = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            raise QuarantineError(f"cannot read {src}: {exc.strerror or exc}") from None
        try:
            st = os.fstat(fin)
            fout = os.open(tmp, _NEW_FILE, 0o600, dir_fd=self.fd)
            try:
                try:
                    while chunk := os.read(fin, 1 << 20):
                        view = memoryview(chunk)
                        while view:
                            view = view[os.write(fout, view) :]
                    os.fchmod(fout, stat.S_IMODE(st.st_mode))
                    os.utime(fout, ns=(st.st_atime_ns, st.st_mtime_ns))
                    os.fsync(fout)
                finally:
                    os.close(fout)
            except BaseException:
                self.unlink(tmp)  # a failed copy (a full disk) must not keep its partial bytes
                raise
        finally:
            os.close(fin)
        try:
            os.link(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd, follow_symlinks=False)  # never overwrite
        finally:
            self.unlink(tmp)


def _temp_name(name: str, kind: str) -> str:
    """A fresh hidden name next to ``name``: never one somebody could have planted in advance
    (a link there would otherwise block the quarantine). An interrupted run leaves it behind,
    inside the quarantine."""
    return f".{name}.{secrets.token_hex(6)}.{kind}"


def _components(rel: PurePath) -> tuple[str, ...]:
    parts = tuple(p for p in rel.parts if p not in ("", "."))
    if not parts or any(p in ("..", "/") or "/" in p for p in parts):
        raise QuarantineError(f"cannot quarantine under the relative path {str(rel)!r}")
    return parts


def quarantine(path: str | os.PathLike[str], root: str | os.PathLike[str], dest: str | os.PathLike[str],
               verdicts: list[Verdict], move: bool) -> Path:  # fmt: skip
    """Move (or copy) ``path`` into ``dest`` keeping its path relative to ``root``.

    The sidecar is written first (it reserves the name), then the file is put next to it; a
    name taken meanwhile by anyone, a link included, moves on to the next free name."""
    src = Path(path)
    if src.is_symlink():
        raise QuarantineError(f"{src} is a symbolic link; not following it")
    try:
        rel = src.resolve().relative_to(Path(root).resolve())
    except ValueError:
        rel = Path(src.name)
    if str(rel) == ".":
        rel = Path(src.name)
    parts = _components(rel)
    doc = {"original_path": str(src), "action": "move" if move else "copy", "verdicts": [v.to_dict() for v in verdicts]}
    data = json.dumps(doc, indent=2).encode()
    with _Folder.open(dest, parts[:-1]) as folder:
        for _ in range(_TRIES):
            name = folder.free_name(parts[-1])
            try:
                folder.write_new(name + SIDECAR, data)
            except FileExistsError:
                continue  # taken since free_name looked: the next one
            try:
                folder.place(src, name, move)
            except FileExistsError:
                folder.unlink(name + SIDECAR)
                continue
            except BaseException:
                folder.unlink(name + SIDECAR)
                raise
            break
        else:
            raise QuarantineError(f"no free name for {folder.path / parts[-1]}")
        folder.fsync()
        target = folder.path / name
    if move:
        try:
            os.unlink(src)
        except FileNotFoundError:
            pass  # moved or deleted meanwhile; the quarantined copy stays
        except OSError as exc:
            raise QuarantineError(f"copied to {target}, but cannot remove {src}: {exc.strerror}") from None
    return target


def _sidecar(target: Path) -> Path:
    return Path(str(target) + SIDECAR)


def _reserved_by(folder: _Folder, base: str, action_id: str) -> str | None:
    """The name an earlier attempt of this action reserved (its sidecar names the action)."""
    for n in range(_TRIES):
        candidate = base if n == 0 else f"{base}.{n}"
        if not folder.taken(candidate + SIDECAR):
            if not folder.taken(candidate):
                return None
            continue
        data = folder.read_small(candidate + SIDECAR)  # a link or a FIFO reads as None: not ours
        try:
            if data is not None and json.loads(data).get("action_id") == action_id:
                return candidate
        except (ValueError, AttributeError):
            continue
    return None


def quarantine_once(path: str | os.PathLike[str], root: str | os.PathLike[str], dest: str | os.PathLike[str],
                    verdicts: list[Verdict], action_id: str, sha256: str | None) -> Path:  # fmt: skip
    """Move ``path`` into ``dest`` (keeping its path relative to ``root``), idempotently.

    Steps, each safe to interrupt: (1) reserve a free name by writing its sidecar, which
    records ``action_id``; (2) hard-link the file under that name (or, across filesystems,
    copy + fsync + link); (3) unlink the original. A replay finds the reservation by its
    ``action_id`` and completes whichever step is missing, so the file ends up in quarantine
    exactly once. The original is unlinked only when the quarantined copy is the same file or
    holds the same bytes. A reserved name found holding someone else's file is given up (our
    sidecar removed) for a new one.

    Raises :class:`ContentChanged` / :class:`SourceGone` when there is nothing (left) to move,
    and :class:`QuarantineError` for a symlink or a path resolving out of ``root``.
    """
    src = Path(os.path.abspath(path))
    root_abs = Path(os.path.abspath(root))
    try:
        rel = src.relative_to(root_abs)
    except ValueError:
        raise QuarantineError(f"{src} is not inside the watched folder {root_abs}") from None
    *folders, base = _components(rel)
    parts = tuple(folders)
    # the folder an earlier attempt used, if it exists: the walk is the same, so it is found again
    folder = _Folder.open(dest, parts, create=False)
    try:
        reserved = None if folder is None else _reserved_by(folder, base, action_id)
        if reserved is not None:
            done = _finish_replay(folder, src, reserved, sha256)
            if done is not None:
                earlier = json.loads(folder.read_small(reserved + SIDECAR) or b"{}")
                if earlier.get("state") != "moved":
                    _record_outcome(folder, reserved, earlier)
                return done
            if folder.taken(reserved):  # someone else's file took our reserved name: reserve anew
                folder.unlink(reserved + SIDECAR)
                reserved = None
        if src.is_symlink():
            raise QuarantineError(f"{src} is a symbolic link; not following it")
        if not src.exists():
            if reserved is not None:
                folder.unlink(reserved + SIDECAR)  # our own reservation; there is nothing to put under it
            raise SourceGone(f"{src} no longer exists")
        real = Path(os.path.realpath(src))
        if not real.is_relative_to(Path(os.path.realpath(root_abs))):
            raise QuarantineError(f"{src} resolves to {real}, outside the watched folder; not following it")
        if sha256 is not None and file_sha256(src) != sha256:
            if reserved is not None:
                folder.unlink(reserved + SIDECAR)
            raise ContentChanged(f"{src} changed since it was scanned")
        if folder is None:
            folder = _Folder.open(dest, parts)
        doc = {
            "original_path": str(src),
            "action": "move",
            "state": "intended",
            "action_id": action_id,
            "sha256": sha256,
            "verdicts": [v.to_dict() for v in verdicts],
        }
        name = reserved
        for _ in range(_TRIES):
            if name is None:
                name = folder.free_name(base)
                try:
                    folder.write_new(name + SIDECAR, json.dumps(doc, indent=2).encode())
                except FileExistsError:
                    name = None
                    continue
                folder.fsync()
            try:
                folder.place(src, name, move=True)
            except FileExistsError:  # taken after our reservation: give it up, reserve anew
                folder.unlink(name + SIDECAR)
                name = None
                continue
            break
        else:
            raise QuarantineError(f"no free name for {folder.path / base}")
        folder.fsync()
        os.unlink(src)
        _record_outcome(folder, name, doc)
        return folder.path / name
    finally:
        if folder is not None:
            folder.close()


def _record_outcome(folder: _Folder, name: str, doc: dict) -> None:
    """The sidecar said what was intended (written before the move, it reserves the name); now
    it says what happened. Best effort: the move is done and the daemon's journal records it,
    so a sidecar that cannot be rewritten (a disk filled by the copy) keeps saying "intended"."""
    try:
        folder.rewrite(name + SIDECAR, json.dumps({**doc, "state": "moved"}, indent=2).encode())
    except OSError:
        pass


def _finish_replay(folder: _Folder, src: Path, name: str, sha256: str | None) -> Path | None:
    """When the file reserved as ``name`` by an earlier attempt is in place and is ours (the same
    file, or the scanned bytes), finish the move: unlink the original if it is that file or
    holds those bytes. None when there is nothing (of ours) under the name."""
    held = folder.lstat(name)
    if held is None:
        return None  # reserved, not yet moved: the caller completes it
    src_st = _lstat(src)
    same_inode = src_st is not None and (src_st.st_dev, src_st.st_ino) == (held.st_dev, held.st_ino)
    ours = same_inode or sha256 is None or (stat.S_ISREG(held.st_mode) and folder.sha256(name) == sha256)
    if not ours:
        return None
    if src_st is not None and stat.S_ISREG(src_st.st_mode) and (same_inode or file_sha256(src) == sha256):
        os.unlink(src)  # the quarantined copy is complete: finish the move
    return folder.path / name


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
