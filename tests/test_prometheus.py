"""The daemon's metrics as a real Prometheus (Debian's package) scrapes them, checked against
the database; `promtool check metrics` on them; the shipped alert rules' own tests."""

from __future__ import annotations

import json
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from sqlalchemy import select

from collector.metrics import BUCKETS
from collector.models import batches, connections, requests
from collector.store import open_store
from tests.daemons import DaemonProcess
from tests.peers import free_port, tool
from tests.server import LocalServer

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "prometheus"


def _tool(name: str) -> str:
    return tool(name, "prometheus")


def test_the_alert_rules_pass_their_tests() -> None:
    promtool = _tool("promtool")
    checked = subprocess.run([promtool, "check", "rules", str(RULES / "collector.rules.yml")],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", "collector.rules.test.yml"],
                            cwd=RULES, capture_output=True, text=True, timeout=60)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


class Prometheus:
    """A real Prometheus scraping ``target`` every second, its data in ``folder``."""

    def __init__(self, folder: Path, target: str) -> None:
        self.port = free_port()
        config = folder / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: collector\n"
            f"    static_configs:\n      - targets: ['{target}']\n")
        self.process = subprocess.Popen(
            [_tool("prometheus"), f"--config.file={config}",
             f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def query(self, expression: str) -> list[dict[str, Any]]:
        url = (f"http://127.0.0.1:{self.port}/api/v1/query?"
               + urllib.parse.urlencode({"query": expression}))
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def wait_for(self, expression: str, timeout: float = 60) -> list[dict[str, Any]]:
        """The query's result once it has one, waiting for Prometheus to start and scrape."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                found = self.query(expression)
                if found:
                    return found
            except OSError:
                pass  # not listening yet
            assert self.process.poll() is None, "prometheus exited"
            assert time.monotonic() < deadline, f"no {expression} in {timeout}s"
            time.sleep(0.2)

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture
def expiring_https(ca: trustme.CA) -> Iterator[tuple[LocalServer, datetime]]:
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=10)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", not_after=expires).configure_cert(context)
    with LocalServer(tls=context) as server:
        yield server, expires


def _by_job(result: list[dict[str, Any]], **labels: str) -> dict[str, float]:
    return {r["metric"]["collector_job"]: float(r["value"][1]) for r in result
            if all(r["metric"].get(k) == v for k, v in labels.items())}


def test_a_real_prometheus_scrapes_what_the_database_holds(
        sqlite_url: str, server: LocalServer, expiring_https: tuple[LocalServer, datetime],
        ca_file: str, tmp_path: Path) -> None:
    https, expires = expiring_https
    refused = free_port()  # nothing listens there
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(
        f'[jobs.tick]\nurl = "{server.url("/search")}"\nevery = "2s"\n'
        'queries = [ { q = "a" }, { q = "b" }, { q = "c" } ]\n\n'
        f'[jobs.secure]\nurl = "{https.url("/search")}"\nevery = "2s"\nca_file = "{ca_file}"\n\n'
        f'[jobs.down]\nurl = "http://127.0.0.1:{refused}/x"\nevery = "2s"\n')
    daemon = DaemonProcess(sqlite_url, "--jobs", str(jobs), "--metrics-port", "0")
    prometheus = None
    try:
        line = daemon.wait_for(lambda line: line["message"].startswith("metrics on "))
        metrics_url = line["message"].removeprefix("metrics on ")
        target = urllib.parse.urlsplit(metrics_url).netloc
        prometheus = Prometheus(tmp_path, target)
        # Every job's series from the first scrape, before any batch of it
        first = prometheus.wait_for('collector_fires_skipped_total{reason="late"}')
        assert {r["metric"]["collector_job"] for r in first} == {"tick", "secure", "down"}
        # Then two batches of each job scraped
        prometheus.wait_for("count(sum by (collector_job) (collector_batches_total) >= 2) == 3")
        with urllib.request.urlopen(metrics_url, timeout=10) as response:
            exposition = response.read().decode()
        # One instant: every figure from the same (latest) scrape.
        stamp = round(time.time(), 3)
        snapshot = {name: prometheus.query(f"{name} @ {stamp}") for name in (
            "collector_batches_total", "collector_requests_total",
            "collector_tcp_connections_total", "collector_last_batch_timestamp_seconds",
            "collector_last_batch_success", "collector_tls_cert_expiry_timestamp_seconds",
            "collector_request_duration_seconds_bucket", "collector_build_info", "up")}
        median = prometheus.query('histogram_quantile(0.5, collector_request_duration_seconds_'
                                  f'bucket{{collector_job="tick"}} @ {stamp})')
    finally:
        if prometheus is not None:
            prometheus.close()
        assert daemon.stop() == 0

    assert [r["value"][1] for r in snapshot["up"]] == ["1"]
    assert snapshot["collector_build_info"][0]["value"][1] == "1"
    last = _by_job(snapshot["collector_last_batch_timestamp_seconds"])
    with open_store(sqlite_url) as store, store.connect() as conn:
        rows = conn.execute(select(batches)).mappings().all()
        seen = {job: [r for r in rows if r["job_name"] == job and r["finished_at"] is not None
                      and r["finished_at"].timestamp() <= last[job] + 0.001]
                for job in last}
        answered = conn.execute(
            select(requests.c.elapsed_ms).join(batches, batches.c.id == requests.c.batch_id)
            .where(batches.c.id.in_([r["id"] for r in seen["tick"]]),
                   requests.c.status.is_not(None))).scalars().all()
        expiry = conn.execute(select(connections.c.chain_not_after).join(
            batches, batches.c.id == connections.c.batch_id).where(
            batches.c.job_name == "secure")).scalars().all()

    batches_by = {(r["metric"]["collector_job"], r["metric"]["status"]): float(r["value"][1])
                  for r in snapshot["collector_batches_total"]}
    requests_by = {(r["metric"]["collector_job"], r["metric"]["outcome"]): float(r["value"][1])
                   for r in snapshot["collector_requests_total"]}
    tcp = _by_job(snapshot["collector_tcp_connections_total"])
    for job, stored in seen.items():
        assert stored, job
        for status in ("ok", "partial", "failed"):
            assert batches_by[(job, status)] == sum(r["status"] == status for r in stored)
        assert requests_by[(job, "2xx")] == sum(r["status_2xx"] for r in stored)
        assert tcp[job] == sum(r["tcp_connections"] for r in stored)
    assert requests_by[("down", "connect_refused")] == sum(r["no_response"]
                                                            for r in seen["down"]) > 0
    assert _by_job(snapshot["collector_last_batch_success"]) == {
        "tick": 1.0, "secure": 1.0, "down": 0.0}
    assert _by_job(snapshot["collector_tls_cert_expiry_timestamp_seconds"]) == {
        "secure": expires.timestamp()}
    assert set(expiry) == {expires}

    # Only responses are timed: the histogram counts the answered requests.
    count = [float(r["value"][1]) for r in snapshot["collector_request_duration_seconds_bucket"]
             if r["metric"]["collector_job"] == "tick" and r["metric"]["le"] == "+Inf"]
    assert count == [len(answered)]
    down = [float(r["value"][1]) for r in snapshot["collector_request_duration_seconds_bucket"]
            if r["metric"]["collector_job"] == "down" and r["metric"]["le"] == "+Inf"]
    assert down == [0.0]
    # histogram_quantile lands in the bucket that holds the stored median
    ordered = sorted(answered)
    stored_median = ordered[(len(ordered) + 1) // 2 - 1] / 1000  # nearest rank, seconds
    estimate = float(median[0]["value"][1])
    bounds = (0.0, *BUCKETS)
    bucket = next(i for i, upper in enumerate(BUCKETS) if stored_median <= upper)
    assert bounds[bucket] <= estimate <= BUCKETS[bucket], (estimate, stored_median)

    # promtool reads the exposition as Prometheus' conventions want it
    promtool = _tool("promtool")
    checked = subprocess.run([promtool, "check", "metrics"], input=exposition,
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and not checked.stdout.strip(), (
        checked.stdout + checked.stderr)
    assert "_created" not in exposition
