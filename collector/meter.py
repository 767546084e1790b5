"""Counting TCP connections and attempts through urllib3's public extension points.

urllib3's pool counts connection *objects* (``num_connections``) and attempts
(``num_requests``). When a server closes a kept-alive connection, urllib3
reconnects the same object and ``num_connections`` does not move, so the
TCP connections really opened are counted here too (DESIGN.md, "Counting
connections honestly"):

- :class:`CountingHTTPConnection` and :class:`CountingHTTPSConnection` are
  given to the pool as its ``ConnectionCls``; their :class:`Meter` comes
  through the pool's connection keyword arguments (``meter=...``). They count
  every ``connect()`` that opened a TCP connection, including one whose TLS
  handshake then failed, and tell the request in progress on that thread
  whether it went over a connection that had already carried a request.
- :class:`AttemptRetry` is urllib3's ``Retry`` with a log: ``increment()``,
  which urllib3 calls after every failed attempt, records the attempt's error
  and time before deciding, as ``Retry`` does, whether to try again, and
  refuses an attempt that would end past the request's deadline.

The connections also give each phase of a request with a total timeout no more
than the time it has left (:mod:`collector.deadline`), and read past 1xx
informational responses (:class:`FinalResponse`, http.client's ``response_class``).

Nothing here overrides a private urllib3 method.
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    InvalidHeader,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ResponseError,
)
from urllib3.response import BaseHTTPResponse, HTTPResponse
from urllib3.util import Retry
from urllib3.util.connection import allowed_gai_family

from collector.deadline import Deadline, Phase, Watchdog
from collector.results import ErrorKind, FailedAttempt


class Meter:
    """One pool's TCP connections, and per thread, what its current request went over.

    With a ``watchdog``, a request begun with a :class:`~collector.deadline.Deadline`
    has its clock started when it first has a connection, and is watched from then.
    """

    def __init__(self, watchdog: Watchdog | None,
                 classify: Callable[[BaseException], tuple[ErrorKind, str]], *,
                 threads: int) -> None:
        self._lock = threading.Lock()
        # What the current request went over, per sending thread; with one sending
        # thread a plain object does (a thread-local costs more at every access, and
        # it is read and set about 15 times a request).
        self._current: Any = _ThreadCurrent() if threads > 1 else Current()
        self._watchdog = watchdog
        self.bounded = watchdog is not None  # requests have deadlines (a total timeout)
        self.classify = classify  # an attempt's error as an error kind and a message
        self.tcp_connections = 0
        self.connections: list[Opened] = []  # in the order they were opened

    def begin_request(self, deadline: Deadline | None, position: int) -> Current:
        """A request starts on this thread: nothing connected, sent or failed for it yet.

        Returns what the meter learns of it as it goes (the sending thread's own
        :class:`Current`), read by the runner once the request is over.
        """
        current: Current = self._current
        current.position = position
        current.opened = None
        current.connection = None
        current.reused = False
        current.on_connection = None
        current.deadline = deadline
        current.attempts = None
        return current

    def deadline(self) -> Deadline | None:
        """The deadline of this thread's request, if it has one."""
        deadline: Deadline | None = self._current.deadline
        return deadline

    def attempts(self) -> AttemptLog:
        """This thread's request's failed attempts (the log made at its first one)."""
        log: AttemptLog | None = self._current.attempts
        if log is None:
            log = self._current.attempts = AttemptLog(self.classify)
        return log

    def end_request(self) -> None:
        """This thread's request is over (call before its connection goes back to the pool)."""
        deadline: Deadline | None = self._current.deadline
        if deadline is not None and self._watchdog is not None:
            self._watchdog.done(deadline)

    def cap_timeout(self, timeout: float | None, phase: Phase) -> float | None:
        """``timeout`` (seconds, None: none) shortened to what this thread's request has
        left, which is now in ``phase``."""
        deadline: Deadline | None = self._current.deadline
        if deadline is None:
            return timeout
        deadline.phase = phase
        left = max(deadline.remaining(), 0.001)
        return min(timeout, left) if isinstance(timeout, int | float) else left

    def on_socket(self, sock: socket.socket | None) -> None:
        """The socket this thread's request reads from now: the one its deadline cuts."""
        deadline: Deadline | None = self._current.deadline
        if deadline is not None:
            deadline.sock = sock

    def opened(self, connection: Opened) -> None:
        """This thread's request opened ``connection`` (a TCP connection, its TLS
        handshake done or failed): it is the batch's next one."""
        with self._lock:
            self.tcp_connections += 1
            connection.number = self.tcp_connections
            self.connections.append(connection)
        current = self._current
        connection.position = current.position
        current.opened = current.connection = connection

    def attempting(self, sock: socket.socket | None, *, reused: bool,
                   connection: Opened | None = None) -> None:
        """An attempt of this thread's request goes over ``sock`` (None: not connected
        yet), a connection that has carried a request before when ``reused``. The first
        attempt ends the request's wait for the pool: its clock (and watchdog) start."""
        current = self._current
        if current.on_connection is None:
            current.on_connection = time.perf_counter()
            deadline = current.deadline
            if deadline is not None and deadline.start() and self._watchdog is not None:
                self._watchdog.watch(deadline)
        current.reused = reused
        current.connection = connection
        if current.deadline is not None:
            current.deadline.sock = sock


