"""Every fault is one precise request row; the batch goes on over the same pool."""

from __future__ import annotations

import gzip
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.runner import run_batch
from collector.spec import BatchSpec, Timeouts
from tests.faults import FaultServer
from tests.server import LocalServer


@pytest.fixture
def faults() -> Iterator[FaultServer]:
    with FaultServer() as server:
        yield server


@pytest.mark.parametrize(("path", "kind"), [
    ("/reset-in-headers", "protocol"),
    ("/reset-in-body", "protocol"),
    ("/bad-chunk", "protocol"),
    ("/long-line", "protocol"),
    ("/many-headers", "protocol"),
    ("/silent", "read_timeout"),
    ("/negative-length", "protocol"),
    ("/two-lengths", "protocol"),
])
def test_a_fault_is_one_row_and_the_batch_goes_on(faults: FaultServer, path: str,
                                                  kind: str) -> None:
    # The first query meets the fault; the next two are answered, over the same pool.
    spec = BatchSpec(url=faults.url("/x"), timeout=Timeouts(connect=1, read=0.5),
                     queries=({"f": path[1:]}, {"f": "ok"}, {"f": "ok"}))
    result = run_batch(spec)
    first, *rest = result.requests
    assert first.error_kind == kind, first.error
    assert "\n" not in (first.error or "")
    assert [(r.status, r.error_kind) for r in rest] == [(200, None), (200, None)]
    assert result.tcp_connections == faults.accepted  # every TCP connection counted
    assert result.num_requests == 3 and result.status == "partial"
    if path == "/reset-in-body":
        assert first.status == 200 and first.body_length == 100  # the bytes that arrived


def test_an_informational_response_is_skipped_for_the_final_one(faults: FaultServer) -> None:
    result = run_batch(BatchSpec(url=faults.url("/x"),
                                 queries=({"f": "early-hints"}, {"f": "ok"})))
    assert [(r.status, r.error_kind, r.body_length) for r in result.requests] == [
        (200, None, 2), (200, None, 2)]
    assert result.tcp_connections == 1  # and the connection carried on


@pytest.mark.parametrize(("timeout", "path", "retries", "kind", "what"), [
    # headers one byte every 0.1 s: each read is quick, the whole never ends
    (2.0, "/trickle-headers", 0, "read_timeout", "response headers not complete"),
    # with retries after the cut: no attempt starts past the deadline
    (1.5, "/trickle-headers", 3, "read_timeout", "response headers"),
    # a server that never answers, retried
    (1.0, "/silent", 5, "read_timeout", "within the total timeout"),
])
def test_total_is_the_deadline_of_the_whole_request(faults: FaultServer, timeout: float,
                                                    path: str, retries: int, kind: str,
                                                    what: str) -> None:
    import time

    started = time.monotonic()
    result = run_batch(BatchSpec(url=faults.url(path), retries=retries,
                                 timeout=Timeouts(connect=1, read=5, total=timeout)))
    took = time.monotonic() - started
    (request,) = result.requests
    assert (request.status, request.error_kind) == (None, kind), request.error
    assert what in (request.error or "")
    assert timeout - 0.05 < took < timeout + 0.5


def test_a_retry_after_past_the_deadline_is_not_waited_for(faults: FaultServer) -> None:
    import time

    started = time.monotonic()
    result = run_batch(BatchSpec(url=faults.url("/busy-for-ever"), retries=2,
                                 retry_statuses=(503,), retry_after_max=3600,
                                 timeout=Timeouts(connect=1, read=1, total=3)))
    took = time.monotonic() - started
    (request,) = result.requests
    assert (request.status, request.error_kind, request.attempts) == (503, None, 1)
    assert took < 1  # the 503 is the answer, at once


def test_a_gzip_bomb_is_counted_as_delivered(faults: FaultServer) -> None:
    result = run_batch(BatchSpec(url=faults.url("/gzip-bomb"), max_body=1_000_000))
    (request,) = result.requests
    expected = len(gzip.compress(b"\0" * 50_000_000))
    # The body is never inflated: its length as delivered, under max_body, no error.
    assert (request.status, request.error_kind, request.body_length) == (200, None, expected)
    assert request.body_sha256 is not None and len(request.body_sha256) == 64


def test_a_certificate_for_another_name_is_a_tls_error(tmp_path: Path) -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("somewhere.else").configure_cert(context)  # not 127.0.0.1
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with LocalServer(tls=context) as server:
        result = run_batch(BatchSpec(url=server.url("/search"), ca_file=str(ca_file),
                                     queries=({"q": "a"}, {"q": "b"})))
        accepted = server.accepted
    assert [r.error_kind for r in result.requests] == ["tls", "tls"]
    assert "match" in (result.requests[0].error or "").lower() or "mismatch" in (
        result.requests[0].error or "").lower()
    assert result.tcp_connections == accepted == 2


class ReplyServer:
    """Answers every connection with ``reply`` (bytes as they are), then closes it."""

    def __init__(self) -> None:
        self.reply = b""
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.recv(65536)
                    conn.sendall(self.reply)
                except OSError:
                    pass

    def close(self) -> None:
        self._listener.close()


@pytest.fixture(scope="module")
def replies() -> Iterator[ReplyServer]:
    server = ReplyServer()
    yield server
    server.close()


status_lines = st.sampled_from([b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 503 Busy\r\n",
                                b"HTTP/1.0 204 No Content\r\n", b"HTTP/1.1 999 ?\r\n", b""])
header_lines = st.lists(st.sampled_from([
    b"Content-Length: 5\r\n", b"Content-Length: -1\r\n", b"Content-Length: x\r\n",
    b"Transfer-Encoding: chunked\r\n", b"Content-Type: text/\x00\x1b[0m\r\n",
    b"Content-Encoding: gzip\r\n", b"X: \xff\xfe\r\n", b"Bad header\r\n", b"\r\n",
]), max_size=5)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(status=status_lines, headers=header_lines, body=st.binary(max_size=64))
def test_any_reply_is_one_row_never_an_exception(replies: ReplyServer, status: bytes,
                                                 headers: list[bytes], body: bytes) -> None:
    replies.reply = status + b"".join(headers) + b"\r\n" + body
    result = run_batch(BatchSpec(url=f"http://127.0.0.1:{replies.port}/",
                                 timeout=Timeouts(connect=1, read=1, total=2)))
    (request,) = result.requests
    assert request.status is not None or request.error_kind is not None
    assert "\n" not in (request.error or "")
    assert result.tcp_connections >= 1
