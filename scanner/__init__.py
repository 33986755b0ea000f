"""meshscan: find 3D-printable blueprints of essential firearm components among uploads.

The public API is small and imported lazily so that ``meshscan --help`` starts fast:
``load``, ``iter_meshes``, ``Mesh``, ``UnreadableInput``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from scanner.errors import UnreadableInput
    from scanner.loading import iter_meshes, load
    from scanner.mesh import Mesh

__all__ = ["__version__", "load", "iter_meshes", "Mesh", "UnreadableInput"]

_LAZY = {
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
