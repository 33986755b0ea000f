"""Optional Prometheus metrics (``--metrics-port``): files scanned / flagged / unscannable,
queue depth and latency from a file's completion to its verdict. ``prometheus_client`` is
imported only when metrics are asked for; without them every call is a no-op.

The same port answers ``GET /healthz`` with the daemon's last health decision
(:mod:`scanner.watch.health`): 200 when healthy, 503 with the JSON list of reasons otherwise."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from scanner.watch.health import STARTING, Health


class Metrics:
    """No-op metrics (the default)."""

    def scanned(self, verdict: str, latency_s: float, scan_s: float) -> None:
        pass

    def queue(self, depth: int) -> None:
        pass

    def action(self, kind: str, state: str) -> None:
        pass

    def started(self, version: str, library: str | None, model: str | None, roots: list[str]) -> None:
        pass

    def root_up(self, root: str, up: bool) -> None:
        pass

    def library(self, version: str, library: str | None, model: str | None, result: str) -> None:
        """A library reload: ``result`` ``swapped`` (``library`` now in use) or ``refused``."""

    def reconciled(self, timestamp: float) -> None:
        pass

    def actions_pending(self, by_kind: dict[str, tuple[int, float | None]]) -> None:
        pass

    def oldest_pending(self, seconds: float) -> None:
        pass

    def health(self, health: Health) -> None:
        """The latest health decision (what ``/healthz`` answers)."""

    def events_missed(self, root: str, count: int) -> None:
        """Files the folder listing found that no event announced (a watch gone deaf)."""


class PrometheusMetrics(Metrics):
    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.files = Counter("meshscan_watch_files_scanned", "Files scanned, by verdict", ["verdict"],
                             registry=self.registry)  # fmt: skip
        self.flagged = Counter("meshscan_watch_files_flagged", "Files flagged or sent to review",
                               registry=self.registry)  # fmt: skip
        self.unscannable = Counter("meshscan_watch_files_unscannable", "Files that could not be scanned",
                                   registry=self.registry)  # fmt: skip
        self.depth = Gauge("meshscan_watch_queue_depth", "Files waiting to settle, queued or being scanned",
                           registry=self.registry)  # fmt: skip
        buckets = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)
        self.latency = Histogram("meshscan_watch_latency_seconds", "From a file's completion to its verdict",
                                 buckets=buckets, registry=self.registry)  # fmt: skip
        self.scan = Histogram("meshscan_watch_scan_seconds", "Time in the scan worker", buckets=buckets,
                              registry=self.registry)  # fmt: skip
        self.actions = Counter("meshscan_watch_actions", "Actions carried out, by kind and outcome",
                               ["kind", "state"], registry=self.registry)  # fmt: skip
        r = self.registry
        self.build = Gauge("meshscan_watch_build_info", "Versions in use (value 1)", ["version", "library", "model"],
                           registry=r)  # fmt: skip
        self.reloads = Counter("meshscan_watch_library_reloads", "Library reloads, by result (swapped, refused)",
                               ["result"], registry=r)  # fmt: skip
        self.up = Gauge("meshscan_watch_root_up", "1 while the watched folder is watched, 0 while it is gone",
                        ["root"], registry=r)  # fmt: skip
        self.roots = Gauge("meshscan_watch_roots_watched", "Watched folders being watched", registry=r)
        self.last_reconcile = Gauge("meshscan_watch_last_reconcile_timestamp_seconds",
                                    "When the folders were last listed", registry=r)  # fmt: skip
        self.pending = Gauge("meshscan_watch_actions_pending", "Actions not yet done (failing ones included)",
                             ["kind"], registry=r)  # fmt: skip
        self.oldest = Gauge("meshscan_watch_oldest_pending_seconds",
                            "How long the oldest file waiting for its verdict has waited", registry=r)  # fmt: skip
        self.missed = Counter("meshscan_watch_events_missed", "Files the periodic listing found that no event "
                              "announced (the folder's watch was re-armed)", ["root"], registry=r)  # fmt: skip
        self._up: dict[str, bool] = {}
        self._health = STARTING
        self.server, self.thread = _serve(port, host, self._app())

    def started(self, version: str, library: str | None, model: str | None, roots: list[str]) -> None:
        self.build.labels(version, library or "", model or "").set(1)
        for root in roots:
            self.root_up(root, True)

    def library(self, version: str, library: str | None, model: str | None, result: str) -> None:
        self.reloads.labels(result).inc()
        if result == "swapped":  # build_info names only the versions in use now
            self.build.clear()
            self.build.labels(version, library or "", model or "").set(1)

    def root_up(self, root: str, up: bool) -> None:
        self._up[root] = up
        self.up.labels(root).set(int(up))
        self.roots.set(sum(self._up.values()))

    def reconciled(self, timestamp: float) -> None:
        self.last_reconcile.set(timestamp)

    def actions_pending(self, by_kind: dict[str, tuple[int, float | None]]) -> None:
        for kind in ("quarantine", "command"):
            self.pending.labels(kind).set(by_kind.get(kind, (0, None))[0])

    def oldest_pending(self, seconds: float) -> None:
        self.oldest.set(seconds)

    def health(self, health: Health) -> None:
        self._health = health  # one reference swapped: safe to read from the server's threads

    def events_missed(self, root: str, count: int) -> None:
        self.missed.labels(root).inc(count)

    def _app(self) -> Callable[..., Iterable[bytes]]:
        """Prometheus's WSGI app, with ``/healthz`` in front of it."""
        from prometheus_client import make_wsgi_app

        metrics_app = make_wsgi_app(self.registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO", "").rstrip("/") != "/healthz":
                return metrics_app(environ, start_response)
            h = self._health
            body = h.to_json().encode()
            status = "200 OK" if h.ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                                    ("Cache-Control", "no-store")])  # fmt: skip
            return [body]

        return app

    def scanned(self, verdict: str, latency_s: float, scan_s: float) -> None:
        self.files.labels(verdict).inc()
        if verdict in ("flag", "review"):
            self.flagged.inc()
        elif verdict == "unscannable":
            self.unscannable.inc()
        self.latency.observe(latency_s)
        self.scan.observe(scan_s)

    def queue(self, depth: int) -> None:
        self.depth.set(depth)

    def action(self, kind: str, state: str) -> None:
        self.actions.labels(kind, state).inc()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _serve(port: int, host: str, app: Callable[..., Iterable[bytes]]) -> tuple[Any, threading.Thread]:
    """Serve ``app`` in a daemon thread (as ``prometheus_client.start_http_server`` does, which
    cannot take another app)."""
    import socket
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass  # no line per scrape on stderr

    server = make_server(host, port, app, Server, handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, name="meshscan-metrics", daemon=True)
    thread.start()
    return server, thread
