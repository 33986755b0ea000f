"""meshscan's signals as strings, in the shape python-threatexchange and HMA exchange them: a
signal type name and a signal value string, compared by a function of two strings. No
dependency on python-threatexchange: :mod:`scanner.exchange.tx` wraps these for it, and
``signatures export-signals`` writes them in its local-file exchange format (one
``<signal type> <signal value>`` per line), which HMA and the ``threatexchange`` CLI read.

Two signal types:

``mesh_geometry_hash``
    the sha256 meshscan computes over a mesh's triangles (any file format, triangle order or
    winding): 64 lowercase hex digits, matched exactly.
``mesh_descriptor``
    one descriptor row: ``<descriptor version>;<threshold>;<vector>``, the vector as
    little-endian float32 in URL-safe base64 without padding, the threshold the row's own
    (set at enrolment from how far it lies from benign shapes) or empty for a row hashed from
    an upload. Two rows match when their distance is within the banked row's threshold (the
    larger of the two when both carry one), or :data:`DEFAULT_THRESHOLD` when neither does.
    Rows of different descriptor versions never compare: a string of another version is
    invalid here.
"""

from __future__ import annotations

import base64
import os
import re
from dataclasses import dataclass

import numpy as np

from scanner.features.version import DESCRIPTOR_SIZE, DESCRIPTOR_VERSION

GEOMETRY_SIGNAL = "mesh_geometry_hash"
DESCRIPTOR_SIGNAL = "mesh_descriptor"
DEFAULT_THRESHOLD = 0.08
"""As meshscan's own ``match.distance_threshold`` default (:class:`scanner.config.MatchSettings`)."""

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def validate_geometry_hash(text: str) -> str:
    """The normalised geometry hash, or ValueError."""
    value = text.strip().lower()
    if not _HEX64.match(value):
        raise ValueError("a mesh geometry hash is 64 hex digits")
    return value


@dataclass(frozen=True)
class DescriptorSignal:
    """One descriptor row, with its version and (for a banked row) its threshold."""

    vector: np.ndarray
    threshold: float | None = None
    version: str = DESCRIPTOR_VERSION

    def encode(self) -> str:
        raw = np.ascontiguousarray(self.vector, dtype="<f4").tobytes()
        body = base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")
        threshold = "" if self.threshold is None else f"{self.threshold:.6f}"
        return f"{self.version};{threshold};{body}"

    @classmethod
    def decode(cls, text: str) -> DescriptorSignal:
        """Parse and check a descriptor signal string; ValueError says what is wrong."""
        parts = text.strip().split(";")
        if len(parts) != 3:
            raise ValueError("a mesh descriptor signal is '<version>;<threshold>;<vector>'")
        version, threshold, body = parts
        if version != DESCRIPTOR_VERSION:
            raise ValueError(f"descriptor version {version!r}; this meshscan computes {DESCRIPTOR_VERSION!r}")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except ValueError:
            raise ValueError("the descriptor vector is not base64") from None
        if len(raw) != 4 * DESCRIPTOR_SIZE:
            raise ValueError(f"the descriptor vector has {len(raw) // 4} values, not {DESCRIPTOR_SIZE}")
        vector = np.frombuffer(raw, dtype="<f4").astype(np.float64)
        if not np.isfinite(vector).all():
            raise ValueError("the descriptor vector holds non-finite values")
        value = float(threshold) if threshold else None
        if value is not None and not (np.isfinite(value) and value >= 0):
            raise ValueError("the threshold must be a finite number >= 0")
        return cls(vector, value, version)


def distance(a: DescriptorSignal, b: DescriptorSignal) -> float:
    """Euclidean distance, in float64 as meshscan's own index computes it."""
    return float(np.linalg.norm(np.asarray(a.vector, np.float64) - np.asarray(b.vector, np.float64)))


def threshold_for(a: DescriptorSignal, b: DescriptorSignal) -> float:
    """The banked row's threshold decides; the larger when both are banked rows."""
    given = [t for t in (a.threshold, b.threshold) if t is not None]
    return max(given) if given else DEFAULT_THRESHOLD


def hash_file(path: str | os.PathLike[str]) -> tuple[str, str] | None:
    """(geometry hash, whole-file descriptor signal) of the first mesh in ``path``; None when
    nothing in it can be read (as a threatexchange hasher answers an empty string)."""
    from scanner.errors import UnreadableInput
    from scanner.features import describe
    from scanner.loading import iter_meshes

    for result in iter_meshes(os.fspath(path)):
        if result.mesh is None:
            continue
        try:
            desc = describe(result.mesh)
        except UnreadableInput:
            continue
        return desc.geometry_hash, DescriptorSignal(desc.whole).encode()
    return None


def library_signals(lib, all_rows: bool = False) -> list[tuple[str, str, str]]:  # noqa: ANN001 - SignatureLibrary
    """(signature id, signal type, signal value) for every signature of ``lib``: its geometry
    hash, and its whole-file descriptor row when that row is matchable (threshold > 0); with
    ``all_rows`` every matchable row (bodies and plane-cut pieces too)."""
    from scanner.features.affine import AFFINE_ROW

    out = []
    for index, sig in enumerate(lib.signatures):
        if sig.disabled is not None:  # taken out of matching: not offered to anyone else either
            continue
        if sig.geometry_hash:
            out.append((sig.id, GEOMETRY_SIGNAL, sig.geometry_hash))
        for row in np.flatnonzero(lib.rows[:, 0] == index):
            body, threshold = int(lib.rows[row, 1]), float(lib.thresholds[row])
            if threshold > 0 and body != AFFINE_ROW and (all_rows or body == -1):  # a whitened row is no plain one
                signal = DescriptorSignal(lib.vectors[row], threshold, lib.descriptor_version)
                out.append((sig.id, DESCRIPTOR_SIGNAL, signal.encode()))
    return out
