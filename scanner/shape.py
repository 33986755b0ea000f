"""One mesh as the policy reads it: its surface, its descriptor rows and its classifier row.

The descriptor is the expensive part of a scan (surface sampling for the whole file and for
every body), and both matching and the classifier read it. A :class:`Shape` is made once per
mesh and computes each of its parts at most once, on first use: an upload settled by an exact
hash or the allowlist is never described at all, and one that reaches the classifier reuses
the whole-file vector that matching already computed. The bodies the classifier scores
alone (:attr:`Shape.body_rows`) reuse matching's per-body vectors the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from scanner.classify.bodies import BodyRow, scored_bodies
from scanner.classify.features import feature_row
from scanner.errors import EMPTY, UnreadableInput
from scanner.features import Descriptor, describe, describe_triangles
from scanner.features.patches import PatchCodes
from scanner.mesh import Mesh

if TYPE_CHECKING:
    from scanner.features.affine import StagedAffineRow


@dataclass(frozen=True)
class Shape:
    """A mesh's shape values, each computed once (``cached_property`` on a frozen value:
    nothing is reassigned, a part is only filled in the first time it is read)."""

    surface: Mesh
    """Without degenerate and repeated triangles (:meth:`Mesh.surface`): what every
    descriptor reads."""
    max_bodies: int
    """Most bodies described (``Limits.max_bodies``); more is ``limit:bodies``."""

    @classmethod
    def of(cls, mesh: Mesh, max_bodies: int) -> Shape:
        return cls(mesh.surface(), max_bodies)

    def prefetch(self, descriptor: bool = True, patches: bool = True, classifier: bool = True) -> bool:
        """Compute the parts a scan is about to read - the descriptor, the patch codes, the
        classifier row (and the bodies' rows) - on two threads, when this process may
        (:func:`scanner.parallel.enabled`: a core no other scan worker uses) and the surface
        has at least :data:`scanner.parallel.MIN_TRIANGLES` triangles. True when it did.

        The same functions on the same arrays as the lazy reads, in this order: the helper
        thread welds, sorts the edges and finds the bodies while this thread samples the whole
        surface (which reads no weld); then the helper computes the shape features while this
        thread describes the surface without its walls and the bodies and codes patch blocks,
        the helper taking the blocks (and bodies) left when it is done. Nothing is
        reordered inside a computation, so every value is the serial one, bit for bit. Any
        failure (an upload past ``limit:bodies``, memory beyond the cap with two stages'
        temporaries at once) keeps only the parts finished and leaves the rest to the lazy
        reads, which compute - or fail - exactly as serially."""
        from scanner import parallel

        surface = self.surface
        wanted = [name for name, want in (("descriptor", descriptor), ("patch_codes", patches),
                                          ("classifier_row", classifier)) if want]  # fmt: skip
        if (
            not wanted
            or all(name in self.__dict__ for name in wanted)
            or surface.triangle_count < parallel.MIN_TRIANGLES
            or not parallel.enabled()
        ):
            return False
        d = self.__dict__
        try:
            self._prefetch(descriptor and "descriptor" not in d, patches and "patch_codes" not in d,
                           classifier and "classifier_row" not in d)  # fmt: skip
        except Exception:  # noqa: BLE001 - the lazy reads compute it again, and raise as serially
            return False
        return True

    def _prefetch(self, descriptor: bool, patches: bool, classifier: bool) -> None:
        from scanner import parallel
        from scanner.classify.shape import shape_features
        from scanner.features import _without_walls
        from scanner.features.patches import mesh_patch_codes

        s = self.surface
        d = self.__dict__
        known_whole = d.get("whole")

        def topology() -> None:
            s.welded_faces, s.sorted_edges, s.two_face_edges, s.body_count  # noqa: B018 - computed here

        def whole_row() -> np.ndarray:
            return known_whole if known_whole is not None else describe_triangles(s.corners32, s.corner_keys)

        # the weld, edge sort and bodies (0.45 s at 1M triangles) on the helper; the whole
        # surface's row (0.40 s) here
        whole, _ = parallel.both(whole_row, topology)
        d.setdefault("whole", whole)

        def describe_and_code() -> None:
            if descriptor:
                unwalled = _without_walls(s)
                walls_row = None if unwalled is None else describe_triangles(*unwalled)
                d["descriptor"] = describe(s, self.max_bodies, (whole, walls_row), each=parallel.shared_map)
            if patches:
                d["patch_codes"] = mesh_patch_codes(s, each=parallel.shared_map)

        # the shape features (0.43 s) on the helper; the wall-free row (0.13 s), the bodies'
        # rows and patch blocks (0.37 s) here, the helper taking the blocks (and bodies) left
        # once it is done with the features
        _, shape = parallel.both(describe_and_code, lambda: shape_features(s) if classifier else None)
        if classifier:
            d["classifier_row"] = feature_row(s, self.whole, shape)

    @property
    def bodies(self) -> int:
        """Welded bodies of the surface (the verdict's ``bodies``)."""
        return self.surface.body_count

    @cached_property
    def descriptor(self) -> Descriptor:
        """The whole file and every body (:func:`scanner.features.describe`); raises
        :class:`UnreadableInput` (``empty``, ``limit:bodies``)."""
        return describe(self.surface, self.max_bodies)

    @cached_property
    def patch_codes(self) -> PatchCodes:
        """The local patch codes of the whole surface, every body together
        (:mod:`scanner.features.patches`): what local matching looks up."""
        from scanner.features.patches import mesh_patch_codes

        return mesh_patch_codes(self.surface)

    @cached_property
    def rows(self) -> tuple[np.ndarray, list[int]]:
        """The descriptor's vectors as one matrix, with body numbers (:meth:`Descriptor.rows`)."""
        return self.descriptor.rows()

    @cached_property
    def whole(self) -> np.ndarray:
        """The whole-file vector: the descriptor's when it was computed, else described alone
        (the classifier needs only this one, not every body)."""
        if "descriptor" in self.__dict__:
            return self.descriptor.whole
        if self.surface.triangle_count == 0:
            raise UnreadableInput(EMPTY, "no triangle with any area")
        return describe_triangles(self.surface.corners32, self.surface.corner_keys)

    @cached_property
    def affine_stages(self) -> StagedAffineRow:
        """The whitened whole-file row in stages (:class:`scanner.features.affine.StagedAffineRow`):
        its head and the whole row share one whitened sample."""
        from scanner.features.affine import StagedAffineRow

        return StagedAffineRow(self.surface.corners32, self.surface.corner_keys, len(self.whole))

    @property
    def affine(self) -> np.ndarray:
        """The whitened whole-file row (:func:`scanner.features.affine.affine_row`): asked for
        only when a signature is within the stretch rule's plain bands of :attr:`whole`."""
        return self.affine_stages.row

    @property
    def affine_head(self) -> np.ndarray:
        """The whitened row's first family (:attr:`StagedAffineRow.head`): what the stretch
        rule reads first, to skip the rest of the row when no signature is within reach."""
        return self.affine_stages.head

    @cached_property
    def classifier_row(self) -> np.ndarray:
        """The component classifier's input (:func:`scanner.classify.features.feature_row`)."""
        return feature_row(self.surface, self.whole)

    @cached_property
    def body_rows(self) -> list[BodyRow]:
        """The bodies the classifier scores alone, with their rows
        (:func:`scanner.classify.bodies.scored_bodies`; none for a one-body file, which is
        never described for it). Reuses matching's per-body descriptor vectors."""
        if self.surface.body_count <= 1:
            return []
        return scored_bodies(self.surface, self.descriptor)

    @cached_property
    def _solidities(self) -> dict[int, float | None]:
        return {}

    @cached_property
    def _faces_by_body(self) -> tuple[np.ndarray, np.ndarray]:
        """Face numbers in body order and where each body starts: one sort, then every body's
        triangles are a slice (``hash`` asks every body row of a file of up to 1,000 bodies)."""
        labels = self.surface.body_labels()
        order = np.argsort(labels, kind="stable")
        starts = np.concatenate([[0], np.cumsum(np.bincount(labels, minlength=self.surface.body_count))])
        return order, starts

    def solidity(self, body: int) -> float | None:
        """Solidity (:func:`scanner.features.solidity.solidity`) of what a descriptor row with
        body number ``body`` describes: -1 the whole surface, a body number that body; None for
        the loose-triangle and wall-free rows (never called convex). Computed on first ask:
        only a plane-cut piece hit asks (:data:`scanner.matching.CONVEX_SOLIDITY`)."""
        from scanner.features.solidity import solidity

        if body not in self._solidities:
            if body == -1:
                value = solidity(self.surface.corners32)
            elif body >= 0:
                order, starts = self._faces_by_body
                faces = order[starts[body] : starts[body + 1]] if body + 1 < len(starts) else order[:0]
                value = solidity(np.take(self.surface.corners32, faces, axis=0))
            else:
                value = None
            self._solidities[body] = value
        return self._solidities[body]

    def body_share(self, body: int | None) -> float | None:
        """Share of the upload's surface a descriptor row describes (None: the whole file,
        or not measured)."""
        if body is None:
            return None
        desc = self.descriptor
        return dict(zip(desc.body_ids, desc.body_shares or [], strict=False)).get(body)
