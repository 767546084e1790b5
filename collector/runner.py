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

import hashlib
import logging
import os
import re
import ssl
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    IncompleteRead,
    InsecureRequestWarning,
    InvalidChunkLength,
    InvalidHeader,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.poolmanager import PoolManager, ProxyManager
from urllib3.response import BaseHTTPResponse
from urllib3.util import Timeout, Url, make_headers, parse_url
from urllib3.util.ssl_ import create_urllib3_context

from collector import __version__
from collector.captures import Captures
from collector.certificates import Certificates
from collector.checks import Body, Checks
from collector.deadline import Deadline, Watchdog
from collector.meter import (
    AttemptRetry,
    CountingHTTPConnection,
    CountingHTTPSConnection,
    Meter,
    Opened,
    ms_since,
    socks_connection_classes,
    timed,
)
from collector.results import (
    BatchResult,
    ConnectionResult,
    ErrorKind,
    FailedAttempt,
    Known,
    RequestResult,
)
from collector.spec import BODY_METHODS, BatchSpec, encode_query, with_query

log = logging.getLogger(__name__)

USER_AGENT = f"collector/{__version__}"
_CHUNK = 64 * 1024

OnRequest = Callable[[RequestResult], None]


@dataclass(frozen=True)
class _Target:
    """What every request of a batch shares, worked out once per batch."""

    origin: str  # scheme://host[:port], for the stored URL
    path: str  # the URL's path and query string, sent as the request target
    headers: dict[str, str]
    body_method: bool
    certificates: Certificates  # the batch's, each parsed once
    via: str = ""  # before the path as sent: the origin, to a forwarding proxy
    checks: Checks | None = None  # the job's checks, compiled for the batch
    captures: Captures | None = None
    reads_body: bool = False  # checks, captures or kept bodies need the body's bytes
    known: Sequence[Known | None] = ()  # by position: what the job last got for the query
    bodies: dict[str, bytes] | None = None  # the bodies kept (keep_bodies), by SHA-256
    kept_max: int = 0  # the largest body kept
    keep_changed: bool = False  # keep_bodies = "changed"
    judges: bool = False  # checks, captures or kept bodies: each response goes to _judge


def run_batch(spec: BatchSpec, *, on_request: OnRequest | None = None,
              stop: threading.Event | None = None,
              known: Sequence[Known | None] = ()) -> BatchResult:
    """Send every query of ``spec`` through one pool and return what happened.

    The result records what was sent, secrets included: the collect step shows it
    as written (:meth:`collector.references.Prepared.show`) before anything else
    sees it. Requests come back in batch order whatever the concurrency. ``on_request``
    is called with each request's result as it finishes (from the sending
    thread), for progress. Once ``stop`` is set no new request is sent: the
    requests in flight finish, and the result holds what was collected, marked
    ``interrupted``.

    ``known`` (by position) is what the job last got for each query, the store's
    :meth:`~collector.store.Store.known`: a ``conditional`` job sends its validators,
    and ``keep_bodies = "changed"`` keeps a body only when it is not that content.
    """
    queries = spec.queries or ({},)
    started_at = datetime.now(UTC)
    target = _target(spec, known)
    problem = _local_problem(spec)
    context = None
    if problem is None and _speaks_tls(spec):
        try:
            context = tls_context(spec)
        except (ssl.SSLError, OSError) as exc:
            problem = "tls", f"cannot use the TLS files given: {exc}"
    if problem is not None:
        requests = [_unsent(spec, target, position, query, problem)
                    for position, query in enumerate(queries)]
        return _result(spec, started_at, requests, counts=(0, 0, 0))
    watchdog = Watchdog() if spec.timeout.total else None
    meter = Meter(watchdog, classify, threads=spec.concurrency)
    retry = _retry(spec, meter)  # one for the batch: urllib3 never changes a Retry
    pool = _open_pool(spec, meter, origin=target.origin, context=context)
    try:
        def send(position: int) -> RequestResult | None:
            if stop is not None and stop.is_set():
                return None
            result = _send(pool, meter, retry, spec, target, position, queries[position])
            if on_request is not None:
                on_request(result)
            return result

        if spec.concurrency == 1:
            sent = list(map(send, range(len(queries))))
        else:
            with ThreadPoolExecutor(max_workers=spec.concurrency,
                                    thread_name_prefix="collector-request") as threads:
                sent = list(threads.map(send, range(len(queries))))
        counts = (pool.num_connections, pool.num_requests, meter.tcp_connections)
    finally:
        pool.close()
        if watchdog is not None:
            watchdog.close()
    requests = [r for r in sent if r is not None]
    return _result(spec, started_at, requests, counts=counts,
                   interrupted=len(requests) < len(queries),
                   connections=_connections(meter.connections, target.certificates),
                   bodies=target.bodies)


