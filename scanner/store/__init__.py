"""Stores: the persistent state meshscan shares between commands.

:mod:`scanner.store.results` owns the ``results`` table (every verdict with its file's size,
mtime and sha256): its schema and every query on it. ``scan --db``, ``survey --db``, ``serve``
and the watch journal write it; ``report``, ``review`` and ``export`` read it, all through
:class:`~scanner.store.results.ResultsStore`. The database is a SQLite file or, given a
``postgresql://`` URL, a PostgreSQL database many machines share: :mod:`scanner.store.backend`
chooses, :mod:`scanner.store.postgres` holds every dialect difference.
"""
