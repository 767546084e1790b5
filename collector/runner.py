"""Run one batch through ONE urllib3 connection pool and say what happened.

:func:`run_batch` opens an ``HTTPConnectionPool`` or ``HTTPSConnectionPool``
for the batch's host, sends every query through it (from ``concurrency``
threads sharing the pool, ``block=True``, so never more than ``pool_size``
connections) and closes it. It returns a :class:`~collector.results.BatchResult`
and never raises for what a server or the network does: a request that gets no
response is a row with an ``error_kind``, and HTTP error statuses are data.

Connections are counted twice, as DESIGN.md asks. The pool's own
``num_connections``/``num_requests`` are copied as they are; ``tcp_connections``
counts ``connect()`` calls that succeeded on the pool's connection objects,
which is what really goes up when a server closes a kept-alive connection and
urllib3 quietly reconnects the same object. Each connect and each attempt is
also charged to the request in progress on that thread, which gives a
request's ``reused``, ``connect_ms`` and ``attempts``.

This module knows nothing about the database.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    IncompleteRead,
    InvalidChunkLength,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.response import BaseHTTPResponse
from urllib3.util import Retry, Timeout, parse_url

from collector import __version__
from collector.config import BatchSpec
from collector.results import BatchResult, ErrorKind, RequestResult

log = logging.getLogger(__name__)

USER_AGENT = f"collector/{__version__}"
_CHUNK = 64 * 1024
_BODY_METHODS = frozenset({"POST"})


_Conn = TypeVar("_Conn", bound=HTTPConnection)


class _Meter:
    """Counts one pool's TCP connects and charges them, and attempts, to the thread's request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current = threading.local()
        self.tcp_connections = 0

    def begin_request(self) -> None:
        self._current.connect_ms = None
        self._current.reused = False
        self._current.attempts = 0

    def attempted(self) -> None:
        self._current.attempts += 1
        self._current.reused = False  # until this attempt's request() says otherwise

    def connected(self, ms: float) -> None:
        with self._lock:
            self.tcp_connections += 1
        self._current.connect_ms = ms

    def sent(self, *, reused: bool) -> None:
        self._current.reused = reused

    def request_counts(self) -> tuple[bool, float | None, int]:
        """For this thread's request: whether its last attempt was sent over an
        already-used connection, the last connect's duration, the attempts."""
        c = self._current
        return c.reused, c.connect_ms, c.attempts


def _counting(base: type[_Conn], meter: _Meter) -> type[_Conn]:
    """A subclass of ``base`` that reports its connects, and whether a request re-used it.

    A request is sent over a re-used connection when the socket is open and
    has already carried a request since it was connected. (HTTPS connects
    before ``request()``, plain HTTP inside it.)
    """

    class CountingConnection(base):  # type: ignore[valid-type,misc]
        _carried_request = False

        def connect(self) -> None:
            start = time.perf_counter()
            super().connect()
            self._carried_request = False
            meter.connected(round((time.perf_counter() - start) * 1000, 3))

        def request(self, *args: Any, **kwargs: Any) -> None:
            meter.sent(reused=self.sock is not None and self._carried_request)
            super().request(*args, **kwargs)  # plain HTTP connects in here
            self._carried_request = True

    # urllib3 names the connection class in its messages; keep them as users know them.
    CountingConnection.__name__ = CountingConnection.__qualname__ = base.__name__

    return CountingConnection


class _AttemptCounting:
    """Pool mixin: one call of ``_make_request`` is one attempt (what ``num_requests`` counts)."""

    meter: _Meter

    def _make_request(self, *args: Any, **kwargs: Any) -> BaseHTTPResponse:
        self.meter.attempted()
        return super()._make_request(*args, **kwargs)  # type: ignore[misc,no-any-return]


class _HTTPPool(_AttemptCounting, HTTPConnectionPool):
    pass


class _HTTPSPool(_AttemptCounting, HTTPSConnectionPool):
    pass


def _open_pool(spec: BatchSpec, meter: _Meter) -> HTTPConnectionPool:
    url = parse_url(spec.url)
    assert url.host is not None, "config checks that a URL has a host"
    options: dict[str, Any] = {
        "maxsize": spec.pool_size,
        "block": True,
        "timeout": Timeout(connect=spec.timeout.connect, read=spec.timeout.read,
                           total=spec.timeout.total),
        "retries": _retry(spec),
    }
    pool: HTTPConnectionPool
    if url.scheme == "https":
        pool = _HTTPSPool(url.host, url.port, ca_certs=spec.ca_file, **options)
        pool.ConnectionCls = _counting(HTTPSConnection, meter)
    else:
        pool = _HTTPPool(url.host, url.port, **options)
        pool.ConnectionCls = _counting(HTTPConnection, meter)
    pool.meter = meter  # read by _AttemptCounting
    return pool


def _retry(spec: BatchSpec) -> Retry:
    # Statuses are data: never retried, never raised, redirects returned as they are.
    return Retry(total=spec.retries, redirect=False, raise_on_status=False,
                 respect_retry_after_header=False, backoff_factor=0.2, backoff_max=5)