def _result(spec: BatchSpec, started_at: datetime, requests: list[RequestResult], *,
            counts: tuple[int, int, int], interrupted: bool = False,
            connections: tuple[ConnectionResult, ...] = (),
            bodies: dict[str, bytes] | None = None) -> BatchResult:
    return BatchResult(
        url=spec.url, method=spec.method, pool_size=spec.pool_size,
        concurrency=spec.concurrency, started_at=started_at, finished_at=datetime.now(UTC),
        num_connections=counts[0], num_requests=counts[1], tcp_connections=counts[2],
        requests=tuple(requests), interrupted=interrupted,
        tls_verified=spec.verify if spec.url.startswith("https:") else None,
        connections=connections, bodies=bodies or {}, keeps_bodies=bool(spec.keep_bodies),
    )


def _connections(opened: list[Opened], certificates: Certificates
                 ) -> tuple[ConnectionResult, ...]:
    """The batch's TCP connections as results, their certificates read (once each)."""
    results = []
    for o in opened:
        cert = None if o.certificate is None else certificates(o.certificate)
        address, port = o.peer or (None, None)
        facts: dict[str, Any] = {} if cert is None else {
            "cert_subject": cert.subject, "cert_issuer": cert.issuer,
            "cert_sha256": cert.sha256, "cert_not_before": cert.not_before,
            "cert_not_after": cert.not_after,
            "chain_not_after": _chain_expiry(certificates, o)}
        results.append(ConnectionResult(
            number=o.number, position=o.position, opened_at=o.opened_at,
            remote_address=address, remote_port=port, dns_ms=o.dns_ms, tcp_ms=o.tcp_ms,
            tls_ms=o.tls_ms, tls_version=o.tls_version, cipher=o.cipher, alpn=o.alpn,
            error_kind=o.error_kind, **facts))
    return tuple(results)


def _local_problem(spec: BatchSpec) -> tuple[ErrorKind, str] | None:
    """What on this machine keeps the batch from being sent at all (a missing ``ca_file``)."""
    if not spec.url.startswith("https:"):
        return None
    for key in ("ca_file", "client_cert", "client_key"):
        path = getattr(spec, key)
        if path is not None and not os.path.isfile(path):
            return "tls", f"{key} {path!r} is not a readable file on this machine"
    return None