class Current:
    """What one sending thread's current request went over: set by the meter and the
    connections as it goes, read by the runner when it is over (a thread-local of
    these attributes when a batch has several sending threads)."""

    position: int  # in the batch
    opened: Opened | None  # the last connection it opened, if it opened one
    connection: Opened | None  # the connection its last attempt went over, if one
    reused: bool  # its last attempt went over a connection that had carried a request
    on_connection: float | None  # when (perf_counter) it first had a connection
    deadline: Deadline | None
    attempts: AttemptLog | None  # its failed attempts, made at the first one


class _ThreadCurrent(threading.local, Current):
    """:class:`Current` for each of a batch's several sending threads."""


class FinalResponse(http.client.HTTPResponse):
    """http.client's response, past any 1xx informational response to the final one.

    http.client skips ``100 Continue`` itself, but returns a ``103 Early Hints``
    as if it were the answer; ``101`` (a protocol switch) is final. This is the
    connections' ``response_class``, http.client's own hook for its response.
    """

    def begin(self) -> None:
        http.client.HTTPResponse.begin(self)
        while 100 <= self.status < 200 and self.status != 101:
            self.headers = self.msg = None  # type: ignore[assignment]  # begin() reads anew
            http.client.HTTPResponse.begin(self)


class Opened:
    """A TCP connection as its connection object opened it (the runner makes it a
    :class:`~collector.results.ConnectionResult`, its certificates parsed then)."""

    __slots__ = ("number", "position", "opened_at", "peer", "dns_ms", "tcp_ms", "tls_ms",
                 "tls_version", "cipher", "alpn", "certificate", "chain", "error_kind")

    def __init__(self, opened_at: datetime) -> None:
        self.number = 0  # set by the meter: the batch's 1st, 2nd, ... connection
        self.position: int | None = None  # the request that opened it
        self.opened_at = opened_at
        self.peer: tuple[str, int] | None = None  # the address and port connected to
        self.dns_ms: float | None = None
        self.tcp_ms: float | None = None
        self.tls_ms: float | None = None
        self.tls_version: str | None = None
        self.cipher: str | None = None
        self.alpn: str | None = None
        self.certificate: bytes | None = None  # the server's certificate, DER
        self.chain: tuple[bytes, ...] = ()  # the certificates it presented (Python 3.13+)
        self.error_kind: ErrorKind | None = None  # its TLS handshake (or tunnel) failed

    def tls_done(self, sock: Any) -> None:
        """Take the facts of the TLS session on ``sock`` (an SSLSocket, or urllib3's
        SSLTransport through a TLS proxy)."""
        self.tls_version = sock.version()
        cipher = sock.cipher()
        self.cipher = cipher[0] if cipher else None
        self.alpn = sock.selected_alpn_protocol()
        self.certificate = sock.getpeercert(binary_form=True)
        chain = getattr(sock, "get_unverified_chain", None)  # Python 3.13
        if chain is not None:
            self.chain = tuple(c for c in chain() or () if isinstance(c, bytes))


# The TLS handshake in progress on this thread: when it began, and to where. The sockets
# below are made by ssl, not by collector, so they note it here, and the connection that
# is connecting on the same thread reads it.
_handshake = threading.local()


def _handshake_began(peer: Callable[[], Any] | None) -> None:
    if getattr(_handshake, "at", None) is None:
        _handshake.at = time.perf_counter()
        try:
            _handshake.peer = peer() if peer is not None else None
        except OSError:
            _handshake.peer = None


class TimedSSLSocket(ssl.SSLSocket):
    """ssl's socket, noting when its handshake begins: a batch's TLS context has it as its
    ``sslsocket_class`` (ssl's hook for the class ``wrap_socket`` makes)."""

    def do_handshake(self, block: bool = False) -> None:
        _handshake_began(self.getpeername)
        super().do_handshake(block)


class TimedSSLObject(ssl.SSLObject):
    """ssl's in-memory TLS object (TLS through a TLS proxy's tunnel), noting when its
    handshake begins: the context's ``sslobject_class``."""

    def do_handshake(self) -> None:
        _handshake_began(None)
        super().do_handshake()


def timed(context: ssl.SSLContext) -> ssl.SSLContext:
    """``context``, its handshakes timed by the connections below."""
    context.sslsocket_class = TimedSSLSocket
    context.sslobject_class = TimedSSLObject
    return context


