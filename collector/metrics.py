"""Prometheus metrics of a daemon, in a registry of its own, served over HTTP on request."""

from __future__ import annotations

from typing import TYPE_CHECKING

from collector.errors import ConfigError
from collector.quantities import show
from collector.results import BatchResult

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

# Request times from 5 ms to 30 s.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def request_outcome(status: int | None, error_kind: str | None) -> str:
    """``2xx`` .. ``5xx`` for a response, else the error kind."""
    if error_kind is not None:
        return error_kind
    return f"{(status or 0) // 100}xx"


class Metrics:
    """What a daemon counts: batches, requests, times, connections, skipped fires."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        r = self.registry
        self.batches = Counter("collector_batches", "Batches stored, by job and status.",
                               ["job", "status"], registry=r)
        self.requests = Counter("collector_requests", "Requests, by job and outcome "
                                "(2xx..5xx, or the error kind).", ["job", "outcome"], registry=r)
        self.request_seconds = Histogram("collector_request_duration_seconds",
                                         "Time from sending a request to the end of its body.",
                                         ["job"], buckets=_BUCKETS, registry=r)
        self.tcp_connections = Counter("collector_tcp_connections",
                                       "TCP connections really opened.", ["job"], registry=r)
        self.skipped = Counter("collector_fires_skipped", "Fires not run here: claimed by "
                               "another daemon, previous batch still running, or failed to "
                               "start.", ["job", "reason"], registry=r)
        self.not_stored = Counter("collector_batches_not_stored", "Batches that ran but could "
                                  "not be stored.", ["job"], registry=r)
        self.last_batch = Gauge("collector_last_batch_timestamp_seconds",
                                "When the job's last batch here finished (Unix time).", ["job"],
                                registry=r)
        self.clock_offset = Gauge("collector_clock_offset_seconds", "The database's clock "
                                  "minus this host's, as last measured (collector goes by the "
                                  "database's).", registry=r)
        self.jobs = Gauge("collector_jobs_scheduled", "Jobs this daemon schedules.", registry=r)
        self.spool_depth = Gauge("collector_spool_depth", "Batches waiting in the spool for the "
                                 "database.", registry=r)
        self.spool_write_failures = Counter(
            "collector_spool_write_failures", "Batches the database could not take and the "
            "spool could not keep either (a full or read-only disk): lost.", registry=r)
        self._server: WSGIServer | None = None

    def batch(self, job: str, result: BatchResult, *, stored: bool) -> None:
        if stored:
            self.batches.labels(job, result.status).inc()
        else:
            self.not_stored.labels(job).inc()
        for request in result.requests:
            self.requests.labels(job, request_outcome(request.status, request.error_kind)).inc()
            self.request_seconds.labels(job).observe(request.elapsed_ms / 1000)
        self.tcp_connections.labels(job).inc(result.tcp_connections)
        self.last_batch.labels(job).set(result.finished_at.timestamp())

    def serve(self, port: int, address: str) -> int:
        """Serve ``/metrics`` on ``address:port`` (0: any free port); the port used.

        ConfigError when the address cannot be listened on (in use, not this host's,
        not a name that resolves).
        """
        import socket

        from prometheus_client import start_http_server

        try:
            self._server, _thread = start_http_server(port, address, registry=self.registry)
        except socket.gaierror as exc:
            raise ConfigError(f"--metrics-address {show(address)}: not an address of this "
                              f"host ({exc.strerror})") from None
        except OSError as exc:
            raise ConfigError(f"--metrics-port {port} on {address}: cannot listen there "
                              f"({exc.strerror})") from None
        return int(self._server.server_port)

    @property
    def port(self) -> int | None:
        """The port ``/metrics`` is served on, once :meth:`serve` was called."""
        return None if self._server is None else int(self._server.server_port)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