def _unsent(spec: BatchSpec, target: _Target, position: int, fields: dict[str, str],
            problem: tuple[ErrorKind, str]) -> RequestResult:
    now = datetime.now(UTC)
    query = encode_query(fields, spec.fields)
    path = target.path if target.body_method else with_query(target.path, query)
    return RequestResult(
        position=position, method=spec.method, url=target.origin + path,
        query=query, started_at=now, status=None,
        content_type=None, body_length=None, content_length=None, body_sha256=None,
        elapsed_ms=0.0, connect_ms=None, ttfb_ms=None, reused=False, attempts=0,
        error_kind=problem[0], error=problem[1],
    )


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url`` as urllib3 reads it: how a stored URL begins."""
    return _origin(parse_url(url))


def _origin(url: Url) -> str:
    return f"{url.scheme}://{url.host or ''}" + (f":{url.port}" if url.port is not None else "")


def _target(spec: BatchSpec, known: Sequence[Known | None] = ()) -> _Target:
    url = parse_url(spec.url)
    origin = _origin(url)
    headers = {"User-Agent": USER_AGENT, **spec.headers}
    via = ""
    if _forwarded(spec):
        # An http:// request through an HTTP(S) proxy: sent whole to the proxy, which
        # forwards it (no tunnel), with the origin's Host.
        via = origin
        headers = {"Host": url.netloc or "", **headers}
    checks = Checks(spec.checks) if spec.checks else None
    captures = Captures(spec.captures) if spec.captures else None
    return _Target(origin=origin, path=url.request_uri, headers=headers,
                   body_method=spec.method in BODY_METHODS, certificates=Certificates(),
                   via=via, checks=checks, captures=captures,
                   reads_body=bool(spec.keep_bodies) or (checks is not None and checks.needs_body)
                   or (captures is not None and captures.needs_body),
                   known=known if spec.conditional or spec.keep_bodies == "changed" else (),
                   bodies={} if spec.keep_bodies else None,
                   kept_max=min(spec.max_kept_body or spec.max_body, spec.max_body),
                   keep_changed=spec.keep_bodies == "changed",
                   judges=bool(checks or captures or spec.keep_bodies))


def _chain_expiry(certificates: Certificates, connection: Opened | None) -> datetime | None:
    """The earliest expiry among the certificates ``connection`` was shown, if any."""
    if connection is None or connection.certificate is None:
        return None
    return certificates.earliest_expiry((connection.certificate, *connection.chain))


def _speaks_tls(spec: BatchSpec) -> bool:
    """Whether the batch's connections use TLS: to an https:// server or proxy."""
    return spec.url.startswith("https:") or (spec.proxy or "").startswith("https:")


def _forwarded(spec: BatchSpec) -> bool:
    return (spec.proxy is not None and spec.url.startswith("http:")
            and spec.proxy.startswith(("http:", "https:")))


def _open_pool(spec: BatchSpec, meter: Meter, *, origin: str,
               context: ssl.SSLContext | None) -> HTTPConnectionPool:
    """The batch's one pool: to the server, or, with a ``proxy``, the one pool urllib3's
    proxy manager makes for the server (to an HTTP proxy that forwards an http://
    request, through a CONNECT tunnel for https://, or through a SOCKS proxy)."""
    url = parse_url(spec.url)
    assert url.host is not None, "job files and options check that a URL has a host"
    timeout = Timeout(connect=spec.timeout.connect, read=spec.timeout.read,
                      total=spec.timeout.total)
    options: dict[str, Any] = {"maxsize": spec.pool_size, "block": True, "timeout": timeout}
    if _speaks_tls(spec):
        options["ssl_context"] = context
        if not spec.verify:
            # The job said so; collector warns once per batch, urllib3 need not per request.
            warnings.filterwarnings("ignore", category=InsecureRequestWarning)
            log.warning("%s: TLS certificates are not verified (verify = false)", origin)
            options.update(cert_reqs="CERT_NONE", assert_hostname=False)
    pool: HTTPConnectionPool
    if spec.proxy is None:
        kind = HTTPSConnectionPool if url.scheme == "https" else HTTPConnectionPool
        pool = kind(url.host, url.port, **options)
    else:
        pool = _proxied_pool(spec, options)
    # The connections' own keyword arguments (urllib3's pool managers key their pools
    # by the pool arguments they know, so these are given to the pool made).
    pool.conn_kw["meter"] = meter
    if (spec.proxy or "").startswith("socks5h:"):
        pool.conn_kw["resolve"] = False  # the proxy resolves the name
    pool.ConnectionCls = _connection_class(pool, spec)
    return pool


def _proxied_pool(spec: BatchSpec, options: dict[str, Any]) -> HTTPConnectionPool:
    assert spec.proxy is not None
    proxy = parse_url(spec.proxy)
    manager: PoolManager
    if proxy.scheme in ("socks5", "socks5h"):
        from urllib3.contrib.socks import SOCKSProxyManager

        user, _, password = (proxy.auth or "").partition(":")
        manager = SOCKSProxyManager(_without_auth(spec.proxy, proxy), num_pools=1,
                                    username=unquote(user) or None,
                                    password=unquote(password) or None, **options)
    else:
        headers = make_headers(proxy_basic_auth=unquote(proxy.auth)) if proxy.auth else None
        proxy_tls = None
        if proxy.scheme == "https" and spec.url.startswith("https:"):
            # TLS with the proxy, then with the server through it: the proxy's context
            # is not the timed one, so tls_ms is the server's handshake.
            proxy_tls = tls_context(spec, for_proxy=True)
        manager = ProxyManager(_without_auth(spec.proxy, proxy), num_pools=1,
                               proxy_headers=headers, proxy_ssl_context=proxy_tls, **options)
    pool: HTTPConnectionPool = manager.connection_from_url(spec.url)
    return pool