def run_batch(spec: BatchSpec) -> BatchResult:
    """Send every query of ``spec`` through one pool and return what happened.

    Requests come back in batch order whatever the concurrency.
    """
    meter = _Meter()
    queries = spec.queries or ({},)
    started_at = datetime.now(UTC)
    pool = _open_pool(spec, meter)
    try:
        def send(position: int) -> RequestResult:
            return _send(pool, meter, spec, position, queries[position])

        if spec.concurrency == 1:
            requests = [send(i) for i in range(len(queries))]
        else:
            with ThreadPoolExecutor(max_workers=spec.concurrency,
                                    thread_name_prefix="collector-request") as threads:
                requests = list(threads.map(send, range(len(queries))))
        num_connections, num_requests = pool.num_connections, pool.num_requests
    finally:
        pool.close()
    return BatchResult(
        url=spec.url, method=spec.method, pool_size=spec.pool_size,
        concurrency=spec.concurrency, started_at=started_at, finished_at=datetime.now(UTC),
        num_connections=num_connections, num_requests=num_requests,
        tcp_connections=meter.tcp_connections, requests=tuple(requests),
    )


def encode_query(query: dict[str, str], common: dict[str, str]) -> str:
    """The query's own fields, then the common ones it does not set, form-encoded."""
    merged = {**query, **{k: v for k, v in common.items() if k not in query}}
    return urlencode(merged)


def _send(pool: HTTPConnectionPool, meter: _Meter, spec: BatchSpec, position: int,
          fields: dict[str, str]) -> RequestResult:
    query = encode_query(fields, spec.fields)
    target = parse_url(spec.url).request_uri
    headers = {"User-Agent": USER_AGENT, **spec.headers}
    body: bytes | None = None
    if spec.method in _BODY_METHODS:
        body = query.encode()
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    elif query:
        target += ("&" if "?" in target else "?") + query
    url = _origin(spec.url) + target

    meter.begin_request()
    started_at = datetime.now(UTC)
    start = time.perf_counter()
    status = content_type = content_length = ttfb_ms = None
    body_length: int | None = None
    sha256: str | None = None
    error: tuple[ErrorKind, str] | None = None
    try:
        response = pool.urlopen(spec.method, target, body=body, headers=headers,
                                redirect=False, preload_content=False, decode_content=False)
    except Exception as exc:  # one failing request never stops the batch
        error = _classify(exc)
    else:
        ttfb_ms = _ms_since(start)
        status = response.status
        content_type = response.headers.get("Content-Type")
        content_length = _int_header(response.headers.get("Content-Length"))
        try:
            body_length, sha256, error = _read_body(response, spec, start)
        finally:
            if error is not None:
                response.close()  # a half-read connection is never reused
            response.release_conn()
    reused, connect_ms, attempts = meter.request_counts()
    return RequestResult(
        position=position, method=spec.method, url=url, query=query, started_at=started_at,
        status=status, content_type=content_type, body_length=body_length,
        content_length=content_length, body_sha256=sha256, elapsed_ms=_ms_since(start),
        connect_ms=connect_ms, ttfb_ms=ttfb_ms, reused=reused,
        attempts=attempts, error_kind=error[0] if error else None,
        error=error[1] if error else None,
    )


def _read_body(response: BaseHTTPResponse, spec: BatchSpec,
               start: float) -> tuple[int, str | None, tuple[ErrorKind, str] | None]:
    """Stream the body as delivered, hashing it; never holds more than one chunk."""
    digest = hashlib.sha256()
    length = 0
    deadline = start + spec.timeout.total if spec.timeout.total else None
    try:
        while chunk := response.read(min(_CHUNK, spec.max_body + 1 - length),
                                     decode_content=False):
            length += len(chunk)
            if length > spec.max_body:
                return length, None, ("too_large",
                                      f"body is larger than max_body ({spec.max_body} bytes)")
            digest.update(chunk)
            if deadline is not None and time.perf_counter() > deadline:
                return length, None, ("read_timeout",
                                      f"body not read within the total timeout "
                                      f"({spec.timeout.total:g}s)")
    except Exception as exc:
        return length, None, _classify(exc)
    return length, digest.hexdigest(), None


def _classify(exc: BaseException) -> tuple[ErrorKind, str]:
    """Translate urllib3's exception into an error kind and a one-line message."""
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    kind: ErrorKind
    if isinstance(exc, NameResolutionError):
        kind = "dns"
    elif isinstance(exc, NewConnectionError):
        refused = isinstance(exc.__cause__ or exc.__context__, ConnectionRefusedError)
        kind = "connect_refused" if refused else "other"
    elif isinstance(exc, ConnectTimeoutError):
        kind = "connect_timeout"
    elif isinstance(exc, ReadTimeoutError | TimeoutError):
        kind = "read_timeout"
    elif isinstance(exc, SSLError):
        kind = "tls"
    elif isinstance(exc, ProtocolError | IncompleteRead | InvalidChunkLength):
        kind = "protocol"
    else:
        kind = "other"
        if not isinstance(exc, HTTPError | OSError):
            log.warning("unexpected error from a request", exc_info=exc)
    message = " ".join(f"{type(exc).__name__}: {exc}".split())
    return kind, message[:500]


def _origin(url: str) -> str:
    parsed = parse_url(url)
    netloc = parsed.host or ""
    if parsed.port is not None:
        netloc += f":{parsed.port}"
    return f"{parsed.scheme}://{netloc}"


def _int_header(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
