"""The runner against real servers on 127.0.0.1: what it sends, counts and records."""

from __future__ import annotations

import hashlib
import socket
import ssl
import time

import pytest
from urllib3.exceptions import NameResolutionError

from collector.runner import classify, run_batch
from collector.spec import BatchSpec, Timeouts
from tests.server import Blackhole, LocalServer


def batch(url: str, n: int = 0, **options: object) -> BatchSpec:
    queries = tuple({"q": f"term{i}"} for i in range(n))
    return BatchSpec(url=url, queries=queries, **options)  # type: ignore[arg-type]


def test_the_example_reuses_one_connection(server: LocalServer) -> None:
    spec = BatchSpec(url=server.url("/search"), queries=({"q": "python"}, {"q": "php"}),
                     fields={"v": "1.0"}, pool_size=1)
    result = run_batch(spec)

    assert [r.status for r in result.requests] == [200, 200]
    assert {r.content_type for r in result.requests} == {"text/javascript; charset=utf-8"}
    assert [r.query for r in result.requests] == ["q=python&v=1.0", "q=php&v=1.0"]
    assert [path for _, path, _, _ in server.seen] == ["/search?q=python&v=1.0",
                                                       "/search?q=php&v=1.0"]
    for request in result.requests:
        assert request.body_length is not None and request.body_length > 0
        assert request.body_length == request.content_length
    assert result.requests[0].body_length != result.requests[1].body_length  # php is shorter
    assert (result.num_connections, result.num_requests, result.tcp_connections) == (1, 2, 1)
    assert server.accepted == 1
    assert [r.reused for r in result.requests] == [False, True]
    assert result.requests[0].connect_ms is not None and result.requests[1].connect_ms is None
    assert result.status == "ok" and result.requests_failed == 0


@pytest.mark.parametrize(("options", "expected_tcp"), [
    ({}, 1),                               # kept alive throughout
    ({"close_every": 2}, 3),               # like nginx keepalive_requests 2
    ({"connection_close": True}, 5),       # Connection: close on every answer
])
def test_tcp_connections_are_the_ones_the_server_accepted(options: dict[str, object],
                                                          expected_tcp: int) -> None:
    with LocalServer(**options) as server:  # type: ignore[arg-type]
        result = run_batch(batch(server.url("/search"), 5))
        accepted = server.accepted
    assert result.tcp_connections == accepted == expected_tcp
    # The pool's own counters do not see the reconnects: one object, five attempts.
    assert (result.num_connections, result.num_requests) == (1, 5)
    assert sum(not r.reused for r in result.requests) == expected_tcp
    assert all(r.status == 200 for r in result.requests)


@pytest.mark.parametrize("options", [{}, {"close_every": 2}])
def test_tls_connections_are_counted_too(tls_context: ssl.SSLContext, ca_file: str,
                                         options: dict[str, object]) -> None:
    with LocalServer(tls=tls_context, **options) as server:  # type: ignore[arg-type]
        result = run_batch(batch(server.url("/search"), 4, ca_file=ca_file))
        accepted = server.accepted
    assert all(r.status == 200 for r in result.requests), result.requests[0].error
    assert result.tcp_connections == accepted == (1 if not options else 2)
    assert result.url.startswith("https://")
    assert (result.num_connections, result.num_requests) == (1, 4)


def test_an_untrusted_certificate_is_a_tls_error(https_server: LocalServer) -> None:
    result = run_batch(batch(https_server.url("/search"), 2))
    for request in result.requests:
        assert request.error_kind == "tls"
        assert request.status is None
        assert "certificate" in (request.error or "").lower()
    # Each handshake failed on a TCP connection that was really opened.
    assert result.tcp_connections == https_server.accepted == 2
    assert all(r.connect_ms is not None and not r.reused for r in result.requests)