def _without_auth(text: str, proxy: Url) -> str:
    # Its credentials are given apart, percent-decoded (a URL holds them encoded): in
    # Proxy-Authorization to an HTTP proxy, as the SOCKS user name and password.
    return proxy._replace(auth=None).url if proxy.auth else text


def _connection_class(pool: HTTPConnectionPool, spec: BatchSpec) -> type[HTTPConnection]:
    tls = isinstance(pool, HTTPSConnectionPool)
    if spec.proxy is not None and spec.proxy.startswith("socks"):
        plain, secure = socks_connection_classes()
        return secure if tls else plain
    return CountingHTTPSConnection if tls else CountingHTTPConnection


def tls_context(spec: BatchSpec, *, for_proxy: bool = False) -> ssl.SSLContext:
    """The batch's one TLS context, as urllib3 would make it for each connection (its
    defaults, the job's CA file or the system's certificates, its client certificate),
    made once, and its handshakes timed (:func:`collector.meter.timed`). ``for_proxy``:
    the context of an https:// proxy that tunnels to an https:// server, neither timed
    nor with the client certificate (which is the server's to see).

    Raises ``ssl.SSLError`` or ``OSError`` for a file it cannot load.
    """
    context = create_urllib3_context(
        cert_reqs=ssl.CERT_REQUIRED if spec.verify else ssl.CERT_NONE)
    if spec.verify:
        if spec.ca_file is not None:
            context.load_verify_locations(cafile=spec.ca_file)
        else:
            context.load_default_certs()
    if for_proxy:
        return context
    if spec.client_cert is not None:
        context.load_cert_chain(spec.client_cert, spec.client_key)
    return timed(context)


def _retry(spec: BatchSpec, meter: Meter) -> AttemptRetry:
    # Statuses are data, retried only when the job lists them (retry_statuses), never
    # raised; redirects returned as they are. Retry-After is honoured for the listed
    # statuses up to retry_after_max; a wait or an attempt that would end past the
    # total timeout is not made (the deadline).
    retry = AttemptRetry(total=spec.retries, redirect=False, raise_on_status=False,
                         status_forcelist=spec.retry_statuses or None,
                         respect_retry_after_header=bool(spec.retry_statuses),
                         retry_after_max=max(0, int(spec.retry_after_max)), backoff_factor=0.2,
                         backoff_max=5)
    retry.meter = meter
    return retry


