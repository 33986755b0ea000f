"""Quarantine: put a flagged upload aside for people to decide, never destroying it.

* keeps the path relative to the scanned root (so two ``a.stl`` from different folders do
  not collide), and never overwrites: a taken name gets ``.1``, ``.2``, ... appended;
* moves atomically: ``rename`` on the same filesystem; across filesystems copy + fsync +
  rename into place + unlink the original (the original is removed only once the copy is
  durable);
* refuses a source that is a symlink (it could point out of the scanned tree);
* writes a sidecar ``<name>.meshscan.json`` holding the verdict(s).

:func:`quarantine_once` is the daemon's variant (``meshscan watch``): the same move, made
idempotent so that replaying an interrupted action after a crash finishes it instead of making
a second copy. It also refuses a file that resolves out of the watched tree, and one whose
content is no longer what was scanned.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

from scanner.verdict import Verdict


class QuarantineError(Exception):
    pass


def _free_name(target: Path) -> Path:
    if not target.exists() and not Path(str(target) + ".meshscan.json").exists():
        return target
    for n in range(1, 100_000):
        candidate = target.with_name(f"{target.name}.{n}")
        if not candidate.exists():
            return candidate
    raise QuarantineError(f"no free name for {target}")


def _durable_copy(src: Path, dst: Path, replace_stale: bool = False) -> None:
    tmp = dst.with_name(f".{dst.name}.partial")
    if replace_stale and tmp.exists():
        os.unlink(tmp)  # our own unfinished copy from an interrupted run; the original is intact
    with open(src, "rb") as fin, open(tmp, "xb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
        fout.flush()
        os.fsync(fout.fileno())
    shutil.copystat(src, tmp)
    os.link(tmp, dst)  # fails if dst appeared meanwhile: never overwrite
    os.unlink(tmp)


def quarantine(path: str | os.PathLike[str], root: str | os.PathLike[str], dest: str | os.PathLike[str],
               verdicts: list[Verdict], move: bool) -> Path:  # fmt: skip
    """Move (or copy) ``path`` into ``dest`` keeping its path relative to ``root``."""
    src = Path(path)
    if src.is_symlink():
        raise QuarantineError(f"{src} is a symbolic link; not following it")
    try:
        rel = src.resolve().relative_to(Path(root).resolve())
    except ValueError:
        rel = Path(src.name)
    if str(rel) == ".":
        rel = Path(src.name)
    target = _free_name(Path(dest) / rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    if move:
        try:
            os.link(src, target)  # atomic, and refuses to overwrite
            os.unlink(src)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP):
                raise QuarantineError(f"cannot move {src}: {exc.strerror}") from None
            _durable_copy(src, target)
            os.unlink(src)
    else:
        _durable_copy(src, target)
    sidecar = Path(str(target) + ".meshscan.json")
    doc = {"original_path": str(src), "action": "move" if move else "copy", "verdicts": [v.to_dict() for v in verdicts]}
    with open(sidecar, "x") as fh:
        json.dump(doc, fh, indent=2)
    return target


class ContentChanged(QuarantineError):
    """The file no longer holds the content that was scanned: its new content gets its own scan."""


class SourceGone(QuarantineError):
    """The file was deleted (or moved) by someone else before it could be quarantined."""


def _sha256(path: Path) -> str | None:
    from scanner.inspect import file_sha256

    return file_sha256(path)


def _sidecar(target: Path) -> Path:
    return Path(str(target) + ".meshscan.json")


def _reserved_by(base: Path, action_id: str) -> Path | None:
    """The name an earlier attempt of this action reserved (its sidecar names the action)."""
    for n in range(100_000):
        candidate = base if n == 0 else base.with_name(f"{base.name}.{n}")
        side = _sidecar(candidate)
        if not side.exists():
            if not candidate.exists():
                return None
            continue
        try:
            if json.loads(side.read_text()).get("action_id") == action_id:
                return candidate
        except (OSError, ValueError):
            continue
    return None


def _write_new(path: Path, text: str) -> None:
    """Write a file durably under a name nobody holds (never overwriting)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)
    finally:
        os.unlink(tmp)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def quarantine_once(path: str | os.PathLike[str], root: str | os.PathLike[str], dest: str | os.PathLike[str],
                    verdicts: list[Verdict], action_id: str, sha256: str | None) -> Path:  # fmt: skip
    """Move ``path`` into ``dest`` (keeping its path relative to ``root``), idempotently.

    Steps, each safe to interrupt: (1) reserve a free name by writing its sidecar, which
    records ``action_id``; (2) hard-link the file under that name (or, across filesystems,
    copy + fsync + link); (3) unlink the original. A replay finds the reservation by its
    ``action_id`` and completes whichever step is missing, so the file ends up in quarantine
    exactly once. The original is unlinked only when the quarantined copy is the same file or
    holds the same bytes.

    Raises :class:`ContentChanged` / :class:`SourceGone` when there is nothing (left) to move,
    and :class:`QuarantineError` for a symlink or a path resolving out of ``root``.
    """
    src = Path(os.path.abspath(path))
    root_abs = Path(os.path.abspath(root))
    try:
        rel = src.relative_to(root_abs)
    except ValueError:
        raise QuarantineError(f"{src} is not inside the watched folder {root_abs}") from None
    base = Path(dest) / rel
    target = _reserved_by(base, action_id)
    if target is not None and target.exists():  # moved (or linked) by an interrupted attempt
        if src.exists() and not src.is_symlink():
            same = os.path.samefile(src, target) or (_sha256(src) == _sha256(target) == sha256)
            if same:
                os.unlink(src)  # the quarantined copy is complete: finish the move
        return target
    if src.is_symlink():
        raise QuarantineError(f"{src} is a symbolic link; not following it")
    if not src.exists():
        if target is not None:
            os.unlink(_sidecar(target))  # our own reservation; there is nothing to put under it
        raise SourceGone(f"{src} no longer exists")
    real = Path(os.path.realpath(src))
    if not real.is_relative_to(Path(os.path.realpath(root_abs))):
        raise QuarantineError(f"{src} resolves to {real}, outside the watched folder; not following it")
    if sha256 is not None and _sha256(src) != sha256:
        if target is not None:
            os.unlink(_sidecar(target))
        raise ContentChanged(f"{src} changed since it was scanned")
    if target is None:
        target = _free_name(base)
        target.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "original_path": str(src),
            "action": "move",
            "action_id": action_id,
            "sha256": sha256,
            "verdicts": [v.to_dict() for v in verdicts],
        }
        _write_new(_sidecar(target), json.dumps(doc, indent=2))
        _fsync_dir(target.parent)
    try:
        os.link(src, target)  # atomic, and refuses to overwrite
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP):
            raise QuarantineError(f"cannot move {src}: {exc.strerror}") from None
        _durable_copy(src, target, replace_stale=True)
    _fsync_dir(target.parent)
    os.unlink(src)
    return target