def test_every_failed_handshake_counts_its_tcp_connection(https_server: LocalServer) -> None:
    # The system's CAs do not know trustme's: each attempt opens a TCP connection,
    # then fails the handshake; with 2 retries that is 3 connections for 1 request.
    result = run_batch(BatchSpec(url=https_server.url("/search"), retries=2))
    (request,) = result.requests
    assert (request.error_kind, request.attempts) == ("tls", 3)
    assert [a.error_kind for a in request.failed_attempts] == ["tls"] * 3
    assert result.tcp_connections == https_server.accepted == 3
    assert result.num_requests == 3


def test_a_missing_ca_file_is_the_batchs_error(server: LocalServer, tmp_path: object) -> None:
    result = run_batch(BatchSpec(url="https://127.0.0.1:1/x", ca_file=f"{tmp_path}/gone.pem",
                                 queries=({"q": "a"}, {"q": "b"})))
    assert [r.error_kind for r in result.requests] == ["tls", "tls"]
    assert "gone.pem" in (result.requests[0].error or "")
    assert "is not a readable file on this machine" in (result.requests[0].error or "")
    assert [r.query for r in result.requests] == ["q=a", "q=b"]
    assert (result.num_connections, result.num_requests, result.tcp_connections) == (0, 0, 0)
    assert result.status == "failed"


def test_concurrency_shares_one_pool_and_overlaps(server: LocalServer) -> None:
    delay, n = 0.3, 4
    sequential = run_batch(batch(server.url(f"/delay/{delay}"), n))
    server.peak_in_flight = 0
    before = server.accepted

    parallel = run_batch(batch(server.url(f"/delay/{delay}"), n, pool_size=n, concurrency=n))

    assert server.peak_in_flight == n
    assert server.accepted - before == parallel.tcp_connections <= n
    assert parallel.num_connections <= n
    assert [r.position for r in parallel.requests] == list(range(n))
    seq_s = (sequential.finished_at - sequential.started_at).total_seconds()
    par_s = (parallel.finished_at - parallel.started_at).total_seconds()
    assert seq_s >= n * delay
    assert par_s < seq_s / 2  # about 1/n; loose so a busy machine does not flake


def test_more_threads_than_connections_wait_for_the_pool(server: LocalServer) -> None:
    result = run_batch(batch(server.url("/delay/0.05"), 6, pool_size=2, concurrency=6))
    assert server.peak_in_flight <= 2
    assert result.tcp_connections == server.accepted <= 2
    assert all(r.status == 200 for r in result.requests)


def test_http_error_statuses_are_data(server: LocalServer) -> None:
    result = run_batch(BatchSpec(url=server.url("/status/503"), queries=({}, {})))
    assert [r.status for r in result.requests] == [503, 503]
    assert result.status == "ok" and result.requests_failed == 0
    assert [r.attempts for r in result.requests] == [1, 1]  # statuses are never retried


def test_redirects_are_recorded_not_followed(server: LocalServer) -> None:
    result = run_batch(BatchSpec(url=server.url("/status/302")))
    assert result.requests[0].status == 302
    assert len(server.seen) == 1


def test_a_failing_request_does_not_stop_the_batch(server: LocalServer) -> None:
    spec = BatchSpec(url=server.url("/search"),
                     queries=({"q": "a"}, {"q": "hangup"}, {"q": "b"}))
    result = run_batch(spec)
    assert [r.status for r in result.requests] == [200, None, 200]
    assert [r.error_kind for r in result.requests] == [None, "protocol", None]
    assert result.status == "partial"
    assert (result.requests_succeeded, result.requests_failed) == (2, 1)
    # the hung-up connection was replaced: the third request opened a new one
    assert [r.reused for r in result.requests] == [False, True, False]
    assert result.tcp_connections == server.accepted == 2


def test_reused_describes_the_last_attempt(https_server: LocalServer, ca_file: str) -> None:
    result = run_batch(BatchSpec(url=https_server.url("/search"), ca_file=ca_file,
                                 queries=({"q": "a"}, {"q": "quit"}), retries=1))
    second = result.requests[1]
    # attempt 1 went over the kept-alive connection and was hung up on; attempt 2
    # found nobody listening (HTTPS connects before sending, so it never sent),
    # so the request did not end on a re-used connection
    assert (second.attempts, second.error_kind) == (2, "connect_refused")
    assert second.reused is False


