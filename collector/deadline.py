"""A request's ``total`` timeout as one deadline over all it does.

urllib3's ``Timeout(total=...)`` bounds each attempt's connect and each socket
read, so a server that trickles its headers a byte at a time, retries, and
``Retry-After`` waits each start the clock again. A :class:`Deadline` starts
when the request first has a connection (waiting for the pool is not the
request's time) and ends ``total`` seconds later, whatever is under way:

- connects are given at most the time left (:mod:`collector.meter`'s connection);
- a retry, or a ``Retry-After`` wait, that would end past it is not made
  (:class:`collector.meter.AttemptRetry`);
- anything still reading when it passes is cut by the batch's :class:`Watchdog`,
  which shuts the request's TCP connection down, so the blocked read returns at once.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Literal

Phase = Literal["connect", "headers", "body"]

# A deadline is taken for passed this close to its end: a read that returns a
# moment early, cut by the watchdog, is still the deadline's doing.
_SLACK = 0.01


class Deadline:
    """One request's total time: when it ends, what the request is doing, whether it was cut."""

    __slots__ = ("cut", "ends", "phase", "sock", "total")

    def __init__(self, total: float) -> None:
        self.total = total
        self.ends: float | None = None  # perf_counter(); set when the request has a connection
        self.phase: Phase = "connect"
        self.sock: socket.socket | None = None  # what the watchdog shuts down
        self.cut: Phase | None = None  # the phase the watchdog cut

    def start(self) -> bool:
        """Start the clock (once); whether this call started it."""
        if self.ends is not None:
            return False
        self.ends = time.perf_counter() + self.total
        return True

    def remaining(self) -> float:
        """Seconds left (the whole ``total`` before the clock starts)."""
        return self.total if self.ends is None else self.ends - time.perf_counter()

    def allows(self, seconds: float) -> bool:
        """Whether waiting ``seconds`` (then trying again) still ends before the deadline."""
        return self.remaining() - seconds > _SLACK

    def passed(self) -> bool:
        return self.cut is not None or self.remaining() <= _SLACK

    @property
    def ended_in(self) -> Phase:
        """The phase the request was in when the deadline ended it (or is in now)."""
        return self.cut or self.phase

    def describe(self) -> str:
        """What was not done in time, for the request's error message."""
        what = {"connect": "connection", "headers": "response headers",
                "body": "body"}[self.ended_in]
        return f"{what} not complete within the total timeout ({self.total:g}s)"


class Watchdog:
    """A thread for one batch that shuts down the connection of each request whose
    deadline passed; started with the first deadline it watches, stopped by :meth:`close`."""

    def __init__(self) -> None:
        self._watched: set[Deadline] = set()
        self._changed = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._wakes_at: float | None = None  # when the thread looks next (None: when told)

    def watch(self, deadline: Deadline) -> None:
        with self._changed:
            self._watched.add(deadline)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="collector-deadlines",
                                                daemon=True)
                self._thread.start()
            # The requests of a batch share one total, so a new deadline is nearly always
            # later than one already watched: the thread is woken only when it must look
            # sooner than it would, not once per request.
            ends = deadline.ends
            if self._wakes_at is None or (ends is not None and ends < self._wakes_at):
                self._changed.notify()

    def done(self, deadline: Deadline) -> None:
        """The request is over: its connection may carry another request, never cut now."""
        with self._changed:
            self._watched.discard(deadline)
            deadline.sock = None

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        with self._changed:
            while not self._closed:
                now = time.perf_counter()
                for deadline in [d for d in self._watched if d.ends is not None and
                                 d.ends <= now]:
                    self._watched.discard(deadline)
                    deadline.cut = deadline.phase
                    if deadline.sock is not None:
                        _shut_down(deadline.sock)
                ends = [d.ends for d in self._watched if d.ends is not None]
                self._wakes_at = min(ends) if ends else None
                self._changed.wait(None if self._wakes_at is None else self._wakes_at - now)


def _shut_down(sock: socket.socket) -> None:
    # The TCP connection itself (socket.socket's method, also for a TLS socket, whose
    # own shutdown() would take its TLS state from under the thread reading it): the
    # blocked read returns, the request fails, and urllib3 discards the connection.
    with contextlib.suppress(OSError):  # closed already: nothing is reading from it
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
