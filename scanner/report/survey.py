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
* *Projected totals* estimate how many files of the corpus have the outcome, on the **same
  denominator** as the prevalence: ``flag``, ``review`` and ``clear`` are the prevalence (its
  estimate and its interval) times the estimated number of scannable files, so a projected
  total divided by that population is the prevalence printed beside it; ``unscannable`` is
  its share of all sampled files times ``N``. Each interval is narrowed to what the sample
  proves: at least ``k`` such files, and at least ``n - k`` others.

``meshscan report`` recomputes all of this from a survey's database (``survey --db`` records
the population, the seed and the sampled paths), so both print the same intervals.
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
    return outcome_of(v.verdict for v in verdicts)


def outcome_of(verdicts: Iterable[str]) -> str:
    """The most serious of these verdicts (``unscannable`` when there are none)."""
    found = set(verdicts)
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
        for outcome in (FLAG, REVIEW, CLEAR):
            q = proportion(c[outcome], n_scannable, population=pop_scannable if n_scannable else None)
            if outcome != CLEAR:
                prevalence[outcome] = {**q.to_dict(), "denominator": "scannable sampled files"}
            projected[outcome] = _projected(q, pop_scannable, "estimated scannable files in the corpus")
        q = proportion(c[UNSCANNABLE], n, population=big_n if n else None)
        projected[UNSCANNABLE] = _projected(q, big_n, "files in the corpus")
        fpc = (pop_scannable - n_scannable) / (pop_scannable - 1) if pop_scannable > 1 else 0.0
        return {
            "prevalence": prevalence,
            "projected_totals": projected,
            "finite_population_correction": {
                "population": pop_scannable,
                "population_meaning": "estimated scannable files in the corpus (N * scannable sampled / n)",
                "factor": fpc,
                "formula": "(N - n) / (N - 1), applied as the effective sample size n / factor",
            },
        }

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


def _projected(q: Any, population: int, denominator: str) -> dict[str, Any]:
    """``population`` times the proportion ``q`` (estimate and interval), the interval
    narrowed to what the sample proves: at least ``k`` such files and ``n - k`` others."""
    k, n = q.k, q.n
    return {
        "estimate": population * q.estimate if q.estimate is not None else None,
        "ci95": [max(population * q.ci95[0], float(k)), min(population * q.ci95[1], float(population - (n - k)))],
        "sample": k,
        "population": population,
        "denominator": denominator,
        "proportion": q.to_dict(),
        "method": q.method,
    }


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


META_KEY = "survey"
"""The ``meta`` row of a results database under which ``survey --db`` records its design."""


def survey_meta(result: SurveyResult, roots: list[str]) -> dict[str, Any]:
    """What ``survey --db`` records beside the verdicts, so that ``meshscan report`` on the
    database keeps the population, the finite-population correction and the projected
    totals: the design (population, seed, roots) and which rows are the sample."""
    return {"population": result.population, "seed": result.seed, "roots": roots, "sample": result.paths}


def from_meta(meta: dict[str, Any], records_by_path: dict[str, list[dict[str, Any]]]) -> SurveyResult:
    """The survey again, from its recorded design and the verdict records now stored for its
    sampled paths (a sampled path with no record left counts as unscannable, as in the
    survey itself)."""
    paths = [str(p) for p in meta.get("sample") or []]
    outcomes = [outcome_of(str(r.get("verdict")) for r in records_by_path.get(p, [])) for p in paths]
    versions: dict[str, Counter[str]] = {"scanner": Counter(), "library": Counter(), "model": Counter()}
    for p in paths:
        for r in records_by_path.get(p, []):
            for name in versions:
                versions[name][str(r.get(f"{name}_version"))] += 1
    return SurveyResult(int(meta["population"]), outcomes, int(meta["seed"]), paths, versions)
