"""A fast HTTP/1.1 keep-alive server for the benchmarks, in a process of its own.

nginx is not on these machines, and the test suite's ``http.server`` spends
more time parsing a request than collector spends sending it, so the
benchmarks answer from this: one thread per connection, the request's head
read up to its blank line, one fixed reply (the example's JSON, with
``Content-Length``), ``TCP_NODELAY`` so no reply waits for a delayed ACK.
``--delay`` holds every reply that long (the concurrency benchmark's slow
server). A separate process, so the server never competes with the client
for the client's GIL.

    python -m benchmarks.server [--delay 0.05]     # prints the port, serves until killed
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

BODY = b'{"responseData": {"results": [], "cursor": {"estimatedResultCount": "211"}}, ' \
       b'"responseDetails": null, "responseStatus": 200}'
REPLY = (b"HTTP/1.1 200 OK\r\nContent-Type: text/javascript; charset=utf-8\r\n"
         b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))


def _serve_connection(conn: socket.socket, delay: float) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pending = b""
    with conn:
        while True:
            end = pending.find(b"\r\n\r\n")
            if end < 0:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                pending += chunk
                continue
            pending = pending[end + 4:]  # the benchmarks send no request bodies
            if delay:
                time.sleep(delay)
            conn.sendall(REPLY)


def serve(delay: float) -> None:
    listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_serve_connection, args=(conn, delay), daemon=True).start()


@contextmanager
def running(delay: float = 0.0) -> Iterator[str]:
    """The server in a subprocess while the block runs; yields its base URL."""
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.server", "--delay", str(delay)],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A fast keep-alive HTTP/1.1 server.")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each reply")
    serve(parser.parse_args().delay)
