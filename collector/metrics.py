"""Prometheus metrics of a daemon, in a registry of its own, served over HTTP on request.

Named as Prometheus' conventions ask (its naming guide, and blackbox_exporter's): base
units, ``_total`` counters, no ``_created`` series, and the job's name in the label
``collector_job`` (``job`` and ``instance`` are the labels a scrape adds itself). Every
per-job series exists from the job's first schedule (:meth:`Metrics.job_scheduled`), so
a rate or an alert never waits for a first event; the certificate expiry once a batch
has seen one.
"""

from __future__ import annotations

import platform
import threading
from typing import TYPE_CHECKING, Any, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from collector import __version__
from collector.errors import ConfigError
from collector.quantities import show
from collector.results import BATCH_STATUSES, BatchResult, ErrorKind

if TYPE_CHECKING:
    from collections.abc import Iterator
    from wsgiref.simple_server import WSGIServer

    from prometheus_client import Metric

# Request times from 0.1 ms to 30 s, 1-2-5 a decade: a local target answers in well under
# a millisecond, and histogram_quantile() can only resolve what the buckets do.
BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5,
           1.0, 2.0, 5.0, 10.0, 30.0)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
OUTCOMES = (*STATUS_CLASSES, *get_args(ErrorKind))
LABEL = "collector_job"


class _Snapshots(CollectorRegistry):
    """A registry whose scrape holds ``lock``: what one batch changes is in a scrape
    whole, so its figures agree with each other, and with the database."""

    def __init__(self, lock: threading.Lock) -> None:
        super().__init__()
        self._batch_lock = lock

    def collect(self) -> Iterator[Metric]:
        with self._batch_lock:
            collected = list(super().collect())
        yield from collected


def request_outcome(status: int | None, error_kind: str | None) -> str:
    """``2xx`` .. ``5xx`` for a response, else the error kind."""
    if error_kind is not None:
        return error_kind
    return f"{(status or 0) // 100}xx"


class Metrics:
    """What a daemon counts: batches, requests, times, connections, skipped fires."""

    def __init__(self) -> None:
        from prometheus_client import disable_created_metrics

        from collector.daemon.firing import SKIP_REASONS

        # A _created twin of every series is noise to a scrape.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self._lock = threading.Lock()
        self.registry = _Snapshots(self._lock)
        r = self.registry
        self._skip_reasons = tuple(SKIP_REASONS)
        self.build_info = Gauge("collector_build_info", "collector's version, and Python's, "
                                "as labels; always 1.", ["version", "python"], registry=r)
        self.build_info.labels(__version__, platform.python_version()).set(1)
        self.batches = Counter("collector_batches", "Batches stored, by job and status.",
                               [LABEL, "status"], registry=r)
        self.requests = Counter("collector_requests", "Requests, by job and outcome "
                                "(1xx..5xx for a response, else the error kind).",
                                [LABEL, "outcome"], registry=r)
        self.request_seconds = Histogram(
            "collector_request_duration_seconds", "Time from sending a request to the end "
            "of its body, for the requests that got a response.", [LABEL], buckets=BUCKETS,
            registry=r)
        self.checks = Counter("collector_checks", "The job's checks on its responses, by "
                              "check and result (passed or failed).",
                              [LABEL, "check", "result"], registry=r)
        self.tcp_connections = Counter("collector_tcp_connections",
                                       "TCP connections really opened.", [LABEL], registry=r)
        self.skipped = Counter("collector_fires_skipped", "Fires not run here: claimed by "
                               "another daemon, previous batch still running, or failed to "
                               "start.", [LABEL, "reason"], registry=r)
        self.not_stored = Counter("collector_batches_not_stored", "Batches that ran but could "
                                  "not be stored.", [LABEL], registry=r)
        self.last_batch = Gauge("collector_last_batch_timestamp_seconds",
                                "When the job's last batch here finished (Unix time).", [LABEL],
                                registry=r)
        self.last_success = Gauge("collector_last_batch_success", "1 when the job's last "
                                  "batch here had every request answered, else 0.", [LABEL],
                                  registry=r)
        self.cert_expiry = Gauge("collector_tls_cert_expiry_timestamp_seconds", "The earliest "
                                 "certificate expiry the job's last batch here saw (Unix "
                                 "time).", [LABEL], registry=r)
        self.clock_offset = Gauge("collector_clock_offset_seconds", "The database's clock "
                                  "minus this host's, as last measured (collector goes by the "
                                  "database's).", registry=r)
        self.jobs = Gauge("collector_jobs_scheduled", "Jobs this daemon schedules.", registry=r)
        self.spool_depth = Gauge("collector_spool_depth", "Batches waiting in the spool for the "
                                 "database.", registry=r)
        self.spool_write_failures = Counter(
            "collector_spool_write_failures", "Batches the database could not take and the "
            "spool could not keep either (a full or read-only disk): lost.", registry=r)
        self._check_names: dict[str, tuple[str, ...]] = {}  # by job, as scheduled
        self._server: WSGIServer | None = None

    def job_scheduled(self, job: str, checks: tuple[str, ...] = ()) -> None:
        """Make every per-job series of ``job`` exist, at zero (a job scheduled anew keeps
        what it had); ``checks``: its checks' names."""
        kept = set(checks)
        for metric, labels in self._series(job):
            if metric is self.checks and labels[1] not in kept:
                metric.remove(*labels)  # a check the job no longer has
        self._check_names[job] = checks
        for metric, labels in self._series(job):
            metric.labels(*labels)

    def job_unscheduled(self, job: str) -> None:
        """Remove ``job``'s series: it is no longer scheduled here."""
        for metric, labels in self._series(job):
            metric.remove(*labels)
        for metric in (self.last_batch, self.last_success, self.cert_expiry):
            metric.remove(job)
        self._check_names.pop(job, None)

    def _series(self, job: str) -> Iterator[tuple[Any, tuple[str, ...]]]:
        """Each per-job series that exists from the job's schedule: metric and labels."""
        for check in self._check_names.get(job, ()):
            for outcome in ("passed", "failed"):
                yield self.checks, (job, check, outcome)
        yield from ((self.batches, (job, status)) for status in BATCH_STATUSES)
        yield from ((self.requests, (job, outcome)) for outcome in OUTCOMES)
        yield from ((self.skipped, (job, reason)) for reason in self._skip_reasons)
        for metric in (self.request_seconds, self.tcp_connections, self.not_stored):
            yield metric, (job,)

    def batch(self, job: str, result: BatchResult, *, stored: bool) -> None:
        with self._lock:  # a scrape sees a batch's figures all, or none of them
            self._batch(job, result, stored=stored)

    def _batch(self, job: str, result: BatchResult, *, stored: bool) -> None:
        if stored:
            self.batches.labels(job, result.status).inc()
        else:
            self.not_stored.labels(job).inc()
        requests = self.requests
        seconds = self.request_seconds.labels(job)
        for request in result.requests:
            requests.labels(job, request_outcome(request.status, request.error_kind)).inc()
            if request.status is not None:
                seconds.observe(request.elapsed_ms / 1000)
            for check in request.checks:
                self.checks.labels(job, check.name, "passed" if check.passed else "failed").inc()
        self.tcp_connections.labels(job).inc(result.tcp_connections)
        self.last_batch.labels(job).set(result.finished_at.timestamp())
        self.last_success.labels(job).set(1 if result.succeeded else 0)
        expiry = min((c.chain_not_after for c in result.connections
                      if c.chain_not_after is not None), default=None)
        if expiry is not None:
            self.cert_expiry.labels(job).set(expiry.timestamp())

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
