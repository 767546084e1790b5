"""The baseline for ``collector run-once``: the example's urllib3 loop as a script.

Reads the same job file, sends every query through one pool, prints a line per
request and the pool's counters, as the example does:

    python benchmarks/bare_script.py FILE.toml
"""

import sys
import tomllib
from urllib.parse import urlsplit

import urllib3

with open(sys.argv[1], "rb") as file:
    job = next(iter(tomllib.load(file)["jobs"].values()))
parts = urlsplit(job["url"])
pool = urllib3.HTTPConnectionPool(parts.hostname, parts.port, maxsize=1)
for query in job["queries"]:
    response = pool.request("GET", parts.path, fields=query)
    print(response.status, response.headers.get("Content-Type"), len(response.data))
print("Number of Connections: ", pool.num_connections)
print("Number of requests: ", pool.num_requests)
