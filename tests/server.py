"""A real HTTP/1.1 server on 127.0.0.1 for the tests, in a thread, that counts what it sees.

Endpoints (any method):

- ``/search?q=..``    the example's endpoint: JSON as ``text/javascript; charset=utf-8``
                      (``q=hangup`` closes the connection instead; ``q=quit``
                      also stops listening)
- ``/status/N``       an empty answer with status N
- ``/delay/S``        answers after S seconds
- ``/bytes/N``        N bytes of body (``?chunked=1``: no Content-Length, chunked)
- ``/truncated``      promises 100 bytes, sends 10, hangs up
- ``/garbage``        a reply that is not HTTP
- ``/hangup``         closes the connection without a reply
- ``/slow-body/S``    headers at once, then the body after S seconds
- ``/evil-type``      a Content-Type with a NUL and a terminal escape code in it
- ``/trickle/N/S``    promises N bytes, sends one every S seconds
- ``/unavailable/KEY/N``  503 for the first N times KEY is asked for, then 200
- ``/hops/N``         302 to ``/hops/N-1`` .. ``/hops/0``, which answers 200
- ``/elsewhere``      302 to another host
- ``/busy``           429 with ``Retry-After: 3600``
- ``/flaky/KEY``      hangs up without a reply the first time KEY is asked for,
                      answers 200 after that

With ``tls`` the server speaks HTTPS; ``accepted`` counts TCP connections,
those whose TLS handshake then failed included; ``handshake_delay`` (seconds) waits
that long after accepting a connection before the TLS handshake.

``close_every=N`` answers every Nth response on a connection with
``Connection: close`` and closes it (as nginx's ``keepalive_requests`` does);
``connection_close=True`` does so for every response. ``accepted`` counts the
TCP connections accepted, ``peak_in_flight`` the most requests handled at once.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LocalServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.responses_on_connection = 0

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch()

    do_HEAD = do_POST = do_GET  # noqa: N815

    def _dispatch(self) -> None:
        server = self.server
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        with server.lock:
            server.in_flight += 1
            server.peak_in_flight = max(server.peak_in_flight, server.in_flight)
            server.seen.append((self.command, self.path, body, dict(self.headers)))
        if server.before_answer is not None:
            server.before_answer()
        try:
            self._route(parts.path.split("/")[1:], parse_qs(parts.query))
        finally:
            with server.lock:
                server.in_flight -= 1

    def _route(self, path: list[str], query: dict[str, list[str]]) -> None:
        head, arg = path[0], path[1] if len(path) > 1 else ""
        if head == "search":
            q = query.get("q", [""])[0]
            if q == "hangup":
                self.close_connection = True
                return
            if q == "quit":  # stop listening, then hang up: a retry is refused
                self.server.shutdown()
                self.server.socket.close()
                self.close_connection = True
                return
            document = {"responseData": {"results": [{"title": f"About {q}"}]},
                        "responseStatus": 200}
            self._answer(200, json.dumps(document).encode(), "text/javascript; charset=utf-8")
        elif head == "gzip":  # JSON sent gzip-encoded, as to a client that asked for it
            import gzip

            document = {"status": "UP", "load": 0.25}
            self._answer(200, gzip.compress(json.dumps(document).encode()), "application/json",
                         extra={"Content-Encoding": "gzip"})
        elif head == "status":
            self._answer(int(arg), b"")
        elif head == "delay":
            time.sleep(float(arg))
            self._answer(200, b"done")
        elif head == "bytes":
            self._answer(200, b"x" * int(arg), chunked="chunked" in query)
        elif head == "truncated":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.close_connection = True
        elif head == "garbage":
            self.wfile.write(b"THIS IS NOT HTTP\r\n\r\n")
            self.close_connection = True
        elif head == "hangup":
            self.close_connection = True
        elif head == "evil-type":
            self._answer(200, b"ok", "text/plain\x00\x1b[31mred")
        elif head == "trickle":
            count, pause = int(arg), float(path[2])
            self.send_response(200)
            self.send_header("Content-Length", str(count))
            self.end_headers()
            self.wfile.flush()
            for _ in range(count):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(pause)
        elif head == "unavailable":
            with self.server.lock:
                self.server.unavailable[arg] = seen = self.server.unavailable.get(arg, 0) + 1
            if seen <= int(path[2]):
                self._answer(503, b"try again", extra={"Retry-After": "0"})
            else:
                self._answer(200, b"at last")
        elif head == "hops":
            left = int(arg)
            if left:
                self._answer(302, b"", extra={"Location": f"/hops/{left - 1}?from={left}"})
            else:
                self._answer(200, b"arrived")
        elif head == "elsewhere":
            self._answer(302, b"", extra={"Location": "http://another.invalid/x"})
        elif head == "busy":
            self._answer(429, b"slow down", extra={"Retry-After": "3600"})
        elif head == "flaky":
            with self.server.lock:
                first = arg not in self.server.flaky_seen
                self.server.flaky_seen.add(arg)
            if first:
                self.close_connection = True
            else:
                self._answer(200, b"second time lucky")
        elif head == "slow-body":
            self.send_response(200)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.flush()
            time.sleep(float(arg))
            self.wfile.write(b"late")
        else:
            self._answer(404, b"not found")

    def _answer(self, status: int, body: bytes, content_type: str = "text/plain",
                chunked: bool = False, extra: dict[str, str] | None = None) -> None:
        self.responses_on_connection += 1
        every = self.server.close_every
        close = self.server.connection_close or bool(
            every and self.responses_on_connection % every == 0)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command == "HEAD":
            return
        if chunked:
            for start in range(0, len(body), 4096):
                piece = body[start:start + 4096]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class LocalServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, *, close_every: int = 0, connection_close: bool = False,
                 tls: ssl.SSLContext | None = None, handshake_delay: float = 0.0) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.handshake_delay = handshake_delay
        self.close_every = close_every
        self.connection_close = connection_close
        self.lock = threading.Lock()
        self.accepted = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self.seen: list[tuple[str, str, bytes, dict[str, str]]] = []
        self.flaky_seen: set[str] = set()
        self.unavailable: dict[str, int] = {}
        # Called before each answer, for what the world does while a request is in flight.
        self.before_answer: Callable[[], object] | None = None
        self.tls = tls
        self.scheme = "http" if tls is None else "https"
        self._thread = threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True)

    def get_request(self) -> tuple[socket.socket, object]:
        conn, address = super().get_request()
        with self.lock:
            self.accepted += 1  # a TCP connection, counted before any TLS handshake
        if self.tls is not None:
            if self.handshake_delay:
                threading.Event().wait(self.handshake_delay)  # the server is slow to answer
            # A failed handshake raises ssl.SSLError, an OSError: socketserver drops it.
            conn = self.tls.wrap_socket(conn, server_side=True)
        return conn, address

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # clients that hang up are part of the tests

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.server_address[1]}{path}"

    def __enter__(self) -> LocalServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join()


class Blackhole:
    """A port whose listen queue is full, so a new connect() hangs until it times out."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self.port = self._listener.getsockname()[1]
        self._filler = socket.create_connection(("127.0.0.1", self.port))

    def __enter__(self) -> Blackhole:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._filler.close()
        self._listener.close()
