"""A python-threatexchange extension: ``threatexchange config extensions add scanner.exchange.tx``.

It provides a ``mesh`` content type and meshscan's three signal types (see
:mod:`scanner.exchange.signals`) with ``hash_from_file``, ``compare_hash`` and an index class,
so the ``threatexchange`` CLI can hash and match meshes and an HMA deployment can bank,
exchange and match mesh signals with its existing infrastructure (add the signal types and
content type to its configured lists). Needs ``pip install 'meshscan[threatexchange]'``.

The indexes serialise as JSON, never pickle (python-threatexchange's default): nothing meshscan
writes for others to load may execute code when loaded.
"""

from __future__ import annotations

import json
import pathlib
import sys
import typing as t
from dataclasses import fields, is_dataclass
from enum import Enum

import numpy as np
from threatexchange.content_type.content_base import ContentType
from threatexchange.extensions.manifest import ThreatExchangeExtensionManifest
from threatexchange.signal_type import index, signal_base

from scanner.exchange import signals
from scanner.features.patches import MIN_SHARE, PATCH_VERSION
from scanner.features.reference import confirms, nearest_generic_distance
from scanner.features.version import DESCRIPTOR_SIZE
from scanner.matching import CROWD_RATIO, DISTINCT_RATIO, crowded
from scanner.patch_index import PatchIndex

T = t.TypeVar("T")


class MeshContent(ContentType):
    """3D model files meshscan reads: STL, OBJ, 3MF, PLY, OFF, and archives of them."""


def _known_class(tag: str) -> type:
    """A class named ``module:qualname`` that is already imported: looked up, never imported,
    so that loading an index cannot run code named in it."""
    module, _, name = tag.partition(":")
    obj: object = sys.modules.get(module)
    for part in name.split("."):
        obj = getattr(obj, part, None)
    if not isinstance(obj, type):
        raise ValueError(f"index entry of unknown type {tag!r} (import its module first)")
    return obj


def _tag(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}:{cls.__qualname__}"