class CountingHTTPConnection(HTTPConnection):
    """urllib3's HTTPConnection, counted by the Meter given as the ``meter`` keyword argument.

    A request goes over a re-used connection when the socket is open and has
    already carried a request since it was connected. Every request begins in
    ``putrequest()`` (urllib3's ``request()`` calls it first; it is http.client's
    public step, and wrapping it with its own arguments costs a fifth of wrapping
    ``request()``); HTTPS connects before it, plain HTTP after it, while sending.

    ``connect()`` resolves the host itself (``socket.getaddrinfo``, as urllib3 does)
    and has urllib3 connect to each address found in turn, so that the lookup is timed
    apart from the TCP connect; ``resolve=False`` (a SOCKS proxy that resolves names)
    leaves the name to whoever connects. Its phases are contiguous: DNS until the
    lookup is done, TCP until the TLS handshake with the server begins (through a
    proxy: the proxy's own handshake, SOCKS or CONNECT, included), TLS until connected.
    """

    response_class = FinalResponse

    def __init__(self, *args: Any, meter: Meter, resolve: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._meter = meter
        self._resolve = resolve
        self._carried_request = False  # the open socket has carried a request
        self._connects_sending = False  # putrequest() found no socket: send() connects
        self._opened: Opened | None = None  # the TCP connection the socket is

    def connect(self) -> None:
        meter = self._meter
        meter.attempting(None, reused=False)  # one that connects: a new connection
        self.timeout = meter.cap_timeout(self.timeout, "connect")
        opened = Opened(datetime.now(UTC))
        start = time.perf_counter()
        name = self.host
        addresses = self._addresses(name)
        resolved = time.perf_counter()
        if addresses is not None:
            opened.dns_ms = round((resolved - start) * 1000, 3)
        _handshake.at = None
        try:
            self._connect_to(name, addresses)
        except BaseException as exc:
            # urllib3 makes the TCP connection in _new_conn(), and raises what fails
            # there as NewConnectionError or ConnectTimeoutError; anything else (a
            # TLS handshake, a proxy's tunnel refused, which closes the socket too)
            # failed on an opened TCP connection, which counts.
            if self.sock is not None or (isinstance(exc, Exception) and not isinstance(
                    exc, NewConnectionError | ConnectTimeoutError)):
                kind = meter.classify(exc)[0]
                if kind == "other" and self.proxy is not None and _handshake.at is None:
                    kind = "proxy"  # the proxy's tunnel, before any TLS with the server
                opened.error_kind = kind
                self._record(opened, resolved, _handshake.peer if _handshake.at else None)
            raise
        # Connected while sending (plain HTTP): the request being sent is its first.
        self._carried_request, self._connects_sending = self._connects_sending, False
        meter.on_socket(self.sock)
        sock: Any = self.sock
        if _handshake.at is not None:
            opened.tls_done(sock)
        try:
            # socket's own: a SOCKS socket's getpeername() names the server, and the
            # connection is to the proxy (an SSLTransport's socket is the proxy's TLS).
            peer = socket.socket.getpeername(getattr(sock, "socket", sock))
        except (OSError, TypeError):
            peer = None
        self._record(opened, resolved, peer)

    def _addresses(self, name: str) -> list[str] | None:
        """The addresses ``name`` resolves to, in getaddrinfo's order; None without a
        lookup (an address already, or a name the SOCKS proxy resolves)."""
        if not self._resolve or _is_address(name):
            return None
        try:
            found = socket.getaddrinfo(name, self.port, allowed_gai_family(),
                                       socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise NameResolutionError(name, self, exc) from exc
        return list(dict.fromkeys(str(info[4][0]) for info in found))

    def _connect_to(self, name: str, addresses: list[str] | None) -> None:
        """urllib3's connect() to each address in turn until one takes the TCP connection
        (as urllib3's own create_connection tries them): ``host`` is the address while it
        connects, and the TLS server name stays ``name``."""
        if not addresses:
            super().connect()
            return
        for address in addresses:
            self.host = address
            self._name_server(name)
            try:
                super().connect()
                return
            except (NewConnectionError, ConnectTimeoutError):
                if self.sock is not None or address == addresses[-1]:
                    raise
            finally:
                self.host = name
                self._name_server(None)

    def _name_server(self, name: str | None) -> None:
        """Name the server ``name`` to TLS while ``host`` is its address (HTTPS only)."""

    def _record(self, opened: Opened, resolved: float, peer: Any) -> None:
        end = time.perf_counter()
        began: float | None = _handshake.at
        opened.tcp_ms = round(((began or end) - resolved) * 1000, 3)
        if began is not None:
            opened.tls_ms = round((end - began) * 1000, 3)
        if peer:
            opened.peer = (str(peer[0]), int(peer[1]))
        _handshake.at = _handshake.peer = None
        self._opened = opened
        self._meter.opened(opened)

    def putrequest(self, method: str, url: str, skip_host: bool = False,
                   skip_accept_encoding: bool = False) -> None:
        sock = self.sock
        self._meter.attempting(sock, reused=sock is not None and self._carried_request,
                               connection=self._opened if sock is not None else None)
        self._carried_request, self._connects_sending = True, sock is None
        super().putrequest(method, url, skip_host, skip_accept_encoding)

    def getresponse(self) -> HTTPResponse:  # type: ignore[override]
        # The status line and headers may come a byte at a time: each read waits at
        # most what the request has left, and the watchdog cuts the rest.
        if self._meter.bounded:
            self.timeout = self._meter.cap_timeout(self.timeout, "headers")
        return super().getresponse()


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class CountingHTTPSConnection(CountingHTTPConnection, HTTPSConnection):
    """urllib3's HTTPSConnection, counted as :class:`CountingHTTPConnection` is.

    Its ``connect()`` and ``putrequest()`` wrap HTTPSConnection's (the method order
    puts HTTPSConnection right after CountingHTTPConnection). Its pool's ``ssl_context``
    is :func:`timed`.
    """

    def _name_server(self, name: str | None) -> None:
        if not self.proxy_is_tunneling:  # else the tunnel's host is the name
            self.server_hostname = name


@functools.cache
def socks_connection_classes() -> tuple[type[CountingHTTPConnection],
                                        type[CountingHTTPSConnection]]:
    """The counting connections through a SOCKS proxy, plain and TLS (urllib3's ``socks``
    extra, PySocks, imported only for a batch that has one)."""
    from urllib3.contrib.socks import SOCKSConnection, SOCKSHTTPSConnection

    class CountingSOCKSConnection(CountingHTTPConnection, SOCKSConnection):
        """Counted as :class:`CountingHTTPConnection`; SOCKS connects (``_new_conn``)."""

    class CountingSOCKSHTTPSConnection(CountingHTTPSConnection, SOCKSHTTPSConnection):
        """Counted as :class:`CountingHTTPSConnection`, through SOCKS."""

    return CountingSOCKSConnection, CountingSOCKSHTTPSConnection


class AttemptLog:
    """One request's failed attempts, oldest first."""

    def __init__(self, classify: Callable[[BaseException], tuple[ErrorKind, str]]) -> None:
        self._classify = classify
        self.failed: list[FailedAttempt] = []

    def record(self, error: BaseException) -> None:
        kind, message = self._classify(error)
        self.failed.append(FailedAttempt(error_kind=kind, error=message, at=datetime.now(UTC)))

    def record_redirect(self, status: int, location: str) -> None:
        self.failed.append(FailedAttempt(error_kind=None, status=status, at=datetime.now(UTC),
                                         error=f"redirected to {location}"))

    def record_status(self, status: int, reason: str | None) -> None:
        self.failed.append(FailedAttempt(error_kind=None, status=status, at=datetime.now(UTC),
                                         error=f"status {status} {reason or ''}".strip()))


class AttemptRetry(Retry):
    """``Retry`` that records each failed attempt in the log of the request in progress on
    its thread, and never tries again, or waits, past that request's deadline; both
    come from its ``meter`` (carried over by ``new()``). Like every ``Retry`` it is
    never changed once made, so one serves every request of a batch, on every thread."""

    meter: Meter | None = None

    def new(self, **kw: Any) -> Self:
        retry = super().new(**kw)
        retry.meter = self.meter
        return retry

    def increment(self, method: str | None = None, url: str | None = None,
                  response: BaseHTTPResponse | None = None, error: Exception | None = None,
                  _pool: ConnectionPool | None = None,
                  _stacktrace: TracebackType | None = None) -> Self:
        meter = self.meter
        if meter is not None and error is not None:
            meter.attempts().record(error)
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        deadline = meter.deadline() if meter is not None else None
        if deadline is not None and not deadline.allows(retry.wait(response)):
            # Out of time: a response is the answer as it is, an error the request's own.
            raise MaxRetryError(_pool, url, reason=error or ResponseError(  # type: ignore[arg-type]
                f"no time left for another attempt within {deadline.total:g}s"))
        if meter is not None and error is None and response is not None:
            # A status the job retries, and it will be tried again (when the retries
            # are used up, urllib3 returns this response: it is the request's answer).
            meter.attempts().record_status(response.status, response.reason)
        return retry

    def wait(self, response: BaseHTTPResponse | None) -> float:
        """How long :meth:`sleep` will wait before the next attempt."""
        if self.respect_retry_after_header and response is not None:
            try:
                after = self.get_retry_after(response)
            except InvalidHeader:
                after = None
            if after:
                return after
        return self.get_backoff_time()


def ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 3)
