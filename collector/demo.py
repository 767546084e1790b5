"""A local stand-in for the example's search endpoint, so ``collector demo`` runs offline.

It answers ``GET /ajax/services/search/web?q=...&v=1.0`` on 127.0.0.1 with a
small JSON document as ``text/javascript; charset=utf-8``, over HTTP/1.1
keep-alive, as the service in the original urllib3 example did.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from collector.config import BatchSpec

SEARCH_PATH = "/ajax/services/search/web"


class _SearchHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the pool can re-use the connection
    server_version = "collector-demo"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle's algorithm
        # and delayed ACKs add 40 ms to every re-used request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        parts = urlsplit(self.path)
        if parts.path != SEARCH_PATH:
            self._reply(404, {"responseData": None, "responseDetails": "not found",
                              "responseStatus": 404})
            return
        query = parse_qs(parts.query).get("q", [""])[0]
        self._reply(200, {
            "responseData": {"results": [
                {"url": f"https://example.org/{query}", "title": f"About {query}"},
            ]},
            "responseDetails": None,
            "responseStatus": 200,
        })

    def _reply(self, status: int, document: object) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/javascript; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # the demo's output is the batch, not an access log


@contextmanager
def serve_demo() -> Iterator[str]:
    """Serve the search endpoint on a free port of 127.0.0.1; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SearchHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="collector-demo",
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{SEARCH_PATH}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def demo_batch(url: str) -> BatchSpec:
    """The example's batch: ``q=python`` and ``q=php`` with ``v=1.0``, one pool of size 1."""
    return BatchSpec(url=url, queries=({"q": "python"}, {"q": "php"}), fields={"v": "1.0"},
                     pool_size=1)
