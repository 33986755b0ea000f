"""Where scans run. Every engine runs :func:`scanner.pipeline.scan_one` in another process, so
that an upload past its time or memory limit, or one that crashes a parser, loses only itself.

- :mod:`~scanner.engines.messages`: the JSON both sides speak (never pickle: the worker is
  where untrusted bytes are parsed, so nothing it sends may execute code in the parent);
- :mod:`~scanner.engines.worker`: the worker side, written once - warm-up, one BLAS thread,
  the address-space cap, the contained scan, the task loop over a pipe or stdin;
- :mod:`~scanner.engines.parent`: the parent side, written once - send a task, wait with a
  deadline, decode the reply, map a worker that died to ``worker-crashed`` and one that is
  late to ``limit:time``;
- :mod:`~scanner.engines.local` (forked pool: ``scan``, ``survey``, ``watch``, ``serve``),
  :mod:`~scanner.engines.guarded` (one child fed over stdin, for Dask workers) and
  :mod:`~scanner.engines.dask_engine`, behind the :class:`~scanner.engines.base.Engine`
  protocol.

This ``__init__`` imports nothing, so that a worker child loads only what it runs.
"""
