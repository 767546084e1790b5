"""A local stand-in for the example's search endpoint, so ``collector demo`` runs offline.

It answers ``GET /ajax/services/search/web?q=...&v=1.0`` on 127.0.0.1 over
HTTP/1.1 keep-alive as the retired web search API of the original urllib3
example did by the time the example was run: status 200, ``text/javascript;
charset=utf-8``, and the same 211-byte JSON document whatever the query (the
API's notice that it was no longer available). That is why the example
printed 211 for both queries, and why the demo does too.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from collector.spec import BatchSpec

SEARCH_PATH = "/ajax/services/search/web"
# What the example's endpoint answered to every query: 211 bytes as JSON.
ANSWER = {
    "responseData": None,
    "responseDetails": "The Google Web Search API is no longer available. Please migrate to "
                       "the Google Custom Search API (https://developers.google.com/custom-search/)",
    "responseStatus": 403,
}


class _SearchHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the pool can re-use the connection
    server_version = "collector-demo"

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without this, Nagle's algorithm
        # and delayed ACKs add 40 ms to every re-used request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if urlsplit(self.path).path != SEARCH_PATH:
            self._reply(404, {"responseData": None, "responseDetails": "not found",
                              "responseStatus": 404})
            return
        self._reply(200, ANSWER)

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
