"""Optional Prometheus metrics (``--metrics-port``): files scanned / flagged / unscannable,
queue depth and latency from a file's completion to its verdict. ``prometheus_client`` is
imported only when metrics are asked for; without them every call is a no-op."""

from __future__ import annotations


class Metrics:
    """No-op metrics (the default)."""

    def scanned(self, verdict: str, latency_s: float, scan_s: float) -> None:
        pass

    def queue(self, depth: int) -> None:
        pass

    def action(self, kind: str, state: str) -> None:
        pass


class PrometheusMetrics(Metrics):
    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

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
        self.server, self.thread = start_http_server(port, addr=host, registry=self.registry)

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
