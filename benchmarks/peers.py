"""collector's runner beside other HTTP clients: the same GETs, one connection, in process.

Each client sends the same queries to the fast local server over one kept-alive
connection and reads every body, the way a user of that client would write the
loop: requests with a ``Session``, httpx with a ``Client``, aiohttp with one
``ClientSession`` limited to one connection, pycurl with one ``Curl`` handle.
Each figure is the bare urllib3 loop's time over the client's, in interleaved
rounds of one run (above 1.00: faster than the bare loop). A client that is not
installed is left out; none of them is a dependency of collector. Usage:

    pip install requests httpx aiohttp pycurl
    python -m benchmarks --only peers
"""

from __future__ import annotations

import importlib.util
import io
import sys
from collections.abc import Callable
from urllib.parse import urlencode

from benchmarks import server
from benchmarks.batch import bare_loop
from benchmarks.harness import Figure, Scale, interleaved, median, timed
from collector.runner import run_batch
from collector.spec import BatchSpec

Queries = tuple[dict[str, str], ...]


def _requests(url: str, queries: Queries) -> None:
    import requests

    with requests.Session() as session:
        for query in queries:
            response = session.get(url, params=query)
            response.status_code, response.headers.get("Content-Type"), len(response.content)


def _httpx(url: str, queries: Queries) -> None:
    import httpx

    with httpx.Client(limits=httpx.Limits(max_connections=1)) as client:
        for query in queries:
            response = client.get(url, params=query)
            response.status_code, response.headers.get("Content-Type"), len(response.content)


def _aiohttp(url: str, queries: Queries) -> None:
    import asyncio

    import aiohttp

    async def loop() -> None:
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            for query in queries:
                async with session.get(url, params=query) as response:
                    response.status, response.headers.get("Content-Type"), len(
                        await response.read())

    asyncio.run(loop())


def _pycurl(url: str, queries: Queries) -> None:
    import pycurl

    curl = pycurl.Curl()
    try:
        for query in queries:
            body = io.BytesIO()
            curl.setopt(pycurl.URL, f"{url}?{urlencode(query)}")
            curl.setopt(pycurl.WRITEDATA, body)
            curl.perform()
            curl.getinfo(pycurl.RESPONSE_CODE), curl.getinfo(pycurl.CONTENT_TYPE), len(
                body.getvalue())
    finally:
        curl.close()


PEERS: dict[str, Callable[[str, Queries], None]] = {
    "requests": _requests, "httpx": _httpx, "aiohttp": _aiohttp, "pycurl": _pycurl}


def installed() -> list[str]:
    return [name for name in PEERS if importlib.util.find_spec(name) is not None]


def run(scale: Scale) -> list[Figure]:
    peers = installed()
    missing = sorted(set(PEERS) - set(peers))
    if missing:
        print(f"   (not installed, left out: {', '.join(missing)})", file=sys.stderr)
    count = scale.pick(5_000, 100)
    queries = tuple({"q": f"term{i}"} for i in range(count))
    with server.running() as base:
        url = f"{base}/search"
        spec = BatchSpec(url=url, queries=queries)
        loops: dict[str, Callable[[], float]] = {
            "bare": lambda: timed(lambda: bare_loop(url, queries)),
            "run_batch": lambda: timed(lambda: run_batch(spec)),
        }
        for name in peers:
            loops[name] = lambda run=PEERS[name]: timed(lambda: run(url, queries))
        times = interleaved(scale.rounds, loops)
    bare = median(times["bare"])
    return [Figure(suite="peers", name=f"{name}, {count:,} GETs over one connection",
                   value=median(times[name]), unit="s", baseline="bare urllib3 loop",
                   baseline_value=bare)
            for name in ("run_batch", *peers)]