def _send(pool: HTTPConnectionPool, meter: Meter, retry: AttemptRetry, spec: BatchSpec,
          target: _Target, position: int, fields: dict[str, str]) -> RequestResult:
    query = encode_query(fields, spec.fields)
    path, headers, body = target.path, target.headers, None
    if target.body_method:
        body = query.encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded", **headers}
    else:
        path = with_query(path, query)

    known = target.known[position] if position < len(target.known) else None
    asked = None  # the validators sent, when the request is conditional
    if spec.conditional and known is not None and (known.etag or known.last_modified):
        asked = known
        headers = {**headers, **_validators(known)}

    total = spec.timeout.total
    deadline = Deadline(total) if total else None
    current = meter.begin_request(deadline, position)
    started_at = datetime.now(UTC)
    start = time.perf_counter()
    status = content_type = content_length = ttfb_ms = http_version = None
    body_length: int | None = None
    sha256: str | None = None
    error: tuple[ErrorKind, str] | None = None
    try:
        response = pool.urlopen(spec.method, target.via + path if target.via else path,
                                body=body, headers=headers, retries=retry, redirect=False,
                                preload_content=False, decode_content=False,
                                assert_same_host=not target.via)
        if spec.follow_redirects:
            response = _follow(pool, meter, retry, spec, target, path, body, headers,
                               response)
    except Exception as exc:  # one failing request never stops the batch
        if deadline is not None:
            meter.end_request()
        error = _total_timeout(deadline) or classify(exc)
        touched = current.on_connection
        sent = touched or start
    else:
        # Times start when the request had a connection: waiting for the pool is apart.
        touched = current.on_connection
        sent = touched or start
        if deadline is not None and deadline.cut == "headers":
            # Cut halfway through its headers: http.client took what it had for a response.
            error = _total_timeout(deadline)
        else:
            ttfb_ms = ms_since(sent)
            status = response.status
            http_version = _VERSIONS.get(response.version)
            content_type = response.headers.get("Content-Type")
            # urllib3 has read a Content-Length that is one length (and set 0 for HEAD,
            # 204 and 304 without reading it): the header itself only when it is not that.
            content_length = response.length_remaining or None
            if content_length is None:
                content_length, error = _content_length(response)
        kept: list[bytes] | None = [] if target.reads_body else None
        try:
            if error is None:
                body_length, sha256, error = _read_body(response, spec, deadline, kept)
        finally:
            if deadline is not None:
                meter.end_request()  # before the connection can carry another request
            if error is not None:
                response.close()  # a half-read connection is never reused
            response.release_conn()
    log = current.attempts
    failed = () if log is None else tuple(log.failed)
    tried = len(failed)
    if error is not None and status is not None:
        # The body failed after a response arrived: that attempt failed too.
        failed += (FailedAttempt(error_kind=error[0], error=error[1], at=datetime.now(UTC),
                                 status=status),)
    tries = tried + (status is not None)
    opened, connection = current.opened, current.connection
    elapsed_ms = ms_since(sent)
    result = RequestResult(
        position=position, method=spec.method, url=target.origin + path, query=query,
        started_at=started_at, status=status, content_type=content_type,
        body_length=body_length, content_length=content_length, body_sha256=sha256,
        elapsed_ms=elapsed_ms, connect_ms=None, ttfb_ms=ttfb_ms,
        reused=current.reused,
        attempts=tries or 1, error_kind=error[0] if error else None,
        error=error[1] if error else None, failed_attempts=failed,
        queued_ms=None if touched is None else round((touched - start) * 1000, 3),
        http_version=http_version,
        connection=None if connection is None else connection.number,
    )
    if opened is not None:
        dns, tcp, tls = opened.dns_ms, opened.tcp_ms, opened.tls_ms
        result.dns_ms, result.tcp_ms, result.tls_ms = dns, tcp, tls
        result.connect_ms = round((dns or 0.0) + (tcp or 0.0) + (tls or 0.0), 3)
    if status is not None:
        if status == 200 and sha256 is not None and spec.method != "HEAD":
            result.content_sha256 = sha256  # a HEAD's empty body stands for no content
            if spec.conditional:
                result.etag = response.headers.get("ETag")
                result.last_modified = response.headers.get("Last-Modified")
        elif status == 304 and asked is not None and error is None:
            # The server confirmed the content whose validators were sent.
            result.content_sha256 = asked.content_sha256
            result.etag = response.headers.get("ETag") or asked.etag
            result.last_modified = response.headers.get("Last-Modified") or asked.last_modified
        if target.judges:
            _judge(target, result, response.headers, b"".join(kept) if kept else b"",
                   known, connection)
    return result


def _validators(known: Known) -> dict[str, str]:
    headers = {}
    if known.etag:
        headers["If-None-Match"] = known.etag
    if known.last_modified:
        headers["If-Modified-Since"] = known.last_modified
    return headers


def _judge(target: _Target, result: RequestResult, headers: Any, data: bytes,
           known: Known | None, connection: Opened | None) -> None:
    """A response's checks and captures, and its body kept, as the job asks."""
    assert result.status is not None
    confirmed = result.status == 304 and result.content_sha256 is not None
    body = Body(data, result.content_type, headers)
    checks, captures = target.checks, target.captures
    if checks is not None:
        result.checks = checks.apply(
            status=result.status, headers=headers, body=body, elapsed_ms=result.elapsed_ms,
            cert_expiry=_chain_expiry(target.certificates, connection)
            if checks.needs_expiry else None, without_body=confirmed)
    if captures is not None:
        result.captures = captures.apply(headers, body, without_body=confirmed)
    sha256, bodies = result.body_sha256, target.bodies
    if (bodies is not None and sha256 is not None and result.status != 304
            and len(data) <= target.kept_max and sha256 not in bodies
            and not (target.keep_changed and known is not None
                     and known.content_sha256 == sha256)):
        bodies[sha256] = data


