"""How much one re-used pool saves: a batch through one pool vs a new pool per request.

Both runs use collector's runner against the same local HTTP/1.1 server in
this process, alternating, and the result is a ratio, so the machine's speed
cancels out. Usage:

    python benchmarks/pool_reuse.py [--requests 200] [--rounds 5] [--tls]
"""

from __future__ import annotations

import argparse
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.runner import run_batch  # noqa: E402
from collector.spec import BatchSpec  # noqa: E402
from tests.server import LocalServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tls", action="store_true", help="HTTPS with a trustme CA")
    args = parser.parse_args()

    tls, ca_file = None, None
    if args.tls:
        import trustme

        ca = trustme.CA()
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(tls)
        ca_file = str(Path(tempfile.mkdtemp()) / "ca.pem")
        ca.cert_pem.write_to_path(ca_file)

    with LocalServer(tls=tls) as server:
        url = server.url("/search")
        queries = tuple({"q": f"term{i}"} for i in range(args.requests))
        one_pool = BatchSpec(url=url, queries=queries, ca_file=ca_file)
        singles = [BatchSpec(url=url, queries=(q,), ca_file=ca_file) for q in queries]

        reuse_s, fresh_s = [], []
        for _ in range(args.rounds):
            start = time.perf_counter()
            result = run_batch(one_pool)
            reuse_s.append(time.perf_counter() - start)
            assert result.tcp_connections == 1 and result.requests_failed == 0

            start = time.perf_counter()
            tcp = sum(run_batch(spec).tcp_connections for spec in singles)
            fresh_s.append(time.perf_counter() - start)
            assert tcp == args.requests

    reuse, fresh = statistics.median(reuse_s), statistics.median(fresh_s)
    scheme = "https" if args.tls else "http"
    print(f"{args.requests} {scheme} requests, median of {args.rounds} rounds")
    print(f"  one pool, 1 TCP connection:       {reuse * 1000:8.1f} ms "
          f"({reuse / args.requests * 1e6:.0f} us/request)")
    print(f"  a pool per request, {args.requests} connections: {fresh * 1000:8.1f} ms "
          f"({fresh / args.requests * 1e6:.0f} us/request)")
    print(f"  ratio (pool per request / one pool): {fresh / reuse:.2f}x")


if __name__ == "__main__":
    main()
