"""Which bodies of an upload the classifier scores on their own, and their rows.

Why: a whole-file score is diluted by whatever else is in the file. A part beside 40 larger
boxes, or beside one box in a file cut into per-triangle groups, reads as "mostly boxes"
(issue 19). So besides the whole file, every body that carries a meaningful share of the
surface is scored alone, and the upload's review score is the highest of them. A body's row
is computed from its own triangles only - the same row it would get uploaded alone - so
decoy bodies cannot lower its score.

The bodies are the ones matching describes (:func:`scanner.features.describe`: welded
connected components of the surface, never the file's declared groups or objects, which an
uploader chooses), and their descriptor vectors are reused, so per-body scoring adds only
the shape features (one pass over each body's triangles, about a millisecond per body
plus that) and one batched prediction. A body is scored when:

- it has at least ``MIN_SCORED_TRIANGLES`` triangles: simpler bodies (tetrahedra,
  pyramids) carry no detail to judge, and the model extrapolates wildly on them (the
  public corpus's tetrahedral mesh ``mctet.off`` has 167 four-triangle bodies scoring up
  to 0.98 alone); any part worth a review has far more triangles, and an uploader cannot
  make one simpler without changing it;
- its surface area is at least ``MIN_AREA_RATIO`` of the largest body's: pins, screws and
  small bodies scored alone look like anything (in the public corpus, 286-triangle bodies
  with 2.5% of the largest body's area in ``box.STL`` score 0.87-0.90 alone).

There is no count cut-off that decoys could fill: every body passing both tests is scored,
however many there are (at most ``Limits.max_bodies``, which matching enforces anyway). The
known limit: a decoy with more than 1 / ``MIN_AREA_RATIO`` times a part's surface area
(about 4.5 times its size) takes it out of per-body scoring; the whole-file score and
matching still apply to it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scanner.classify.features import feature_row
from scanner.features import Descriptor
from scanner.mesh import Mesh

MIN_SCORED_TRIANGLES = 12
"""A body needs at least this many triangles (a box's) to be scored alone."""
MIN_AREA_RATIO = 0.05
"""A body's surface area must be at least this share of the largest body's to be scored alone
(calibrated on the public corpus: see the module docstring and ``bench/classifier.py``)."""


@dataclass(frozen=True)
class BodyRow:
    """One body scored on its own."""

    body: int
    """Body number, as matching and :meth:`scanner.mesh.Mesh.bodies` number them."""
    share: float
    """Share of the upload's surface area."""
    relative: float
    """Its surface area relative to the largest body's (1 for the largest)."""
    triangles: int
    row: np.ndarray
    """The classifier row of the body alone."""


def scored_bodies(
    surface: Mesh,
    descriptor: Descriptor,
    min_area_ratio: float = MIN_AREA_RATIO,
    min_triangles: int = MIN_SCORED_TRIANGLES,
) -> list[BodyRow]:
    """The bodies of ``surface`` that are scored alone, largest first (none for a one-body
    file: its whole-file row is its body's). ``descriptor`` is matching's description of the
    same surface; its per-body vectors are reused. The two minimums are parameters only so
    that ``bench/classifier.py`` can show how they were chosen."""
    if descriptor.body_count <= 1 or not descriptor.body_shares:
        return []
    picked = [
        (b, s, v)
        for b, s, v in zip(descriptor.body_ids, descriptor.body_shares, descriptor.bodies, strict=False)
        if b >= 0
    ]
    if not picked:
        return []
    largest = max(s for _, s, _ in picked)
    labels = surface.body_labels()
    counts = np.bincount(labels, minlength=descriptor.body_count)
    chosen = [(b, s, v) for b, s, v in picked if counts[b] >= min_triangles and s >= min_area_ratio * largest]
    if not chosen:
        return []
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)])
    out = []
    for b, s, v in chosen:
        faces = order[starts[b] : starts[b + 1]]
        corners = np.take(surface.corners32, faces, axis=0)  # surface.corners32[faces], gathered faster
        body = Mesh(vertices=corners.reshape(-1, 3), source=surface.source, format=surface.format)
        out.append(BodyRow(b, float(s), float(s / largest), int(counts[b]), feature_row(body, v)))
    return out


def share_words(share: float) -> str:
    """A share of the surface for an explanation: 12%, 0.4%, or <0.1%."""
    if share >= 0.095:
        return f"{share:.0%}"
    return f"{share:.1%}" if share >= 0.001 else "<0.1%"