_VERSIONS = {9: "0.9", 10: "1.0", 11: "1.1", 20: "2"}  # urllib3's response.version


_REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5


def _follow(pool: HTTPConnectionPool, meter: Meter, retry: AttemptRetry, spec: BatchSpec,
            target: _Target, path: str, body: bytes | None, headers: dict[str, str],
            response: BaseHTTPResponse) -> BaseHTTPResponse:
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
        meter.attempts().record_redirect(response.status, following)
        response.drain_conn()
        meter.on_socket(None)  # the connection goes back to the pool: not ours to cut
        response.release_conn()
        if response.status == 303 or (response.status in (301, 302) and method == "POST"):
            method, body = "GET", None
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        response = pool.urlopen(method, target.via + path, body=body, headers=headers,
                                retries=retry, redirect=False,
                                preload_content=False, decode_content=False,
                                assert_same_host=not target.via)
    return response


def _read_body(response: BaseHTTPResponse, spec: BatchSpec, deadline: Deadline | None,
               kept: list[bytes] | None = None
               ) -> tuple[int, str | None, tuple[ErrorKind, str] | None]:
    """Stream the body as delivered, hashing it; never holds more than one chunk, but in
    ``kept`` (the chunks, for checks that read the body).

    With a total timeout the body must be complete by the request's deadline:
    each read waits at most what is left of it (and the watchdog cuts a read that
    would not return), and the bytes that did arrive are counted either way.
    """
    digest = hashlib.sha256()
    length = 0
    sock = None
    if deadline is not None:
        sock = getattr(response.connection, "sock", None)
        deadline.phase = "body"
    while True:
        if deadline is not None:
            remaining = deadline.remaining()
            if deadline.passed():
                return length, None, _total_timeout(deadline)
            if sock is not None:
                sock.settimeout(min(spec.timeout.read, remaining))
        try:
            left = spec.max_body + 1 - length
            chunk = response.read1(_CHUNK if left > _CHUNK else left,
                                   decode_content=False)
        except Exception as exc:
            return length, None, _total_timeout(deadline) or classify(exc)
        if not chunk:
            return length, digest.hexdigest(), None
        length += len(chunk)
        if length > spec.max_body:
            return length, None, ("too_large",
                                  f"body is larger than max_body ({spec.max_body} bytes)")
        digest.update(chunk)
        if kept is not None:
            kept.append(chunk)
        if response.length_remaining == 0:
            # The whole Content-Length is in: done without another read to see the end.
            return length, digest.hexdigest(), None


def _total_timeout(deadline: Deadline | None) -> tuple[ErrorKind, str] | None:
    """The request's error when its total timeout is what ended it, else None."""
    if deadline is None or not deadline.passed():
        return None
    kind: ErrorKind = "connect_timeout" if deadline.ended_in == "connect" else "read_timeout"
    return kind, deadline.describe()


