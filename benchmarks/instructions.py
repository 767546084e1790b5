"""Instructions a request: collector's runner against a bare urllib3 loop, under callgrind.

Wall time on a shared VM moves by ±10%; the instructions a request costs move by
well under 1%, so they show a change of a few per cent that timing cannot. Each
mode runs twice in a fresh ``python`` under ``valgrind --tool=callgrind``, with
``small`` and ``large`` requests against the fast local server (its own process,
not under valgrind); the difference of the two totals over the difference of the
counts is what one request costs, start-up and imports cancelled out. Every run
has the same string hashes (PYTHONHASHSEED=0): with random ones the same code
measured up to 6k instructions a request apart, with a fixed one within 50. Skipped
(no figure) where valgrind is not installed. Usage:

    python -m benchmarks.instructions [--requests 2000]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import server
from benchmarks.harness import ROOT, Figure, Scale

# The same imports in every mode, so that what differs is the loop alone.
_SCRIPT = """
import sys
from benchmarks.batch import bare_loop
from collector.captures import parse_captures
from collector.checks import parse_checks
from collector.runner import run_batch
from collector.spec import BatchSpec
from urllib.parse import urlsplit
import urllib3

mode, url, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
queries = tuple({"q": f"term{i}"} for i in range(count))
if mode == "bare":
    bare_loop(url, queries)
elif mode == "urllib3":
    # urllib3 as collector drives it: urlopen, no preload, the body streamed
    parts = urlsplit(url)
    pool = urllib3.HTTPConnectionPool(parts.hostname, parts.port, maxsize=1, block=True)
    for query in queries:
        path = parts.path + "?" + "&".join(f"{k}={v}" for k, v in query.items())
        response = pool.urlopen("GET", path, redirect=False, preload_content=False,
                                decode_content=False)
        while response.read1(65536, decode_content=False):
            pass
        response.release_conn()
    pool.close()
elif mode in ("checks", "captures"):
    # A status, a header and a JMESPath value: the body kept and parsed; with captures,
    # a JMESPath number, a regular expression's group and a header on top
    checks = parse_checks([{"name": "ok", "status": "2xx"},
                           {"name": "type", "header": "Content-Type", "matches": "javascript"},
                           {"name": "status", "json": "responseStatus", "equals": 200}])
    captures = parse_captures({"status": {"json": "responseStatus"},
                               "count": {"regex": '"estimatedResultCount": "([0-9]+)"'},
                               "type": {"header": "Content-Type"}}) if mode == "captures" else ()
    result = run_batch(BatchSpec(url=url, queries=queries, checks=checks, captures=captures))
    assert result.checks_failed == 0 and result.checks_passed == 3 * count
    assert all(len(r.captures) == len(captures) for r in result.requests)
elif mode == "kept":
    # Every body kept (in the runner: the chunks joined, each distinct one held once;
    # the server answers every query with the same document)
    result = run_batch(BatchSpec(url=url, queries=queries, keep_bodies=True))
    assert len(result.bodies) == 1 and result.requests[-1].body_sha256 in result.bodies
else:
    result = run_batch(BatchSpec(url=url, queries=queries))
    assert result.requests_failed == 0 and result.tcp_connections == 1
"""

MODES = ("bare", "urllib3", "run_batch", "checks", "captures", "kept")


def available() -> bool:
    return shutil.which("valgrind") is not None


def instructions(mode: str, url: str, count: int, folder: Path) -> int:
    """The instructions ``count`` requests in ``mode`` took, start-up included."""
    out = folder / f"{mode}-{count}.out"
    ran = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                          "--dump-instr=no", sys.executable, "-c", _SCRIPT, mode, url,
                          str(count)],
                         cwd=ROOT, capture_output=True, text=True, timeout=1800,
                         env={**os.environ, "PYTHONHASHSEED": "0"})
    if ran.returncode != 0:  # what went wrong, not only that it did
        raise RuntimeError(f"{mode} ({count} requests) under valgrind exited "
                           f"{ran.returncode}:\n{ran.stderr[-3000:]}")
    found = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), flags=re.M)
    assert found is not None, f"no instruction total in {out}"
    return int(found.group(1))


def per_request(url: str, small: int, large: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as folder:
        return {mode: (instructions(mode, url, large, Path(folder))
                       - instructions(mode, url, small, Path(folder))) / (large - small)
                for mode in MODES}


def run(scale: Scale) -> list[Figure]:
    if not available():
        print("   (valgrind is not installed: no instruction counts)", file=sys.stderr)
        return []
    small, large = scale.pick((500, 2500), (20, 120))
    with server.running() as base:
        costs = per_request(f"{base}/search", small, large)
    # Instructions are a cost, as times are: the ratio is bare / collector (1.00: as cheap).
    return [
        Figure(suite="instructions", name="urllib3 as collector drives it, instructions a "
               "request", value=costs["urllib3"], unit="instructions",
               baseline="bare urllib3 loop", baseline_value=costs["bare"]),
        Figure(suite="instructions", name="run_batch, instructions a request",
               value=costs["run_batch"], unit="instructions", baseline="bare urllib3 loop",
               baseline_value=costs["bare"], goal=">= 0.93"),
        Figure(suite="instructions", name="run_batch with 3 checks (status, header, JSON), "
               "instructions a request", value=costs["checks"], unit="instructions",
               baseline="run_batch without", baseline_value=costs["run_batch"],
               note=f"{costs['checks'] - costs['run_batch']:+,.0f} instructions a request"),
        Figure(suite="instructions", name="run_batch with the 3 checks and 3 captures "
               "(JSON number, regex group, header), instructions a request",
               value=costs["captures"], unit="instructions", baseline="run_batch without",
               baseline_value=costs["run_batch"],
               note=f"{costs['captures'] - costs['checks']:+,.0f} instructions a request for "
                    "the captures"),
        Figure(suite="instructions", name="run_batch keeping every body, instructions a "
               "request", value=costs["kept"], unit="instructions",
               baseline="run_batch without", baseline_value=costs["run_batch"],
               note=f"{costs['kept'] - costs['run_batch']:+,.0f} instructions a request"),
    ]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000,
                        help="requests between the two runs of each mode (default 2000)")
    args = parser.parse_args()
    if not available():
        sys.exit("valgrind is not installed")
    with server.running() as base:
        found = per_request(f"{base}/search", 500, 500 + args.requests)
    for mode, cost in found.items():
        print(f"{mode}: {cost:,.0f} instructions a request ({found['bare'] / cost:.3f} of bare)")
