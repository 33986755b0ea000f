"""meshscan: find 3D-printable blueprints of essential firearm components among uploads.

The public API is small and imported lazily so that ``meshscan --help`` starts fast:
``Scanner`` (load a library and model once; ``.scan``, ``.hash``, ``.lookup``), ``scan`` (one
upload with the shipped demo library), ``Signals``, ``Verdict``, ``Match``, ``load``,
``iter_meshes``, ``Mesh``, ``UnreadableInput``, ``NoLibraryError``. Everything else may change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scanner._version import __version__

if TYPE_CHECKING:
    from scanner.api import Scanner, Signals, scan
    from scanner.context import NoLibraryError
    from scanner.errors import UnreadableInput
    from scanner.loading import iter_meshes, load
    from scanner.mesh import Mesh
    from scanner.verdict import Match, Verdict

__all__ = [
    "__version__",
    "Scanner",
    "scan",
    "Signals",
    "Verdict",
    "Match",
    "load",
    "iter_meshes",
    "Mesh",
    "UnreadableInput",
    "NoLibraryError",
]

_LAZY = {
    "Scanner": "scanner.api",
    "scan": "scanner.api",
    "Signals": "scanner.api",
    "Verdict": "scanner.verdict",
    "Match": "scanner.verdict",
    "NoLibraryError": "scanner.context",
    "load": "scanner.loading",
    "iter_meshes": "scanner.loading",
    "Mesh": "scanner.mesh",
    "UnreadableInput": "scanner.errors",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'scanner' has no attribute {name!r}")