def _encode(value: object) -> object:
    """Entries as tagged JSON: python-threatexchange and HMA store (collab, metadata) tuples
    of dataclasses, with sets and enums inside."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Enum):
        return {"__enum__": _tag(value), "value": _encode(value.value)}
    if is_dataclass(value) and not isinstance(value, type):
        return {
            "__dataclass__": _tag(value),
            "fields": {f.name: _encode(getattr(value, f.name)) for f in fields(value)},
        }
    if isinstance(value, dict):
        return {"__dict__": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(v) for v in value]}
    if isinstance(value, set | frozenset):
        return {"__set__": [_encode(v) for v in value]}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    raise TypeError(f"cannot store an index entry of type {type(value).__name__} as JSON")


def _decode(value: object) -> object:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__enum__" in value:
        return _known_class(value["__enum__"])(_decode(value["value"]))
    if "__dataclass__" in value:
        cls = _known_class(value["__dataclass__"])
        if not is_dataclass(cls):
            raise ValueError(f"{value['__dataclass__']!r} is not a dataclass")
        values = {k: _decode(v) for k, v in value["fields"].items()}
        made = cls(**{f.name: values[f.name] for f in fields(cls) if f.init and f.name in values})
        return made
    if "__dict__" in value:
        return {_decode(k): _decode(v) for k, v in value["__dict__"]}
    if "__tuple__" in value:
        return tuple(_decode(v) for v in value["__tuple__"])
    if "__set__" in value:
        return {_decode(v) for v in value["__set__"]}
    raise ValueError("untagged object in a meshscan index")


class _JsonIndex(index.SignalTypeIndex[T]):
    """Signals and entries as JSON lines (entries: JSON values or dataclasses)."""

    def __init__(self) -> None:
        self.signals: list[str] = []
        self.entries: list[T] = []

    def add(self, signal_str: str, entry: T) -> None:
        self.signals.append(signal_str)
        self.entries.append(entry)

    def serialize(self, fout: t.BinaryIO) -> None:
        doc = {
            "format": "meshscan-tx-index",
            "signals": self.signals,
            "entries": [_encode(e) for e in self.entries],
        }
        fout.write(json.dumps(doc).encode("utf-8"))

    @classmethod
    def deserialize(cls, fin: t.BinaryIO) -> t.Self:
        doc = json.loads(fin.read().decode("utf-8"))
        if doc.get("format") != "meshscan-tx-index":
            raise ValueError("not a meshscan threatexchange index")
        out = cls()
        for signal, entry in zip(doc["signals"], doc["entries"], strict=True):
            out.add(signal, _decode(entry))
        return out


class MeshGeometryHashIndex(_JsonIndex[T]):
    """Exact lookups of geometry hashes (a dictionary)."""

    def __init__(self) -> None:
        super().__init__()
        self._by_hash: dict[str, list[int]] = {}

    def add(self, signal_str: str, entry: T) -> None:
        self._by_hash.setdefault(signal_str, []).append(len(self.entries))
        super().add(signal_str, entry)

    def query(self, query: str) -> list[index.IndexMatch[T]]:
        return [index.IndexMatch(index.SignalSimilarityInfo(), self.entries[i]) for i in self._by_hash.get(query, [])]


class MeshDescriptorIndex(_JsonIndex[T]):
    """Exact nearest-neighbour search over descriptor rows, each with its own threshold."""

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[signals.DescriptorSignal] = []
        self._matrix: np.ndarray | None = None

    def add(self, signal_str: str, entry: T) -> None:
        self._rows.append(signals.DescriptorSignal.decode(signal_str))
        self._matrix = None
        super().add(signal_str, entry)

    def query(self, query: str) -> list[index.IndexMatch[T]]:
        q = signals.DescriptorSignal.decode(query)
        if not self._rows:
            return []
        if self._matrix is None:
            self._matrix = np.stack([r.vector for r in self._rows]).astype(np.float64)
        dist = np.linalg.norm(self._matrix - q.vector[None, :], axis=1)
        generic: float | None = None  # the scan's second stage, computed when a row is within its threshold
        out = []
        for i in np.argsort(dist, kind="stable"):
            if dist[i] > signals.threshold_for(self._rows[i], q):
                continue
            if generic is None:
                generic = float(nearest_generic_distance(q.vector[None, :])[0])
            threshold = signals.threshold_for(self._rows[i], q)
            if confirms(float(dist[i]), generic) and not self._rivalled(i, dist, threshold):
                similarity = index.SignalSimilarityInfoWithSingleDistance(round(float(dist[i]), 6))
                out.append(index.IndexMatch(similarity, self.entries[i]))
        return out

    def _rivalled(self, i: int, dist: np.ndarray, threshold: float) -> bool:
        """The scan's other second-stage tests (:func:`scanner.matching.crowded`): are rows of
        other entries, not the same shape, about as near the query as row ``i``?"""
        assert self._matrix is not None
        near = np.flatnonzero(dist <= dist[i] * max(CROWD_RATIO, 1.0 / DISTINCT_RATIO))
        rivals = [j for j in near if self.entries[j] != self.entries[i]]
        owners = [next(k for k in rivals if self.entries[k] == self.entries[j]) for j in rivals]  # one per entry
        contest = (self._matrix[i], self._matrix[rivals], np.asarray(owners, dtype=np.int64), dist[rivals])
        return crowded(*contest, float(dist[i]), threshold)


class MeshPatchesIndex(_JsonIndex[T]):
    """meshscan's ``local`` rule over the banked patch sketches: one vote per distinct code of
    the upload, by binary search over every sketch's codes (built on first query)."""

    def __init__(self) -> None:
        super().__init__()
        self._sketches: list[signals.PatchSignal] = []
        self._index: PatchIndex | None = None

    def add(self, signal_str: str, entry: T) -> None:
        sketch = signals.PatchSignal.decode(signal_str)
        if sketch.shares is None:
            raise ValueError("a banked patch signal carries its codes' shares (an upload's does not)")
        self._sketches.append(sketch)
        self._index = None
        super().add(signal_str, entry)

    def query(self, query: str) -> list[index.IndexMatch[T]]:
        q = signals.PatchSignal.decode(query)
        if self._index is None:
            self._index = signals.patch_index(self._sketches)
        hits = signals.patch_matches(self._index, q)
        return [
            index.IndexMatch(index.SignalSimilarityInfoWithSingleDistance(round(1.0 - share, 6)), self.entries[i])
            for i, share, _, _ in hits
        ]


