"""Quarantine: put a flagged upload aside for people to decide, never destroying it.

* keeps the path relative to the scanned root (so two ``a.stl`` from different folders do
  not collide), and never overwrites: a taken name gets ``.1``, ``.2``, ... appended;
* moves atomically: ``rename`` on the same filesystem; across filesystems copy + fsync +
  rename into place + unlink the original (the original is removed only once the copy is
  durable);
* refuses a source that is a symlink (it could point out of the scanned tree);
* writes a sidecar ``<name>.meshscan.json`` holding the verdict(s).
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


def _durable_copy(src: Path, dst: Path) -> None:
    tmp = dst.with_name(f".{dst.name}.partial")
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