def classify(exc: BaseException) -> tuple[ErrorKind, str]:
    """urllib3's exception as an error kind and a one-line message (at most 500 characters)
    in the user's words: where, and what happened, without urllib3's class names."""
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    kind: ErrorKind
    if isinstance(exc, ProxyError):
        inner = exc.original_error
        if isinstance(inner, NewConnectionError | ConnectTimeoutError | NameResolutionError):
            kind, message = classify(inner)  # the proxy itself cannot be reached
            return kind, f"proxy: {message}"
        return "proxy", " ".join(f"the proxy failed: {_cause(inner)}".split())[:500]
    where = _where(exc)
    if isinstance(exc, NameResolutionError):
        kind, message = "dns", f"cannot resolve {where}: {_cause(exc)}"
    elif isinstance(exc, NewConnectionError) and (socks := _socks_error(exc)) is not None:
        socket_error = getattr(socks, "socket_err", None)
        if isinstance(socket_error, ConnectionRefusedError):
            kind, message = "connect_refused", "proxy: the SOCKS proxy refused the connection"
        elif isinstance(socket_error, TimeoutError):
            kind, message = "connect_timeout", "proxy: no connection to the SOCKS proxy in time"
        else:
            kind, message = "proxy", f"the SOCKS proxy failed: {socks}"
    elif isinstance(exc, NewConnectionError):
        refused = isinstance(exc.__cause__ or exc.__context__, ConnectionRefusedError)
        kind = "connect_refused" if refused else "other"
        message = (f"connection to {where} refused" if refused
                   else f"cannot connect to {where}: {_cause(exc)}")
    elif isinstance(exc, ConnectTimeoutError):
        kind, message = "connect_timeout", f"no connection to {where} in time: {_cause(exc)}"
    elif isinstance(exc, ReadTimeoutError | TimeoutError):
        kind, message = "read_timeout", f"no answer from {where} in time: {_cause(exc)}"
    elif isinstance(exc, SSLError | ssl.SSLError):  # ssl's own: a connection's handshake
        kind, message = "tls", f"TLS with {where} failed: {_cause(exc)}"
    elif isinstance(exc, ProtocolError | IncompleteRead | InvalidChunkLength | InvalidHeader):
        kind, message = "protocol", f"broken or invalid HTTP reply: {_cause(exc)}"
    else:
        kind, message = "other", _cause(exc)
        if not isinstance(exc, HTTPError | OSError):
            log.warning("unexpected error from a request", exc_info=exc)
    return kind, " ".join(message.split())[:500]


# urllib3 names the pool or connection object in its messages ("HTTPConnectionPool(host=
# 'h', port=1): ", "<...CountingHTTPConnection object at 0x...>: "): facts of the code,
# not of the request. The target is said once, as host:port.
_INTERNALS = re.compile(r"\w*(?:HTTPS?|SOCKS\w*)Connection(?:Pool)?\(host='[^']*', port=\d+\): |"
                        r"<[\w.]+ object at 0x[0-9a-f]+>: ")


def _socks_error(exc: NewConnectionError) -> BaseException | None:
    """The PySocks error behind ``exc``, if a SOCKS proxy's connection failed."""
    socks = sys.modules.get("socks")  # loaded only by a batch through a SOCKS proxy
    cause = exc.__cause__ or exc.__context__
    return cause if socks is not None and isinstance(cause, socks.ProxyError) else None


def _where(exc: BaseException) -> str:
    # NewConnectionError has .conn (and a deprecated .pool); the others a pool.
    source = exc.conn if isinstance(exc, NewConnectionError) else getattr(exc, "pool", None)
    host, port = getattr(source, "host", None), getattr(source, "port", None)
    if isinstance(exc, NameResolutionError) or host is None:
        found = re.search(r"host='([^']*)'(?:, port=(\d+))?", str(exc))
        if found:
            host, port = found.group(1), found.group(2) or port
    if host is None:
        return "the server"
    return f"{host}:{port}" if port else str(host)


def _cause(exc: BaseException) -> str:
    """What went wrong, as the exception (or the one it wraps) says it."""
    text = _INTERNALS.sub("", str(exc))
    if isinstance(exc, ProtocolError) and len(exc.args) == 2:
        # ("Connection broken: IncompleteRead(0 bytes read)", IncompleteRead(...))
        inner = exc.args[1]
        what = str(exc.args[0]).partition(":")[0].rstrip(".").lower()
        detail = re.sub(r"^\w+\((.*)\)$", r"\1", str(inner)) or type(inner).__name__
        text = f"{what}: {detail}"
    if isinstance(exc, NameResolutionError):
        text = str(exc.__cause__ or exc.__context__ or text)
    return text or type(exc).__name__


def _content_length(response: BaseHTTPResponse
                    ) -> tuple[int | None, tuple[ErrorKind, str] | None]:
    """The response's Content-Length, and the protocol error when it is not one length
    (negative, not a number, two that differ): the body's end cannot be known."""
    values = [v.strip() for header in response.headers.getlist("Content-Length")
              for v in header.split(",")]
    if not values:
        return None, None
    if not all(v.isdigit() for v in values):
        return None, ("protocol", f"Content-Length {', '.join(values)!r} is not a length")
    if len({int(v) for v in values}) > 1:
        return None, ("protocol", f"Content-Length headers disagree ({', '.join(values)})")
    return int(values[0]), None
