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

import http.client
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import InvalidHeader, MaxRetryError, ResponseError
from urllib3.response import BaseHTTPResponse, HTTPResponse
from urllib3.util import Retry

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
        self._classify = classify  # an attempt's error as an error kind and a message
        self.tcp_connections = 0

    def begin_request(self, deadline: Deadline | None = None) -> Current:
        """A request starts on this thread: nothing connected, sent or failed for it yet.

        Returns what the meter learns of it as it goes (the sending thread's own
        :class:`Current`), read by the runner once the request is over.
        """
        current: Current = self._current
        current.connect_ms = None
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
            log = self._current.attempts = AttemptLog(self._classify)
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

    def connected(self, ms: float) -> None:
        with self._lock:
            self.tcp_connections += 1
        self._current.connect_ms = ms

    def attempting(self, sock: socket.socket | None, *, reused: bool) -> None:
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
        if current.deadline is not None:
            current.deadline.sock = sock


class Current:
    """What one sending thread's current request went over: set by the meter and the
    connections as it goes, read by the runner when it is over (a thread-local of
    these attributes when a batch has several sending threads)."""

    connect_ms: float | None  # how long its last connect took, if it connected
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


class CountingHTTPConnection(HTTPConnection):
    """urllib3's HTTPConnection, counted by the Meter given as the ``meter`` keyword argument.

    A request goes over a re-used connection when the socket is open and has
    already carried a request since it was connected. Every request begins in
    ``putrequest()`` (urllib3's ``request()`` calls it first; it is http.client's
    public step, and wrapping it with its own arguments costs a fifth of wrapping
    ``request()``); HTTPS connects before it, plain HTTP after it, while sending.
    """

    response_class = FinalResponse

    def __init__(self, *args: Any, meter: Meter, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._meter = meter
        self._carried_request = False  # the open socket has carried a request
        self._connects_sending = False  # putrequest() found no socket: send() connects

    def connect(self) -> None:
        self._meter.attempting(None, reused=False)  # one that connects: a new connection
        self.timeout = self._meter.cap_timeout(self.timeout, "connect")
        start = time.perf_counter()
        try:
            super().connect()
        except BaseException:
            # urllib3 sets sock as soon as the TCP connection is made; still set
            # after a failure means the TLS handshake (or a proxy tunnel) failed on
            # an opened TCP connection, which counts.
            if self.sock is not None:
                self._meter.connected(ms_since(start))
            raise
        # Connected while sending (plain HTTP): the request being sent is its first.
        self._carried_request, self._connects_sending = self._connects_sending, False
        self._meter.on_socket(self.sock)
        self._meter.connected(ms_since(start))

    def putrequest(self, method: str, url: str, skip_host: bool = False,
                   skip_accept_encoding: bool = False) -> None:
        sock = self.sock
        self._meter.attempting(sock, reused=sock is not None and self._carried_request)
        self._carried_request, self._connects_sending = True, sock is None
        super().putrequest(method, url, skip_host, skip_accept_encoding)

    def getresponse(self) -> HTTPResponse:  # type: ignore[override]
        # The status line and headers may come a byte at a time: each read waits at
        # most what the request has left, and the watchdog cuts the rest.
        if self._meter.bounded:
            self.timeout = self._meter.cap_timeout(self.timeout, "headers")
        return super().getresponse()


class CountingHTTPSConnection(CountingHTTPConnection, HTTPSConnection):
    """urllib3's HTTPSConnection, counted as :class:`CountingHTTPConnection` is.

    Its ``connect()`` and ``putrequest()`` wrap HTTPSConnection's (the method order
    puts HTTPSConnection right after CountingHTTPConnection).
    """


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
