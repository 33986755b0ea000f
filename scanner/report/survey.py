"""``meshscan survey``: estimate prevalence in a corpus too large to scan whole, from a
uniform random sample of its files.

Sampling. The listing is streamed once (local folders, or any fsspec URL through
:func:`scanner.batch.iter_uploads`) through reservoir sampling, Algorithm L (Li 1994,
"Reservoir-sampling algorithms of time complexity O(n(1 + log(N/n)))", ACM TOMS 20(4)): every
file of the listing ends up in the sample with the same probability ``n / N``, every subset of
size ``n`` is equally likely, memory holds only the ``n`` chosen entries, and the random
numbers drawn are few (``O(n log(N/n))``), so listing speed is the limit. The random source is
``numpy.random.default_rng(seed)`` and the listing order is sorted, so the same seed over the
same listing gives the same sample.

Estimation. The unit is the upload (a file; an archive counts as flagged when any member is).
A file's outcome is ``flag`` if any of its results is, else ``review`` if any is, else
``clear`` if any is, else ``unscannable``.

* *Prevalence* is the share of scannable sampled files with the outcome, with a 95% Wilson
  interval and the finite-population correction (scanner/report/stats.py), the population
  being the estimated number of scannable files in the corpus ``N * n_scannable / n``.
* *Projected totals* estimate how many files of the whole corpus (N listed) have the outcome:
  ``N * k / n``, with the interval ``N *`` the Wilson-FPC interval of ``k / n`` (all sampled
  files in the denominator, so no estimated quantity enters it), narrowed to what the sample
  proves: at least ``k`` such files, and at least ``n - k`` others.

With no unscannable files both are the same proportion.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from scanner.report.stats import proportion
from scanner.verdict import CLEAR, FLAG, REVIEW, UNSCANNABLE, Verdict

T = TypeVar("T")
OUTCOMES = (FLAG, REVIEW, CLEAR, UNSCANNABLE)
METHOD = "reservoir sampling (Algorithm L), numpy PCG64 seeded; Wilson 95% with finite-population correction"


def reservoir_sample(items: Iterable[T], k: int, rng: np.random.Generator) -> tuple[list[T], int]:
    """A uniform random sample of ``k`` items of a stream, in stream order, and the stream's length.

    Algorithm L: after the first ``k`` items, skip a geometrically distributed number of
    items, replace a uniformly chosen slot, repeat. Fewer than ``k`` items: all of them.
    """
    if k < 1:
        raise ValueError(f"sample size must be at least 1, got {k}")
    it = iter(items)
    reservoir: list[tuple[int, T]] = []
    for i, item in enumerate(it):
        reservoir.append((i, item))
        if len(reservoir) == k:
            break
    if len(reservoir) < k:
        return [item for _, item in reservoir], len(reservoir)

    def u() -> float:  # uniform on (0, 1]: log() is finite
        return 1.0 - float(rng.random())

    w = math.exp(math.log(u()) / k)

    def skip(w: float) -> int:
        return 0 if w >= 1.0 else int(math.floor(math.log(u()) / math.log(1.0 - w)))

    next_i = k + skip(w)
    n = k
    for i, item in enumerate(it, start=k):
        n = i + 1
        if i == next_i:
            reservoir[int(rng.integers(k))] = (i, item)
            w *= math.exp(math.log(u()) / k)
            next_i = i + 1 + skip(w)
    reservoir.sort(key=lambda pair: pair[0])
    return [item for _, item in reservoir], n


def file_outcome(verdicts: list[Verdict]) -> str:
    """One outcome per upload: the most serious verdict among its results."""
    found = {v.verdict for v in verdicts}
    for outcome in (FLAG, REVIEW, CLEAR):
        if outcome in found:
            return outcome
    return UNSCANNABLE


@dataclass
class SurveyResult:
    population: int
    """Files in the listing (N)."""
    outcomes: list[str]
    """One outcome per sampled file, in listing order."""
    seed: int
    paths: list[str] = field(default_factory=list)
    versions: dict[str, Counter[str]] = field(default_factory=dict)

    @property
    def sample_size(self) -> int:
        return len(self.outcomes)

    def counts(self) -> dict[str, int]:
        c = Counter(self.outcomes)
        return {o: c.get(o, 0) for o in OUTCOMES}

    def estimates(self) -> dict[str, Any]:
        """Prevalence (among scannable files) and projected totals (of all N files)."""
        c = self.counts()
        n, big_n = self.sample_size, self.population
        n_scannable = n - c[UNSCANNABLE]
        # estimated scannable files in the corpus, for the finite-population correction
        pop_scannable = max(n_scannable, round(big_n * n_scannable / n)) if n else 0
        prevalence, projected = {}, {}
        for outcome in (FLAG, REVIEW):
            p = proportion(c[outcome], n_scannable, population=pop_scannable if n_scannable else None).to_dict()
            p["denominator"] = "scannable sampled files"
            prevalence[outcome] = p
        for outcome in OUTCOMES:
            q = proportion(c[outcome], n, population=big_n if n else None)
            # the sample itself proves at least k such files and n - k others: bounds never cross those
            k = c[outcome]
            projected[outcome] = {
                "estimate": big_n * q.estimate if q.estimate is not None else None,
                "ci95": [max(big_n * q.ci95[0], float(k)), min(big_n * q.ci95[1], float(big_n - (n - k)))],
                "sample": c[outcome],
                "method": q.method,
            }
        return {"prevalence": prevalence, "projected_totals": projected}

    def to_dict(self, include_paths: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "population": self.population,
            "sample_size": self.sample_size,
            "sampling_fraction": self.sample_size / self.population if self.population else None,
            "seed": self.seed,
            "unit": "file (an archive counts once, by its most serious member)",
            "outcomes": self.counts(),
            **self.estimates(),
            "method": METHOD,
            "versions": {k: dict(sorted(v.items())) for k, v in self.versions.items()},
        }
        if include_paths:
            d["sample"] = [{"path": p, "outcome": o} for p, o in zip(self.paths, self.outcomes, strict=True)]
        return d


ScanMany = Callable[[list[Any]], Iterable[tuple[Any, list[Verdict]]]]
"""Scans a list of uploads, yielding ``(upload, verdicts)`` for each (any order)."""


def run_survey(uploads: Iterable[Any], sample_size: int, seed: int, scan: ScanMany) -> SurveyResult:
    """Sample ``sample_size`` uploads uniformly from the stream, scan them, and summarise.

    ``uploads`` are :class:`scanner.batch.Upload` (anything with a ``path``); ``scan`` is the
    scanning pipeline (``meshscan survey`` passes the same worker pool and results DB as
    ``meshscan scan``).
    """
    rng = np.random.default_rng(seed)
    sample, population = reservoir_sample(uploads, sample_size, rng)
    by_path: dict[str, list[Verdict]] = {}
    for upload, verdicts in scan(sample):
        by_path.setdefault(upload.path, []).extend(verdicts)
    versions: dict[str, Counter[str]] = {"scanner": Counter(), "library": Counter(), "model": Counter()}
    for verdicts in by_path.values():
        for v in verdicts:
            versions["scanner"][str(v.scanner_version)] += 1
            versions["library"][str(v.library_version)] += 1
            versions["model"][str(v.model_version)] += 1
    outcomes = [file_outcome(by_path.get(u.path, [])) for u in sample]
    return SurveyResult(population, outcomes, seed, [u.path for u in sample], versions)
