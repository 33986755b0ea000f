"""The results database's former home, kept so that existing imports keep working.

The ``results`` table is owned by :mod:`scanner.store.results` (schema and every query); this
module only re-exports its names, ``ResultsDB`` being :class:`~scanner.store.results.ResultsStore`
(same constructor). New code imports :mod:`scanner.store.results`.
"""

from __future__ import annotations

from scanner.store.results import SCHEMA, SCHEMA_VERSION, NotAResultsDB, ResultsStore, local_abspath

ResultsDB = ResultsStore

__all__ = ["SCHEMA", "SCHEMA_VERSION", "NotAResultsDB", "ResultsDB", "ResultsStore", "local_abspath"]