def test_connection_refused(server: LocalServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: refused
        result = run_batch(batch(f"http://127.0.0.1:{port}/", 2))
    assert [r.error_kind for r in result.requests] == ["connect_refused"] * 2
    assert all(r.status is None and not r.reused for r in result.requests)
    assert "refused" in (result.requests[0].error or "").lower()
    assert result.tcp_connections == 0
    assert result.status == "failed"


def test_connect_timeout() -> None:
    with Blackhole() as hole:
        result = run_batch(BatchSpec(url=f"http://127.0.0.1:{hole.port}/",
                                     timeout=Timeouts(connect=0.3, read=1)))
    assert result.requests[0].error_kind == "connect_timeout"
    assert 250 < result.requests[0].elapsed_ms < 5000


def test_read_timeout_before_the_headers(server: LocalServer) -> None:
    result = run_batch(BatchSpec(url=server.url("/delay/1"),
                                 timeout=Timeouts(connect=1, read=0.2)))
    request = result.requests[0]
    assert request.error_kind == "read_timeout" and request.status is None


def test_read_timeout_in_the_body_keeps_the_status(server: LocalServer) -> None:
    result = run_batch(BatchSpec(url=server.url("/slow-body/1"),
                                 timeout=Timeouts(connect=1, read=0.2)))
    request = result.requests[0]
    assert request.error_kind == "read_timeout"
    assert request.status == 200 and request.body_sha256 is None


def test_total_timeout_bounds_the_body(server: LocalServer) -> None:
    result = run_batch(BatchSpec(url=server.url("/slow-body/0.5"),
                                 timeout=Timeouts(connect=1, read=2, total=0.2)))
    assert result.requests[0].error_kind == "read_timeout"


@pytest.mark.parametrize("path", ["/garbage", "/hangup", "/truncated"])
def test_protocol_errors(server: LocalServer, path: str) -> None:
    result = run_batch(BatchSpec(url=server.url(path), queries=({}, {})))
    assert [r.error_kind for r in result.requests] == ["protocol", "protocol"]
    assert all("\n" not in (r.error or "") for r in result.requests)


def test_retries_are_attempts_and_pool_requests(server: LocalServer) -> None:
    result = run_batch(BatchSpec(url=server.url("/hangup"), retries=2))
    request = result.requests[0]
    assert request.attempts == 3
    assert result.num_requests == 3
    assert len(server.seen) == 3
    # Every failed attempt is kept, oldest first, with its kind, message and time.
    assert [a.error_kind for a in request.failed_attempts] == ["protocol"] * 3
    assert all("RemoteDisconnected" in a.error or "closed" in a.error.lower()
               for a in request.failed_attempts)
    times = [a.at for a in request.failed_attempts]
    assert times == sorted(times) and request.started_at <= times[0]


def test_a_retry_that_succeeds_keeps_the_failed_attempt(server: LocalServer) -> None:
    result = run_batch(BatchSpec(url=server.url("/flaky/a"), retries=1))
    (request,) = result.requests
    assert (request.status, request.error_kind, request.attempts) == (200, None, 2)
    (failed,) = request.failed_attempts
    assert failed.error_kind == "protocol"
    assert request.started_at <= failed.at <= result.finished_at
    assert result.num_requests == 2 and len(server.seen) == 2


def test_without_failures_there_are_no_failed_attempts(server: LocalServer) -> None:
    result = run_batch(batch(server.url("/search"), 3, retries=2))
    assert [(r.attempts, r.failed_attempts) for r in result.requests] == [(1, ())] * 3


def test_a_body_failure_is_a_failed_attempt(server: LocalServer) -> None:
    result = run_batch(BatchSpec(url=server.url("/truncated"), retries=2))
    request = result.requests[0]
    assert (request.status, request.error_kind, request.attempts) == (200, "protocol", 1)
    assert [a.error_kind for a in request.failed_attempts] == ["protocol"]


@pytest.mark.parametrize("chunked", [False, True])
def test_body_is_counted_and_hashed_while_streaming(server: LocalServer, chunked: bool) -> None:
    size = 300_000
    result = run_batch(BatchSpec(url=server.url(f"/bytes/{size}" + ("?chunked=1" * chunked))))
    request = result.requests[0]
    assert request.body_length == size
    assert request.content_length == (None if chunked else size)
    assert request.body_sha256 == hashlib.sha256(b"x" * size).hexdigest()


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_cap_is_too_large(server: LocalServer, chunked: bool) -> None:
    path = "/bytes/100000" + ("?chunked=1" * chunked)
    result = run_batch(BatchSpec(url=server.url(path), queries=({}, {}), max_body=1000))
    for request in result.requests:
        assert request.error_kind == "too_large" and request.status == 200
        assert request.body_length == 1001  # read one byte past the cap, no more
        assert request.body_sha256 is None
    # the half-read connection was discarded, not re-used
    assert result.tcp_connections == server.accepted == 2


def test_a_body_at_the_cap_is_fine(server: LocalServer) -> None:
    result = run_batch(BatchSpec(url=server.url("/bytes/1000"), max_body=1000))
    assert result.requests[0].error_kind is None and result.requests[0].body_length == 1000


def test_post_sends_fields_as_a_form(server: LocalServer) -> None:
    run_batch(BatchSpec(url=server.url("/search"), method="POST",
                        queries=({"q": "python"},), fields={"v": "1.0"}))
    method, path, body, headers = server.seen[0]
    assert (method, path, body) == ("POST", "/search", b"q=python&v=1.0")
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_head_has_no_body(server: LocalServer) -> None:
    result = run_batch(BatchSpec(url=server.url("/bytes/50"), method="HEAD"))
    assert result.requests[0].status == 200 and result.requests[0].body_length == 0
    assert result.requests[0].content_length == 50


def test_query_merges_with_the_url_and_common_fields(server: LocalServer) -> None:
    run_batch(BatchSpec(url=server.url("/search?lang=en"), queries=({"q": "a b", "v": "2"},),
                        fields={"v": "1.0", "k": "x"}, headers={"X-Token": "s3cret"}))
    _, path, _, headers = server.seen[0]
    assert path == "/search?lang=en&q=a+b&v=2&k=x"
    assert headers["X-Token"] == "s3cret"
    assert headers["User-Agent"].startswith("collector/")


def test_no_queries_means_one_request(server: LocalServer) -> None:
    result = run_batch(BatchSpec(url=server.url("/search")))
    assert len(result.requests) == 1 and result.requests[0].query == ""


def test_times_are_plausible(server: LocalServer) -> None:
    started = time.time()
    result = run_batch(batch(server.url("/delay/0.1"), 1))
    request = result.requests[0]
    assert request.ttfb_ms is not None and 100 <= request.ttfb_ms <= request.elapsed_ms
    assert request.elapsed_ms < (time.time() - started) * 1000 + 1
    assert result.started_at <= request.started_at <= result.finished_at


def test_name_resolution_errors_are_dns() -> None:
    # Resolving a name would query this machine's DNS server, which tests must
    # not reach; the classification is checked on urllib3's own exception.
    exc = NameResolutionError("no.such.host", None, socket.gaierror(-2, "Name not known"))  # type: ignore[arg-type]
    assert classify(exc)[0] == "dns"


def test_total_bounds_a_trickling_body(server: LocalServer) -> None:
    started = time.monotonic()
    result = run_batch(BatchSpec(url=server.url("/trickle/1000/0.05"),
                                 timeout=Timeouts(connect=1, read=5, total=1)))
    took = time.monotonic() - started
    (request,) = result.requests
    assert (request.status, request.error_kind) == (200, "read_timeout")
    assert "total timeout (1s)" in (request.error or "")
    assert 0.9 < took < 1.6
    assert request.body_length is not None and 5 < request.body_length < 30  # what arrived
    assert 950 <= request.elapsed_ms < 1600


def test_a_body_complete_within_total_is_not_an_error(server: LocalServer) -> None:
    result = run_batch(BatchSpec(url=server.url("/trickle/5/0.1"),
                                 timeout=Timeouts(connect=1, read=1, total=3)))
    (request,) = result.requests
    assert (request.status, request.error_kind, request.body_length) == (200, None, 5)
    assert request.body_sha256 == hashlib.sha256(b"xxxxx").hexdigest()


def test_waiting_for_the_pool_is_not_charged_to_the_request(server: LocalServer) -> None:
    # 8 threads, 1 connection, 0.3 s answers: the last waits 2 s for the pool, which
    # is queued_ms, not part of its elapsed time, its time to first byte or its timeouts.
    result = run_batch(batch(server.url("/delay/0.3"), 8, pool_size=1, concurrency=8,
                             timeout=Timeouts(connect=1, read=1, total=1)))
    assert [r.error_kind for r in result.requests] == [None] * 8
    for request in result.requests:
        assert request.ttfb_ms is not None and 290 <= request.ttfb_ms < 900
        assert request.elapsed_ms < 900
    queued = sorted(r.queued_ms or 0 for r in result.requests)
    assert queued[0] < 100 and queued[-1] > 1500


def test_listed_statuses_are_retried_and_every_attempt_kept(server: LocalServer) -> None:
    result = run_batch(BatchSpec(url=server.url("/unavailable/a/2"), retries=3,
                                 retry_statuses=(502, 503, 504)))
    (request,) = result.requests
    assert (request.status, request.error_kind, request.attempts) == (200, None, 3)
    assert [(a.status, a.error_kind) for a in request.failed_attempts] == [(503, None)] * 2
    assert all(a.error.startswith("status 503") for a in request.failed_attempts)
    unlisted = run_batch(BatchSpec(url=server.url("/unavailable/b/2"), retries=3))
    assert (unlisted.requests[0].status, unlisted.requests[0].attempts) == (503, 1)


def test_retry_after_is_capped(server: LocalServer) -> None:
    started = time.monotonic()
    result = run_batch(BatchSpec(url=server.url("/busy"), retries=1, retry_statuses=(429,),
                                 retry_after_max=1))
    took = time.monotonic() - started
    (request,) = result.requests
    assert (request.status, request.attempts) == (429, 2)  # the last answer is data
    assert 0.9 < took < 3  # Retry-After: 3600 waited 1 s, the cap


def test_redirects_are_followed_on_the_same_origin_when_asked(server: LocalServer) -> None:
    result = run_batch(BatchSpec(url=server.url("/hops/3"), follow_redirects=True,
                                 queries=({"q": "a"},)))
    (request,) = result.requests
    assert (request.status, request.error_kind, request.attempts) == (200, None, 4)
    assert [(a.status, a.error) for a in request.failed_attempts] == [
        (302, f"redirected to {server.url('/hops/2?from=3')}"),
        (302, f"redirected to {server.url('/hops/1?from=2')}"),
        (302, f"redirected to {server.url('/hops/0?from=1')}")]
    assert request.url.endswith("/hops/3?q=a")  # the request as it was made
    assert result.tcp_connections == 1  # every hop through the batch's one pool
    not_asked = run_batch(BatchSpec(url=server.url("/hops/3")))
    assert not_asked.requests[0].status == 302


def test_a_redirect_to_another_host_is_not_followed(server: LocalServer) -> None:
    result = run_batch(BatchSpec(url=server.url("/elsewhere"), follow_redirects=True))
    (request,) = result.requests
    assert (request.status, request.failed_attempts) == (302, ())


def test_endless_redirects_stop(server: LocalServer) -> None:
    result = run_batch(BatchSpec(url=server.url("/hops/50"), follow_redirects=True))
    (request,) = result.requests
    assert request.status == 302 and len(request.failed_attempts) == 5
