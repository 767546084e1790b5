"""collector's connection phases beside curl's, on the same HTTPS target.

A local HTTPS server (the test suite's, a trustme certificate for ``localhost``)
answers curl and ``run_batch`` in turn, one new connection each, ``rounds`` times;
each figure is the median of collector's phase over curl's (``time_connect`` minus
``time_namelookup`` for TCP, ``time_appconnect`` minus ``time_connect`` for TLS),
once with the server answering the handshake at once and once after 50 ms. curl
makes its TLS context and reads the CA file after the TCP connect, inside its TLS
phase; collector makes its context once per batch, before connecting, so at once
curl's TLS phase is longer by that setup; when the server is slow, both see the
server. curl must be installed (Debian's package).

With it, new TLS connections: a batch whose every request opens one (the server
closes each), with the system's CA store (``verify = false`` here, so the local
certificate passes; urllib3 loads the store all the same), against the bare urllib3
loop through one ``HTTPSConnectionPool``, which makes a TLS context and loads the CA
store for each connection.

    python -m benchmarks --only phases
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import tempfile
from pathlib import Path

from benchmarks.harness import Figure, Scale, median
from collector.runner import run_batch
from collector.spec import BatchSpec
from tests.server import LocalServer


def run(scale: Scale) -> list[Figure]:
    import trustme

    curl = shutil.which("curl")
    if curl is None:
        return []
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    rounds = scale.pick(25, 3)
    figures = []
    with tempfile.TemporaryDirectory() as folder:
        ca_file = str(Path(folder) / "ca.pem")
        ca.cert_pem.write_to_path(ca_file)
        for delay in (0.0, 0.05):
            ours: dict[str, list[float]] = {"tcp": [], "tls": []}
            theirs: dict[str, list[float]] = {"tcp": [], "tls": []}
            with LocalServer(tls=context, handshake_delay=delay) as server:
                url = server.url("/search", host="localhost")
                for _ in range(rounds):
                    out = subprocess.run(
                        [curl, "-s", "-o", "/dev/null", "--cacert", ca_file, "--http1.1",
                         "-w", "%{time_namelookup} %{time_connect} %{time_appconnect}", url],
                        capture_output=True, text=True, check=True).stdout
                    lookup, connect, tls = (float(v) * 1000 for v in out.split())
                    theirs["tcp"].append(connect - lookup)
                    theirs["tls"].append(tls - connect)
                    request = run_batch(BatchSpec(url=url, ca_file=ca_file)).requests[0]
                    assert request.tcp_ms is not None and request.tls_ms is not None
                    ours["tcp"].append(request.tcp_ms)
                    ours["tls"].append(request.tls_ms)
            for phase in ("tcp", "tls"):
                mine, curls = median(ours[phase]), median(theirs[phase])
                figures.append(Figure(
                    suite="phases", kind="times", unit="ms", value=mine,
                    name=f"{phase}_ms of a new connection, handshake after {delay * 1000:.0f} ms",
                    baseline="curl's", baseline_value=curls,
                    note=f"{mine - curls:+.2f} ms"))
    figures.append(_new_connections(scale, context))
    return figures


def _new_connections(scale: Scale, context: ssl.SSLContext) -> Figure:
    import warnings

    from urllib3 import HTTPSConnectionPool
    from urllib3.exceptions import InsecureRequestWarning

    from benchmarks.harness import interleaved, timed

    count = scale.pick(50, 5)
    queries = tuple({"q": f"q{i}"} for i in range(count))
    warnings.filterwarnings("ignore", category=InsecureRequestWarning)
    with LocalServer(tls=context, connection_close=True) as server:
        url = server.url("/search")

        def bare() -> None:
            pool = HTTPSConnectionPool("127.0.0.1", server.server_address[1], maxsize=1,
                                       cert_reqs="CERT_NONE", assert_hostname=False)
            for query in queries:
                pool.request("GET", "/search", fields=query).data  # noqa: B018
            pool.close()

        def ours() -> None:
            result = run_batch(BatchSpec(url=url, queries=queries, verify=False))
            assert result.tcp_connections == count

        times = interleaved(scale.pick(5, 1), {"bare": lambda: timed(bare),
                                               "ours": lambda: timed(ours)})
    return Figure(suite="phases", unit="s", value=median(times["ours"]),
                  name=f"run_batch, {count} HTTPS requests each on a new connection",
                  baseline="bare urllib3 loop (a TLS context a connection)",
                  baseline_value=median(times["bare"]))
