"""A small data set whose report figures are worked out by hand in tests/test_report.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from collector.results import BatchResult, ConnectionResult, RequestResult
from collector.store import Store

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday


def request(position: int, status: int | None, elapsed_ms: float, *, body: int | None = 0,
            sha: str | None = None, reused: bool = False, error_kind: str | None = None,
            at: datetime = T0, query: str = "q=x") -> RequestResult:
    return RequestResult(
        position=position, method="GET", url=f"http://h.test/s?{query}", query=query,
        started_at=at, status=status, content_type="text/plain" if status else None,
        body_length=body, content_length=body, body_sha256=sha, elapsed_ms=elapsed_ms,
        connect_ms=None if reused else 1.0, ttfb_ms=elapsed_ms / 2 if status else None,
        reused=reused, attempts=1, error_kind=error_kind,  # type: ignore[arg-type]
        error="it failed" if error_kind else None,
        content_sha256=sha if status == 200 else None,
    )


def batch(at: datetime, tcp: int, *requests: RequestResult) -> BatchResult:
    """A batch whose ``tcp`` connections were opened by its first requests not re-used."""
    openers = [r.position for r in requests if not r.reused][:tcp]
    return BatchResult(url="http://h.test/s", method="GET", pool_size=1, concurrency=1,
                       started_at=at, finished_at=at + timedelta(seconds=1),
                       num_connections=1, num_requests=len(requests), tcp_connections=tcp,
                       requests=requests, connections=tuple(
                           ConnectionResult(number=n, position=p, opened_at=at,
                                            remote_address="192.0.2.1", remote_port=80,
                                            dns_ms=0.5, tcp_ms=0.5)
                           for n, p in enumerate(openers, start=1)))


def fill(store: Store) -> None:
    """Job a: three batches (ok, partial, ok); job b: one batch with no response."""
    a1, a2, a3, b1 = T0, T0 + timedelta(hours=1), T0 + timedelta(hours=2), \
        T0 + timedelta(minutes=30)
    store.save_batch(batch(a1, 1,
                           request(0, 200, 10, body=100, sha="s1", at=a1, query="q=python"),
                           request(1, 200, 20, body=200, sha="p1", reused=True, at=a1,
                                   query="q=php"),
                           request(2, 404, 30, body=50, reused=True, at=a1, query="q=404"),
                           request(3, 500, 40, body=0, reused=True, at=a1, query="q=500")),
                     job_name="a")
    store.save_batch(batch(b1, 0, request(0, None, 3, body=None, error_kind="connect_refused",
                                          at=b1)), job_name="b")
    store.save_batch(batch(a2, 2,
                           request(0, 200, 50, body=300, sha="s2", at=a2, query="q=python"),
                           request(1, None, 1000, body=None, error_kind="read_timeout",
                                   at=a2, query="q=php")),
                     job_name="a")
    store.save_batch(batch(a3, 1, request(0, 301, 5, body=0, sha="e", at=a3, query="q=python")),
                     job_name="a")
