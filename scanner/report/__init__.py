"""Prevalence reports for policy researchers (``meshscan report``, ``meshscan survey``).

One module per stage: :mod:`records` reads verdict records (results DB read-only, or a JSONL
log); :mod:`aggregate` turns them into counts, proportions and tables; :mod:`stats` holds the
Wilson interval; :mod:`plots` draws the figures (matplotlib lives here and nowhere else in
meshscan); :mod:`render` writes report.html, summary.json and the CSVs; :mod:`survey` samples a
large corpus (reservoir sampling) and projects totals.
"""
