"""Batches through real proxies (tinyproxy: HTTP and CONNECT; microsocks: SOCKS5), still
through one pool, their TCP connections (to the proxy) counted as the proxy logs them."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from collector.errors import JobFileError
from collector.jobfile import load_job_file
from collector.references import prepare
from collector.runner import run_batch
from collector.spec import BatchSpec
from tests.cli import invoke
from tests.peers import Microsocks, Tinyproxy
from tests.proxy import Proxy
from tests.server import LocalServer

QUERIES = tuple({"q": f"q{i}"} for i in range(4))
# tinyproxy forwarding http:// now and then closes a kept-alive client connection without
# a Connection: close, and a request sent on it just then gets no answer ("Remote end
# closed connection without response": 2 batches in 40 under two CPU hogs). The jobs
# that forward through it retry once, as a job through such a proxy would; the retry's
# new connection is one the proxy logs like any other, so the counts stay exact.
FORWARDED_RETRIES = 1


@pytest.fixture
def tinyproxy(tmp_path: Path) -> Iterator[Tinyproxy]:
    with Tinyproxy(tmp_path) as proxy:
        yield proxy


@pytest.fixture
def microsocks(tmp_path: Path) -> Iterator[Microsocks]:
    with Microsocks(tmp_path) as proxy:
        yield proxy


def _through(proxy: Tinyproxy | Microsocks, spec: BatchSpec, expected_connections: int = 1
             ) -> None:
    """The batch's connections are the proxy's clients: as many as the proxy logged, all
    to its port."""
    result = run_batch(spec)
    assert [r.status for r in result.requests] == [200] * len(QUERIES), result.requests
    logged = proxy.wait_connections(result.tcp_connections)
    assert result.tcp_connections == logged >= expected_connections
    assert len(result.connections) == result.tcp_connections
    assert {c.remote_port for c in result.connections} == {proxy.port}
    first = result.requests[0]
    assert first.tcp_ms is not None and first.connection == 1


def test_http_through_a_forwarding_proxy(tinyproxy: Tinyproxy, server: LocalServer) -> None:
    spec = BatchSpec(url=server.url("/search"), queries=QUERIES, proxy=tinyproxy.url(),
                     retries=FORWARDED_RETRIES)
    _through(tinyproxy, spec)
    # The server got the requests from the proxy, for its own host
    hosts = {headers.get("Host") for _, _, _, headers in server.seen}
    assert hosts == {f"127.0.0.1:{server.server_address[1]}"}
    assert server.accepted >= 1
    run = run_batch(spec)
    assert run.requests[0].url == server.url("/search?q=q0")  # stored as the server's URL
    assert run.requests[0].tls_ms is None


def test_https_through_a_connect_tunnel(tinyproxy: Tinyproxy, https_server: LocalServer,
                                        ca_file: str) -> None:
    spec = BatchSpec(url=https_server.url("/search"), queries=QUERIES, ca_file=ca_file,
                     proxy=tinyproxy.url())
    result = run_batch(spec)
    assert [r.status for r in result.requests] == [200] * 4
    # one tunnel, kept alive: one connection to the proxy carries every request
    assert result.tcp_connections == tinyproxy.wait_connections(1) == 1
    (c,) = result.connections
    assert c.remote_port == tinyproxy.port and https_server.accepted == 1
    assert c.tls_version and c.cert_subject and "trustme" in (c.cert_issuer or "")
    assert c.tcp_ms is not None and c.tls_ms is not None  # the tunnel, then TLS in it
    assert [r.reused for r in result.requests] == [False, True, True, True]


def test_a_proxy_password_by_reference(tmp_path: Path, server: LocalServer) -> None:
    with Tinyproxy(tmp_path, basic_auth=("collector", "s3cret")) as proxy:
        spec = BatchSpec(url=server.url("/search"), queries=QUERIES,
                         proxy=proxy.url("collector:${PROXY_PASSWORD}"),
                         retries=FORWARDED_RETRIES)
        ready = prepare(spec, {"PROXY_PASSWORD": "s3cret"}, where="job").ready
        assert [r.status for r in run_batch(ready).requests] == [200] * 4
        wrong = prepare(spec, {"PROXY_PASSWORD": "nope"}, where="job").ready
        refused = run_batch(wrong).requests[0]
    # The proxy's own answer (tinyproxy's is 401, not 407): data, as every status is.
    assert refused.status in (401, 407)


def test_a_socks_password_a_url_could_not_hold_as_it_is(tmp_path: Path,
                                                         server: LocalServer) -> None:
    password = "p@ss:w/rd%41"  # tinyproxy's BasicAuth takes letters and digits only
    with Microsocks(tmp_path, auth=("collector", password)) as proxy:
        spec = BatchSpec(url=server.url("/search"), queries=QUERIES,
                         proxy=proxy.url("collector:${PROXY_PASSWORD}"))
        prepared = prepare(spec, {"PROXY_PASSWORD": password}, where="job")
        assert password in prepared.values  # kept out of every log line
        result = run_batch(prepared.ready)
        assert proxy.wait_connections(1) == result.tcp_connections == 1
    assert [r.status for r in result.requests] == [200] * 4


def test_a_tunnel_the_proxy_refuses_is_a_proxy_error(tmp_path: Path,
                                                     https_server: LocalServer,
                                                     ca_file: str) -> None:
    with Tinyproxy(tmp_path, basic_auth=("collector", "s3cret")) as proxy:
        result = run_batch(BatchSpec(url=https_server.url("/search"), ca_file=ca_file,
                                     proxy=proxy.url()))
        assert proxy.wait_connections(1) == result.tcp_connections == 1
    request = result.requests[0]
    assert request.error_kind == "proxy", request
    assert "401" in (request.error or "") or "407" in (request.error or "")
    (c,) = result.connections
    assert c.error_kind == "proxy" and c.tls_version is None


def test_socks5_and_socks5h(microsocks: Microsocks, server: LocalServer,
                            https_server: LocalServer, ca_file: str) -> None:
    by_name = server.url("/search", host="localhost")
    local = run_batch(BatchSpec(url=by_name, queries=QUERIES, proxy=microsocks.url()))
    remote = run_batch(BatchSpec(url=by_name, queries=QUERIES,
                                 proxy=microsocks.url().replace("socks5:", "socks5h:")))
    secure = run_batch(BatchSpec(url=https_server.url("/search", host="localhost"),
                                 queries=QUERIES, ca_file=ca_file, proxy=microsocks.url()))
    for result in (local, remote, secure):
        assert [r.status for r in result.requests] == [200] * 4, result.requests
        assert {c.remote_port for c in result.connections} == {microsocks.port}
        assert len(result.connections) == result.tcp_connections
    total = local.tcp_connections + remote.tcp_connections + secure.tcp_connections
    assert microsocks.wait_connections(total) == total
    assert local.requests[0].dns_ms is not None  # socks5: collector looks the name up
    assert remote.requests[0].dns_ms is None  # socks5h: the proxy does
    assert secure.connections[0].cert_subject and secure.requests[0].tls_ms is not None


def test_the_environment_is_ignored_unless_the_job_says_env(
        tinyproxy: Tinyproxy, server: LocalServer) -> None:
    environ = {"http_proxy": tinyproxy.url(), "https_proxy": tinyproxy.url()}
    spec = BatchSpec(url=server.url("/search"), queries=QUERIES)
    direct = run_batch(prepare(spec, environ, where="job").ready)
    assert {c.remote_port for c in direct.connections} == {server.server_address[1]}
    env = BatchSpec(url=server.url("/search"), queries=QUERIES, proxy="env")
    proxied = run_batch(prepare(env, environ, where="job").ready)
    assert {c.remote_port for c in proxied.connections} == {tinyproxy.port}
    assert tinyproxy.wait_connections(proxied.tcp_connections) == proxied.tcp_connections
    # no_proxy: the host is left out of the proxy
    bypassed = prepare(env, {**environ, "no_proxy": "example.org,127.0.0.1"}, where="job")
    assert bypassed.ready.proxy is None
    assert prepare(env, {}, where="job").ready.proxy is None


def test_run_once_takes_a_proxy(tinyproxy: Tinyproxy, server: LocalServer) -> None:
    code, out, err = invoke("run-once", "--url", server.url("/search"), "-q", "q=a",
                            "--proxy", tinyproxy.url(), "--json", "--no-store")
    assert code == 0, err
    assert f'"remote_port": {tinyproxy.port}' in out
    assert tinyproxy.wait_connections(1) == 1


def test_proxy_keys_in_job_files(tmp_path: Path) -> None:
    path = tmp_path / "jobs.toml"
    good = ('[jobs.a]\nurl = "https://example.org/"\n'
            'proxy = "http://me:${PROXY_PASSWORD}@proxy.example:3128"\n'
            '[jobs.b]\nurl = "https://example.org/"\nproxy = "socks5h://127.0.0.1:1080"\n'
            '[jobs.c]\nurl = "https://example.org/"\nproxy = "env"\n')
    path.write_text(good)
    assert [j.batch.proxy for j in load_job_file(path)] == [
        "http://me:${PROXY_PASSWORD}@proxy.example:3128", "socks5h://127.0.0.1:1080", "env"]
    for value, message in (
            ('"http://me:secret@proxy:3128"', "has a password in it: write it as a reference"),
            ('"ftp://proxy:21"', "is not an http://, https://, socks5:// or socks5h:// URL"),
            ('"http://proxy:3128/path"', "nothing after them"),
            ('"http://${PROXY_HOST}:3128"', "not the host or port"),
            ("3128", "is not an http://")):
        path.write_text(f'[jobs.a]\nurl = "https://example.org/"\nproxy = {value}\n')
        with pytest.raises(JobFileError, match=message):
            load_job_file(path)


def test_proxy_failures_say_it_was_the_proxy(tmp_path: Path, server: LocalServer) -> None:
    from tests.peers import free_port

    with Microsocks(tmp_path, auth=("collector", "s3cret")) as socks:
        refused = run_batch(BatchSpec(url=server.url("/search"), proxy=socks.url()))
        allowed = run_batch(BatchSpec(url=server.url("/search"),
                                      proxy=socks.url("collector:s3cret")))
    request = refused.requests[0]
    assert request.error_kind == "proxy"
    assert request.error == ("the SOCKS proxy failed: Socket error: All offered SOCKS5 "
                             "authentication methods were rejected")
    assert allowed.requests[0].status == 200
    nobody = free_port()
    for proxy in (f"http://127.0.0.1:{nobody}", f"socks5://127.0.0.1:{nobody}"):
        unreachable = run_batch(BatchSpec(url=server.url("/search"), proxy=proxy)).requests[0]
        assert unreachable.error_kind == "connect_refused", unreachable
        assert (unreachable.error or "").startswith("proxy: "), unreachable
        assert "Connection(" not in (unreachable.error or "")


def test_through_an_https_proxy(tinyproxy: Tinyproxy, server: LocalServer,
                                https_server: LocalServer, ca: trustme.CA,
                                ca_file: str) -> None:
    """tinyproxy behind a TLS front: TLS to the proxy, then, for https://, TLS to the
    server inside it."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", organization_unit_name="the proxy").configure_cert(context)
    front = Proxy(("127.0.0.1", tinyproxy.port), tls=context)
    try:
        proxy = f"https://127.0.0.1:{front.port}"
        plain = run_batch(BatchSpec(url=server.url("/search"), queries=QUERIES,
                                    ca_file=ca_file, proxy=proxy, retries=FORWARDED_RETRIES))
        secure = run_batch(BatchSpec(url=https_server.url("/search"), queries=QUERIES,
                                     ca_file=ca_file, proxy=proxy))
    finally:
        front.close()
    assert [r.status for r in plain.requests + secure.requests] == [200] * 8
    for result in (plain, secure):
        assert {c.remote_port for c in result.connections} == {front.port}
        assert result.requests[0].tls_ms is not None and result.requests[0].tcp_ms is not None
    # http:// goes to the proxy over TLS: the TLS facts are the proxy's
    assert "the proxy" in (plain.connections[0].cert_subject or "")
    # https:// is TLS with the server, inside the proxy's TLS: the server's facts
    assert "the proxy" not in (secure.connections[0].cert_subject or "")
    assert secure.connections[0].cert_sha256 != plain.connections[0].cert_sha256
    total = plain.tcp_connections + secure.tcp_connections
    assert tinyproxy.wait_connections(total) == total
