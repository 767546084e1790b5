"""A raw-socket HTTP server on 127.0.0.1 for what a polite server never sends.

The query's ``f`` picks the fault (``/x?f=bad-chunk``), else the path does
(``/bad-chunk``); ``f=ok`` answers properly, so a test can check that the
next query of a batch still succeeds over the same pool. ``accepted`` counts
TCP connections.
"""

from __future__ import annotations

import gzip
import socket
import struct
import threading

FAULTS = {
    "/reset-in-headers": "a TCP reset halfway through the status line and headers",
    "/reset-in-body": "a TCP reset halfway through the body",
    "/bad-chunk": "a chunk size that is not hexadecimal",
    "/long-line": "a header line over 64 KiB",
    "/many-headers": "more than 100 headers",
    "/gzip-bomb": "a gzip body that inflates to 50 MB",
    "/silent": "accepts, reads the request, never answers",
    "/trickle-headers": "the status line and headers one byte every 0.1 s, for ever",
    "/early-hints": "a 103 Early Hints, then the real 200",
    "/negative-length": "Content-Length: -5",
    "/two-lengths": "two Content-Length headers that disagree",
    "/busy-for-ever": "503 with Retry-After: 999999",
    "/http10": "an HTTP/1.0 answer, then the connection closed",
}


class FaultServer:
    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.accepted = 0
        self._open = True
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self._open = False
        self._listener.close()

    def __enter__(self) -> FaultServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _accept(self) -> None:
        while self._open:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        try:
            while self._open:
                line = reader.readline()
                if not line:
                    return
                path, _, query = line.split(b" ")[1].decode().partition("?")
                chosen = dict(p.partition("=")[::2] for p in query.split("&") if p).get("f")
                target = "/" + chosen if chosen else path
                while reader.readline() not in (b"\r\n", b"\n", b""):
                    pass  # the request's headers; these tests send no bodies
                if not self._answer(conn, target):
                    return
        except OSError:
            return
        finally:
            reader.close()
            conn.close()

    def _answer(self, conn: socket.socket, target: str) -> bool:
        """Send the fault; True when the connection stays usable."""
        if target == "/ok":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain"
                         b"\r\n\r\nok")
            return True
        if target == "/early-hints":
            conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
                         b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            return True
        if target == "/busy-for-ever":
            conn.sendall(b"HTTP/1.1 503 Busy\r\nRetry-After: 999999\r\nContent-Length: 0"
                         b"\r\n\r\n")
            return True
        if target == "/trickle-headers":
            for byte in b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"y" * 1000:
                conn.sendall(bytes([byte]))
                threading.Event().wait(0.1)
        elif target == "/http10":
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
        elif target == "/negative-length":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nhello")
        elif target == "/two-lengths":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\n"
                         b"hello")
        elif target == "/reset-in-headers":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Ty")
            _reset(conn)
        elif target == "/reset-in-body":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
            _reset(conn)
        elif target == "/bad-chunk":
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"zz\r\nhello\r\n0\r\n\r\n")
        elif target == "/long-line":
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 70_000 +
                         b"\r\nContent-Length: 2\r\n\r\nok")
        elif target == "/many-headers":
            headers = b"".join(b"X-H%d: v\r\n" % i for i in range(150))
            conn.sendall(b"HTTP/1.1 200 OK\r\n" + headers + b"Content-Length: 2\r\n\r\nok")
        elif target == "/gzip-bomb":
            body = gzip.compress(b"\0" * 50_000_000)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            return True
        elif target == "/silent":
            threading.Event().wait(30)
        return False


def _reset(conn: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0) instead of an orderly FIN."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
