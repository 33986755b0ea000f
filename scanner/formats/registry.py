"""The registry of formats, built from what each format module declares.

A *format module* is any public module of this package other than the infrastructure below
(:data:`INFRASTRUCTURE`); it declares

* ``FORMATS``: the sniffed names it reads (:class:`~scanner.formats.base.Format`: a mesh
  loader or a container reader, and its row of the README's format table), and
* ``SNIFFERS``: its tests of a blob's bytes (:class:`~scanner.formats.base.Sniffer`), each
  with the priority that places it among every other module's.

Modules are found on disk (as trimesh's ``exchange/`` is walked), so adding a format is one
new file: nothing here, in the sniffing driver or in the dispatcher lists it. Declarations
are checked as they are merged - a name declared twice, or two sniffers at one priority
(their order would be an accident), is an error at import, not a wrong answer later.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

from scanner.formats.base import ContainerReader, Format, MeshLoader, Sniffer

INFRASTRUCTURE = frozenset({"base", "blob", "registry", "sniff"})
"""Public modules of the package that are not format modules (private ``_*`` ones never are)."""


def format_modules() -> list[ModuleType]:
    """Every format module of the package, by name."""
    names = sorted(
        info.name
        for info in pkgutil.iter_modules([str(Path(__file__).parent)])
        if not info.name.startswith("_") and info.name not in INFRASTRUCTURE
    )
    modules = [importlib.import_module(f"{__package__}.{name}") for name in names]
    for module in modules:
        if not hasattr(module, "FORMATS") or not hasattr(module, "SNIFFERS"):
            raise TypeError(f"{module.__name__} is a format module but declares no FORMATS and SNIFFERS")
    return modules


def _collect(modules: list[ModuleType]) -> tuple[tuple[Format, ...], tuple[Sniffer, ...]]:
    formats = sorted((f for m in modules for f in m.FORMATS), key=lambda f: (f.priority, f.name))
    sniffers = sorted((s for m in modules for s in m.SNIFFERS), key=lambda s: s.priority)
    names = [f.name for f in formats]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"formats declared more than once: {', '.join(twice)}")
    priorities = [s.priority for s in sniffers]
    shared = sorted({p for p in priorities if priorities.count(p) > 1})
    if shared:
        raise ValueError(f"sniffers share a priority (their order would be an accident): {shared}")
    return tuple(formats), tuple(sniffers)


FORMATS, SNIFFERS = _collect(format_modules())
"""Every format read (by priority) and every sniffer (in the order they run)."""

LOADERS: dict[str, MeshLoader] = {f.name: f.loader for f in FORMATS if f.loader is not None}
CONTAINERS: dict[str, ContainerReader] = {f.name: f.container for f in FORMATS if f.container is not None}


def format_table() -> str:
    """The README's table of the formats meshscan reads (Markdown), from the declarations:
    one row per title, in priority order, with the notes one of its formats gives."""
    rows: dict[str, str] = {}
    for f in FORMATS:
        if f.notes or f.title not in rows:
            rows[f.title] = f.notes or rows.get(f.title, "")
    lines = ["| format | notes |", "| --- | --- |"]
    lines += [f"| {title} | {notes} |" for title, notes in rows.items()]
    return "\n".join(lines) + "\n"