class MeshGeometryHashSignal(signal_base.SimpleSignalType, signal_base.FileHasher):
    """The sha256 of a mesh's triangles: the same part in any format, order or winding."""

    @classmethod
    def get_content_types(cls) -> list[type[ContentType]]:
        return [MeshContent]

    @classmethod
    def get_index_cls(cls) -> type[MeshGeometryHashIndex]:
        return MeshGeometryHashIndex

    @classmethod
    def validate_signal_str(cls, signal_str: str) -> str:
        return signals.validate_geometry_hash(signal_str)

    @classmethod
    def hash_from_file(cls, file: pathlib.Path) -> str:
        return signals.hash_file(file, "geometry")

    @staticmethod
    def get_examples() -> list[str]:
        import hashlib

        return [hashlib.sha256(f"meshscan example {i}".encode()).hexdigest() for i in range(3)]


class MeshDescriptorSignal(signal_base.SignalType, signal_base.FileHasher):
    """meshscan's near-duplicate shape descriptor (rotation-, mirror- and scale-invariant),
    with its version; a banked row carries its own threshold."""

    @classmethod
    def get_content_types(cls) -> list[type[ContentType]]:
        return [MeshContent]

    @classmethod
    def get_index_cls(cls) -> type[MeshDescriptorIndex]:
        return MeshDescriptorIndex

    @classmethod
    def validate_signal_str(cls, signal_str: str) -> str:
        return signals.DescriptorSignal.decode(signal_str).encode()

    @classmethod
    def hash_from_file(cls, file: pathlib.Path) -> str:
        return signals.hash_file(file, "descriptor")

    @classmethod
    def compare_hash(cls, hash1: str, hash2: str) -> signal_base.SignalComparisonResult:
        """The first stage alone (distance within the banked threshold): a pairwise comparison
        does not say which side is the upload. The index's ``query`` adds the scan's second stage."""
        a, b = signals.DescriptorSignal.decode(hash1), signals.DescriptorSignal.decode(hash2)
        dist = round(signals.distance(a, b), 6)
        return signal_base.SignalComparisonResult.from_simple_dist(dist, signals.threshold_for(a, b))

    @staticmethod
    def get_examples() -> list[str]:
        ramp = np.linspace(0.0, 1.0, DESCRIPTOR_SIZE)
        return [
            signals.DescriptorSignal(ramp, 0.05).encode(),
            signals.DescriptorSignal(ramp[::-1].copy(), 0.05).encode(),
        ]


class MeshPatchesSignal(signal_base.SignalType, signal_base.FileHasher):
    """meshscan's local patch codes: hashes of each triangle with its neighbours, so a copy cut,
    fused to other geometry, split into pieces or hidden among decoys still matches. A banked
    sketch carries each code's share of the signature's area; a match is at least
    ``MIN_MATCHED`` of its codes covering ``MIN_SHARE`` of it, at one scale. Distance is the
    share of the signature not found."""

    @classmethod
    def get_content_types(cls) -> list[type[ContentType]]:
        return [MeshContent]

    @classmethod
    def get_index_cls(cls) -> type[MeshPatchesIndex]:
        return MeshPatchesIndex

    @classmethod
    def validate_signal_str(cls, signal_str: str) -> str:
        return signals.PatchSignal.decode(signal_str).encode()

    @classmethod
    def hash_from_file(cls, file: pathlib.Path) -> str:
        return signals.hash_file(file, "patches")

    @classmethod
    def compare_hash(cls, hash1: str, hash2: str) -> signal_base.SignalComparisonResult:
        a, b = signals.PatchSignal.decode(hash1), signals.PatchSignal.decode(hash2)
        banked, upload = (a, b) if a.shares is not None else (b, a)
        hits = signals.patch_matches(signals.patch_index([banked]), upload) if banked.shares is not None else []
        share = hits[0][1] if hits else 0.0
        return signal_base.SignalComparisonResult.from_simple_dist(round(1.0 - share, 6), 1.0 - MIN_SHARE)

    @staticmethod
    def get_examples() -> list[str]:
        rng = np.random.default_rng(7)
        out = []
        for _ in range(2):
            codes = np.sort(rng.integers(0, 2**63, 64, dtype=np.uint64) * np.uint64(2))
            shares = np.full(64, 1.0 / 64, np.float32)
            out.append(signals.PatchSignal.of_sketch(codes, np.zeros(64, np.int16), shares, PATCH_VERSION).encode())
        return out


TX_MANIFEST = ThreatExchangeExtensionManifest(
    signal_types=(MeshGeometryHashSignal, MeshDescriptorSignal, MeshPatchesSignal),
    content_types=(MeshContent,),
)
