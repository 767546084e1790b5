"""Run one batch through ONE urllib3 connection pool and say what happened.

:func:`run_batch` opens an ``HTTPConnectionPool`` or ``HTTPSConnectionPool``
for the batch's host, sends every query through it (from ``concurrency``
threads sharing the pool, ``block=True``, so never more than ``pool_size``
connections) and closes it. It returns a :class:`~collector.results.BatchResult`
and never raises for what a server or the network does: a request that gets no
response is a row with an ``error_kind``, and HTTP error statuses are data.

Connections are counted twice, as DESIGN.md asks: the pool's own
``num_connections``/``num_requests`` as they are, and ``tcp_connections``
through :mod:`collector.meter`, which also gives each request its
``reused``, ``connect_ms``, ``attempts`` and failed attempts.

This module knows nothing about the database.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    IncompleteRead,
    InsecureRequestWarning,
    InvalidChunkLength,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.response import BaseHTTPResponse
from urllib3.util import Timeout, parse_url

from collector import __version__
from collector.meter import (
    AttemptLog,
    AttemptRetry,
    CountingHTTPConnection,
    CountingHTTPSConnection,
    Meter,
)
from collector.results import BatchResult, ErrorKind, FailedAttempt, RequestResult
from collector.spec import BatchSpec

log = logging.getLogger(__name__)

USER_AGENT = f"collector/{__version__}"
_CHUNK = 64 * 1024
_BODY_METHODS = frozenset({"POST"})

OnRequest = Callable[[RequestResult], None]


@dataclass(frozen=True)
class _Target:
    """What every request of a batch shares, worked out once per batch."""

    origin: str  # scheme://host[:port], for the stored URL
    path: str  # the URL's path and query string, sent as the request target
    headers: dict[str, str]
    body_method: bool


def run_batch(spec: BatchSpec, *, shown: BatchSpec | None = None,
              on_request: OnRequest | None = None,
              stop: threading.Event | None = None) -> BatchResult:
    """Send every query of ``spec`` through one pool and return what happened.

    The result's URLs and queries are ``shown``'s when given: the same batch
    with its secrets as references (see :mod:`collector.secrets`), so values
    that were sent are never in the result.
    Requests come back in batch order whatever the concurrency. ``on_request``
    is called with each request's result as it finishes (from the sending
    thread), for progress. Once ``stop`` is set no new request is sent: the
    requests in flight finish, and the result holds what was collected, marked
    ``interrupted``.
    """
    queries = spec.queries or ({},)
    shown = shown or spec
    shown_queries = shown.queries or ({},)
    started_at = datetime.now(UTC)
    problem = _local_problem(spec)
    if problem is not None:
        requests = [_unsent(shown, position, query, problem)
                    for position, query in enumerate(shown_queries)]
        return _result(shown, started_at, requests, counts=(0, 0, 0))
    meter = Meter()
    target = _target(spec)
    display = target if shown is spec else _shown_target(shown)
    pool = _open_pool(spec, meter, shown_url=shown.url)
    try:
        def send(position: int) -> RequestResult | None:
            if stop is not None and stop.is_set():
                return None
            result = _send(pool, meter, spec, target, position, queries[position],
                           display=None if shown is spec else (
                               display, shown_queries[position], shown.fields))
            if on_request is not None:
                on_request(result)
            return result

        if spec.concurrency == 1:
            sent = [send(i) for i in range(len(queries))]
        else:
            with ThreadPoolExecutor(max_workers=spec.concurrency,
                                    thread_name_prefix="collector-request") as threads:
                sent = list(threads.map(send, range(len(queries))))
        counts = (pool.num_connections, pool.num_requests, meter.tcp_connections)
    finally:
        pool.close()
    requests = [r for r in sent if r is not None]
    return _result(shown, started_at, requests, counts=counts,
                   interrupted=len(requests) < len(queries))


def _result(spec: BatchSpec, started_at: datetime, requests: list[RequestResult], *,
            counts: tuple[int, int, int], interrupted: bool = False) -> BatchResult:
    return BatchResult(
        url=spec.url, method=spec.method, pool_size=spec.pool_size,
        concurrency=spec.concurrency, started_at=started_at, finished_at=datetime.now(UTC),
        num_connections=counts[0], num_requests=counts[1], tcp_connections=counts[2],
        requests=tuple(requests), interrupted=interrupted,
        tls_verified=spec.verify if spec.url.startswith("https:") else None,
    )


def _local_problem(spec: BatchSpec) -> tuple[ErrorKind, str] | None:
    """What on this machine keeps the batch from being sent at all (a missing ``ca_file``)."""
    if not spec.url.startswith("https:"):
        return None
    for key in ("ca_file", "client_cert", "client_key"):
        path = getattr(spec, key)
        if path is not None and not os.path.isfile(path):
            return "tls", f"{key} {path!r} is not a readable file on this machine"
    return None


def _unsent(spec: BatchSpec, position: int, fields: dict[str, str],
            problem: tuple[ErrorKind, str]) -> RequestResult:
    now = datetime.now(UTC)
    return RequestResult(
        position=position, method=spec.method, url=spec.url,
        query=encode_query(fields, spec.fields, shown=True), started_at=now, status=None,
        content_type=None, body_length=None, content_length=None, body_sha256=None,
        elapsed_ms=0.0, connect_ms=None, ttfb_ms=None, reused=False, attempts=0,
        error_kind=problem[0], error=problem[1],
    )


def _target(spec: BatchSpec) -> _Target:
    url = parse_url(spec.url)
    origin = f"{url.scheme}://{url.host or ''}" + (f":{url.port}" if url.port is not None else "")
    return _Target(origin=origin, path=url.request_uri,
                   headers={"User-Agent": USER_AGENT, **spec.headers},
                   body_method=spec.method in _BODY_METHODS)


def _shown_target(shown: BatchSpec) -> _Target:
    """Like :func:`_target`, keeping the path as written (``${TOKEN}``, not ``$%7BTOKEN%7D``)."""
    target = _target(shown)
    parts = urlsplit(shown.url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return dataclasses.replace(target, path=path)


def _open_pool(spec: BatchSpec, meter: Meter, *, shown_url: str) -> HTTPConnectionPool:
    url = parse_url(spec.url)
    assert url.host is not None, "job files and options check that a URL has a host"
    timeout = Timeout(connect=spec.timeout.connect, read=spec.timeout.read,
                      total=spec.timeout.total)
    pool: HTTPConnectionPool
    if url.scheme == "https":
        tls: dict[str, Any] = {"ca_certs": spec.ca_file, "cert_file": spec.client_cert,
                               "key_file": spec.client_key}
        if not spec.verify:
            # The job said so; collector warns once per batch, urllib3 need not per request.
            warnings.filterwarnings("ignore", category=InsecureRequestWarning)
            log.warning("%s: TLS certificates are not verified (verify = false)", shown_url)
            tls.update(cert_reqs="CERT_NONE", assert_hostname=False)
        pool = HTTPSConnectionPool(url.host, url.port, maxsize=spec.pool_size, block=True,
                                   timeout=timeout, meter=meter, **tls)
        pool.ConnectionCls = CountingHTTPSConnection
    else:
        pool = HTTPConnectionPool(url.host, url.port, maxsize=spec.pool_size, block=True,
                                  timeout=timeout, meter=meter)
        pool.ConnectionCls = CountingHTTPConnection
    return pool


def _retry(spec: BatchSpec, attempts: AttemptLog) -> AttemptRetry:
    # Statuses are data, retried only when the job lists them (retry_statuses), never
    # raised; redirects returned as they are. Retry-After is honoured for the listed
    # statuses up to retry_after_max, and never past the total timeout.
    cap = min(spec.retry_after_max, spec.timeout.total or spec.retry_after_max)
    retry = AttemptRetry(total=spec.retries, redirect=False, raise_on_status=False,
                         status_forcelist=spec.retry_statuses or None,
                         respect_retry_after_header=bool(spec.retry_statuses),
                         retry_after_max=max(0, int(cap)), backoff_factor=0.2, backoff_max=5)
    retry.log = attempts
    return retry


def encode_query(query: dict[str, str], common: dict[str, str], *, shown: bool = False) -> str:
    """The query's own fields, then the common ones it does not set, form-encoded.

    ``shown`` keeps ``${...}`` references readable, as they are stored.
    """
    merged = {**query, **{k: v for k, v in common.items() if k not in query}}
    return urlencode(merged, safe="${}:" if shown else "")


def _with_query(path: str, query: str) -> str:
    return path + ("&" if "?" in path else "?") + query if query else path


def _send(pool: HTTPConnectionPool, meter: Meter, spec: BatchSpec, target: _Target,
          position: int, fields: dict[str, str],
          display: tuple[_Target, dict[str, str], dict[str, str]] | None) -> RequestResult:
    query = encode_query(fields, spec.fields)
    path, headers, body = target.path, target.headers, None
    if target.body_method:
        body = query.encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", **headers}
    else:
        path = _with_query(path, query)
    # What is stored and shown: the same request with its secrets as references.
    shown_url, shown_query = target.origin + path, query
    if display is not None:
        shown_target, shown_fields, shown_common = display
        shown_query = encode_query(shown_fields, shown_common, shown=True)
        shown_path = (shown_target.path if target.body_method
                      else _with_query(shown_target.path, shown_query))
        shown_url = shown_target.origin + shown_path

    attempts = AttemptLog(classify)
    meter.begin_request()
    started_at = datetime.now(UTC)
    start = time.perf_counter()
    status = content_type = content_length = ttfb_ms = None
    body_length: int | None = None
    sha256: str | None = None
    error: tuple[ErrorKind, str] | None = None
    try:
        response = pool.urlopen(spec.method, path, body=body, headers=headers,
                                retries=_retry(spec, attempts), redirect=False,
                                preload_content=False, decode_content=False)
        if spec.follow_redirects:
            response = _follow(pool, spec, target, path, body, headers, response, attempts)
    except Exception as exc:  # one failing request never stops the batch
        error = classify(exc)
        sent = meter.on_connection_at() or start
    else:
        # Times start when the request had a connection: waiting for the pool is apart.
        sent = meter.on_connection_at() or start
        ttfb_ms = _ms_since(sent)
        status = response.status
        content_type = response.headers.get("Content-Type")
        content_length = _int_header(response.headers.get("Content-Length"))
        try:
            body_length, sha256, error = _read_body(response, spec, sent)
        finally:
            if error is not None:
                response.close()  # a half-read connection is never reused
            response.release_conn()
    failed = tuple(attempts.failed)
    if error is not None and status is not None:
        # The body failed after a response arrived: that attempt failed too.
        failed += (FailedAttempt(error_kind=error[0], error=error[1], at=datetime.now(UTC),
                                 status=status),)
    tries = len(attempts.failed) + (status is not None)
    reused, connect_ms = meter.request_counts()
    touched = meter.on_connection_at()
    return RequestResult(
        position=position, method=spec.method, url=shown_url, query=shown_query,
        started_at=started_at, status=status, content_type=content_type,
        body_length=body_length, content_length=content_length, body_sha256=sha256,
        elapsed_ms=_ms_since(sent), connect_ms=connect_ms, ttfb_ms=ttfb_ms, reused=reused,
        attempts=max(tries, 1), error_kind=error[0] if error else None,
        error=error[1] if error else None, failed_attempts=failed,
        queued_ms=None if touched is None else round((touched - start) * 1000, 3),
    )


_REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5


def _follow(pool: HTTPConnectionPool, spec: BatchSpec, target: _Target, path: str,
            body: bytes | None, headers: dict[str, str], response: BaseHTTPResponse,
            attempts: AttemptLog) -> BaseHTTPResponse:
    """Follow redirects to the same origin through the batch's pool, each hop recorded.

    A redirect to another origin, or past MAX_REDIRECTS, is the answer as it is.
    303 (and 301/302 after a POST) continue with GET, as browsers do.
    """
    method = spec.method
    for _ in range(MAX_REDIRECTS):
        location = response.headers.get("Location")
        if response.status not in _REDIRECTS or not location:
            return response
        following = urljoin(target.origin + path, location)
        parts = urlsplit(following)
        if f"{parts.scheme}://{parts.netloc}" != target.origin:
            return response  # another origin: recorded, not followed
        attempts.record_redirect(response.status, following)
        response.drain_conn()
        response.release_conn()
        if response.status == 303 or (response.status in (301, 302) and method == "POST"):
            method, body = "GET", None
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        response = pool.urlopen(method, path, body=body, headers=headers,
                                retries=_retry(spec, attempts), redirect=False,
                                preload_content=False, decode_content=False)
    return response


def _read_body(response: BaseHTTPResponse, spec: BatchSpec,
               sent: float) -> tuple[int, str | None, tuple[ErrorKind, str] | None]:
    """Stream the body as delivered, hashing it; never holds more than one chunk.

    With a total timeout the body must be complete by ``sent + total``: each read
    waits at most what is left of it (a trickling server is cut off on time), and
    the bytes that did arrive are counted either way.
    """
    digest = hashlib.sha256()
    length = 0
    total = spec.timeout.total
    deadline = sent + total if total else None
    sock = getattr(response.connection, "sock", None)
    while True:
        if deadline is not None:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return length, None, _total_timeout(spec)
            if sock is not None:
                sock.settimeout(min(spec.timeout.read, remaining))
        try:
            chunk = response.read1(min(_CHUNK, spec.max_body + 1 - length),
                                   decode_content=False)
        except Exception as exc:
            if deadline is not None and time.perf_counter() >= deadline - 0.01:
                return length, None, _total_timeout(spec)
            return length, None, classify(exc)
        if not chunk:
            return length, digest.hexdigest(), None
        length += len(chunk)
        if length > spec.max_body:
            return length, None, ("too_large",
                                  f"body is larger than max_body ({spec.max_body} bytes)")
        digest.update(chunk)
        if response.length_remaining == 0:
            # The whole Content-Length is in: done without another read to see the end.
            return length, digest.hexdigest(), None


def _total_timeout(spec: BatchSpec) -> tuple[ErrorKind, str]:
    return "read_timeout", f"body not complete within the total timeout ({spec.timeout.total:g}s)"


def classify(exc: BaseException) -> tuple[ErrorKind, str]:
    """urllib3's exception as an error kind and a one-line message (at most 500 characters)."""
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


def _int_header(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
