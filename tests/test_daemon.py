"""``collector run`` as a real process against real servers and databases.

Jobs fire every second; the tests read what the daemons log (JSON lines),
what they send to a stand-in systemd notify socket, and what they store.
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import urllib3
from sqlalchemy import update

from collector.daemon.daemon import Daemon, DaemonConfig
from collector.daemon.notify import Notifier
from collector.models import jobs
from collector.store import open_store
from tests.cli import invoke
from tests.daemons import DaemonProcess, NotifySocket, stored_batches, wait_until
from tests.server import LocalServer


def job_file(path: Path, server: LocalServer, *jobs_: tuple[str, str, int]) -> Path:
    """A job file with one [jobs.NAME] per (name, path, queries), each every second."""
    text = ""
    for name, endpoint, queries in jobs_:
        listed = ", ".join(f'{{ q = "{name}{i}" }}' for i in range(queries))
        text += (f'[jobs.{name}]\nurl = "{server.url(endpoint)}"\nevery = "1s"\n'
                 f"queries = [ {listed} ]\n\n")
    path.write_text(text)
    return path


def test_fires_on_time_tells_systemd_and_stops_cleanly(sqlite_url: str, server: LocalServer,
                                                       tmp_path: Path) -> None:
    notify = NotifySocket()
    jobs_toml = job_file(tmp_path / "jobs.toml", server, ("tick", "/search", 2))
    daemon = DaemonProcess(sqlite_url, "--jobs", str(jobs_toml),
                           env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"})
    try:
        daemon.started()
        wait_until(lambda: len(daemon.batches()) >= 4, message="no batches")
    finally:
        code = daemon.stop()
        notify.close()
    assert code == 0, "".join(daemon.raw)
    assert len(daemon.lines) == len(daemon.raw)  # every line is one JSON object

    rows = [r for r in stored_batches(sqlite_url)]
    assert len(rows) >= 4 and {r["status"] for r in rows} == {"ok"}
    assert all(r["trigger"] == "schedule" and r["worker"].endswith(f":{daemon.pid}")
               for r in rows)
    fires = [r["scheduled_for"] for r in rows]
    assert all(f.microsecond == 0 for f in fires)  # on the second, the same on every host
    assert len(set(fires)) == len(fires)
    lateness = [r["started_at"] - r["scheduled_for"] for r in rows]
    # The first may be a catch-up of the second before start; the others are on time
    # (loose bounds: CI machines are shared and busy).
    assert all(timedelta(0) <= late < timedelta(seconds=2) for late in lateness), lateness
    assert sorted(lateness)[len(lateness) // 2] < timedelta(seconds=0.5), lateness
    logged = daemon.batches()
    assert {(b["job"], b["status"], b["requests"], b["tcp_connections"]) for b in logged} == {
        ("tick", "ok", 2, 1)}

    fields = notify.fields()
    assert fields.count("READY=1") == 1 and "STOPPING=1" in fields
    assert fields.count("WATCHDOG=1") >= 3
    assert any(f.startswith("STATUS=1 jobs scheduled") for f in fields)
    assert any(re.match(r"STATUS=1 jobs scheduled; last batch: tick ok at ", f) for f in fields)
    assert fields.index("READY=1") < fields.index("STOPPING=1")


def test_jobs_table_changes_take_effect_within_5_seconds(db_url: str, server: LocalServer) -> None:
    assert invoke("jobs", "add", "broken", "--url", server.url("/search"), "--every", "1s",
                  "--db", db_url)[0] == 0
    with open_store(db_url) as store, store.connect(write=True) as conn:
        conn.execute(update(jobs).where(jobs.c.name == "broken")
                     .values(definition={"url": "gopher://x/", "every": "1s"}))
    daemon = DaemonProcess(db_url).started()
    try:
        daemon.wait_for(lambda line: 'stored job "broken"' in line["message"])
        added = time.monotonic()
        assert invoke("jobs", "add", "live", "--url", server.url("/search"), "--every", "1s",
                      "--db", db_url)[0] == 0
        daemon.wait_for(lambda line: line.get("batch", {}).get("job") == "live", timeout=10)
        assert time.monotonic() - added < 5 + 1  # within 5 s, and the next whole second

        # A changed definition is rescheduled: the next fires go to the new URL.
        changed = server.url("/status/204")
        assert invoke("jobs", "remove", "live", "--db", db_url)[0] == 0
        assert invoke("jobs", "add", "live", "--url", changed, "--every", "1s",
                      "--db", db_url)[0] == 0
        wait_until(lambda: any(r["url"] == changed for r in stored_batches(db_url)),
                   timeout=6, message="the changed job was not rescheduled")

        assert invoke("jobs", "disable", "live", "--db", db_url)[0] == 0
        gone = daemon.wait_for(lambda line: line["message"] == "job live: no longer scheduled",
                               timeout=10)
        time.sleep(2.5)  # an absence takes a while to see: fires that would have come
        # No more fires once disabled, but those handed out before (claimed ahead).
        unscheduled = datetime.fromisoformat(gone["time"])
        assert [r["scheduled_for"] for r in stored_batches(db_url)
                if r["scheduled_for"] > unscheduled + timedelta(seconds=1)] == []
    finally:
        assert daemon.stop() == 0
    assert {r["job_name"] for r in stored_batches(db_url)} == {"live"}


def test_sighup_rereads_the_job_files(sqlite_url: str, server: LocalServer,
                                      tmp_path: Path) -> None:
    jobs_toml = job_file(tmp_path / "jobs.toml", server, ("first", "/search", 1))
    daemon = DaemonProcess(sqlite_url, "--jobs", str(jobs_toml)).started()
    try:
        daemon.wait_for(lambda line: line.get("batch", {}).get("job") == "first")
        job_file(jobs_toml, server, ("first", "/search", 1), ("second", "/search", 1))
        daemon.signal(signal.SIGHUP)
        daemon.wait_for(lambda line: line.get("batch", {}).get("job") == "second")

        jobs_toml.write_text("[jobs.first]\nurl = 'ftp://nope/'\n")  # a mistake
        daemon.signal(signal.SIGHUP)
        daemon.wait_for(lambda line: "reload failed" in line["message"])
        seen = len(daemon.batches())
        wait_until(lambda: {b["job"] for b in daemon.batches()[seen:]} == {"first", "second"},
                   message="the jobs stopped after a bad reload")
    finally:
        assert daemon.stop() == 0


@pytest.mark.parametrize(("database", "daemons"), [("postgresql", 3), ("sqlite", 2)])
def test_several_daemons_run_each_fire_exactly_once(database: str, daemons: int,
                                                     request: pytest.FixtureRequest,
                                                     server: LocalServer,
                                                     tmp_path: Path) -> None:
    db_url: str = request.getfixturevalue("postgres_url" if database == "postgresql"
                                          else "sqlite_url")
    invoke("db", "upgrade", "--db", db_url)
    jobs_toml = job_file(tmp_path / "jobs.toml", server, ("shared", "/search", 2))
    running = [DaemonProcess(db_url, "--jobs", str(jobs_toml)) for _ in range(daemons)]
    try:
        for daemon in running:
            daemon.started()
        wait_until(lambda: len({r["scheduled_for"] for r in stored_batches(db_url)}) >= 20,
                   timeout=60, message="fewer than 20 fires")
    finally:
        codes = [daemon.stop() for daemon in running]
    assert codes == [0] * daemons, [d.raw for d in running]
    rows = stored_batches(db_url)
    fires = Counter(r["scheduled_for"] for r in rows)
    assert len(rows) == len(fires) >= 20  # every fire ran exactly once
    assert {r["status"] for r in rows} == {"ok"}
    # At info level a lost claim is silent. (APScheduler may say it skipped a fire
    # whose previous run here had not finished: another daemon ran that one.)
    skipped = [line for d in running for line in d.lines
               if "skipped" in line["message"] and line["logger"].startswith("collector")]
    assert skipped == []


def test_a_killed_daemons_batch_is_abandoned_not_rerun(postgres_url: str, server: LocalServer,
                                                       tmp_path: Path) -> None:
    invoke("db", "upgrade", "--db", postgres_url)
    jobs_toml = job_file(tmp_path / "jobs.toml", server, ("slow", "/delay/4", 1))
    pair = [DaemonProcess(postgres_url, "--jobs", str(jobs_toml)) for _ in range(2)]
    try:
        for daemon in pair:
            daemon.started()
        wait_until(lambda: any(r["status"] == "running" for r in stored_batches(postgres_url)))
        (running,) = [r for r in stored_batches(postgres_url) if r["status"] == "running"]
        victim = next(d for d in pair if running["worker"].endswith(f":{d.pid}"))
        survivor = next(d for d in pair if d is not victim)
        victim.kill()
        wait_until(lambda: {r["id"]: r["status"] for r in stored_batches(postgres_url)}
                   [running["id"]] == "abandoned", timeout=15, message="not abandoned")
        # The survivor goes on: its next fire runs (and stays running for 4 s).
        wait_until(lambda: any(r["worker"].endswith(f":{survivor.pid}")
                               for r in stored_batches(postgres_url)), timeout=15)
    finally:
        for daemon in pair:
            daemon.stop()
    rows = stored_batches(postgres_url)
    assert Counter(r["scheduled_for"] for r in rows)[running["scheduled_for"]] == 1
    abandoned = [r for r in rows if r["status"] == "abandoned"]
    assert [r["id"] for r in abandoned] == [running["id"]]
    assert abandoned[0]["num_connections"] is None and abandoned[0]["finished_at"] is not None
    assert not any(r["status"] == "running" for r in rows)


def test_sigterm_stores_a_cut_off_batch_as_interrupted(sqlite_url: str, server: LocalServer,
                                                       tmp_path: Path) -> None:
    jobs_toml = job_file(tmp_path / "jobs.toml", server, ("long", "/delay/0.3", 40))
    daemon = DaemonProcess(sqlite_url, "--jobs", str(jobs_toml), "--shutdown-timeout", "1s")
    daemon.started()
    wait_until(lambda: len(server.seen) >= 2)
    stopped_at = time.monotonic()
    assert daemon.stop() == 0
    assert time.monotonic() - stopped_at < 5
    (row,) = stored_batches(sqlite_url)
    assert row["status"] == "interrupted"
    sent = row["requests_succeeded"] + row["requests_failed"]
    assert 0 < sent < 40 and row["requests_failed"] == 0
    with open_store(sqlite_url) as store:
        batch = store.load_batch(row["id"])
    assert batch.result is not None and len(batch.result.requests) == sent


def test_a_stalled_scheduler_stops_the_watchdog(sqlite_url: str) -> None:
    notify = NotifySocket()
    config = DaemonConfig(heartbeat_interval=0.5, sync_interval=0.5)
    with open_store(sqlite_url) as store:
        daemon = Daemon(store, config, notifier=Notifier({"NOTIFY_SOCKET": notify.path,
                                                          "WATCHDOG_USEC": "400000"}))
        daemon.start()
        serving = threading.Thread(target=daemon.serve)
        serving.start()
        def watchdogs(since: float) -> int:
            return sum("WATCHDOG=1" in m for at, m in list(notify.messages) if at > since)

        try:
            wait_until(lambda: watchdogs(0) >= 3, timeout=10, message="no watchdog pings")
            daemon.scheduler.pause()  # the scheduler's loop no longer runs anything
            paused = time.monotonic()
            # The pings stop once the last tick is 3 s old: a second without one...
            wait_until(lambda: time.monotonic() - max(
                at for at, m in list(notify.messages) if "WATCHDOG=1" in m) > 1,
                timeout=10, message="the watchdog kept being pinged while stalled")
            assert time.monotonic() - paused > 2  # ...not before the tick could be stale
            daemon.scheduler.resume()
            resumed = time.monotonic()
            wait_until(lambda: watchdogs(resumed) >= 1, timeout=10,
                       message="the pings did not come back")
        finally:
            daemon.request_stop()
            serving.join(timeout=10)
            daemon.stop()
            notify.close()


def test_metrics(sqlite_url: str, server: LocalServer, tmp_path: Path) -> None:
    jobs_toml = job_file(tmp_path / "jobs.toml", server, ("tick", "/search", 2))
    daemon = DaemonProcess(sqlite_url, "--jobs", str(jobs_toml), "--metrics-port", "0")
    try:
        line = daemon.wait_for(lambda line: "metrics on" in line["message"])
        match = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line["message"])
        assert match is not None
        daemon.wait_for(lambda line: "batch" in line)
        text = urllib3.request("GET", f"http://127.0.0.1:{match.group(1)}/metrics").data.decode()
    finally:
        assert daemon.stop() == 0
    assert re.search(r'collector_batches_total\{collector_job="tick",status="ok"\} [1-9]', text)
    assert re.search(r'collector_requests_total\{collector_job="tick",outcome="2xx"\} [1-9]',
                     text)
    assert re.search(r'collector_tcp_connections_total\{collector_job="tick"\} [1-9]', text)
    assert 'collector_request_duration_seconds_bucket{collector_job="tick",le="0.0001"}' in text
    assert 'collector_last_batch_success{collector_job="tick"} 1.0' in text
    # every series of the job from the start, events or not; no _created twins
    assert ('collector_fires_skipped_total{collector_job="tick",reason="late"} 0.0' in text)
    assert 'collector_batches_not_stored_total{collector_job="tick"} 0.0' in text
    assert 'collector_requests_total{collector_job="tick",outcome="dns"} 0.0' in text
    assert "_created" not in text and 'job="' not in text.replace('collector_job="', "")
    assert re.search(r'^collector_build_info\{python="[\d.]+",version="[^"]+"\} 1\.0$', text,
                     re.M)
    assert "collector_jobs_scheduled 1.0" in text


def test_after_downtime_the_last_missed_fire_runs_once(sqlite_url: str, server: LocalServer,
                                                       tmp_path: Path) -> None:
    jobs_toml = tmp_path / "jobs.toml"
    jobs_toml.write_text(f'[jobs.every4]\nurl = "{server.url("/search")}"\nevery = "4s"\n')
    first = DaemonProcess(sqlite_url, "--jobs", str(jobs_toml)).started()
    first.wait_for(lambda line: "batch" in line, timeout=10)
    assert first.stop() == 0
    before = {r["scheduled_for"] for r in stored_batches(sqlite_url)}
    # Down until two fires were missed: a wait for the clock, however loaded the machine.
    while datetime.now(UTC) < max(before) + timedelta(seconds=9):
        time.sleep(0.1)
    second = DaemonProcess(sqlite_url, "--jobs", str(jobs_toml)).started()
    try:
        line = second.wait_for(lambda line: "batch" in line, timeout=20)
    finally:
        assert second.stop() == 0
    first_fire = datetime.fromisoformat(line["batch"]["scheduled_for"])
    # Fires missed while it was down: only the last of them ran, once, at start.
    missed = [r for r in stored_batches(sqlite_url)
              if max(before) < r["scheduled_for"] <= first_fire]
    assert len(missed) == 1  # never a storm
    (row,) = missed
    assert (row["scheduled_for"] - max(before)) >= timedelta(seconds=8)
    # It ran before the next fire was due (catch-ups are spread over the first half of
    # the time to it), allowing a loaded machine a second.
    assert timedelta(0) < row["started_at"] - row["scheduled_for"] < timedelta(seconds=5)


def test_a_daemon_running_a_faulty_job_keeps_running(sqlite_url: str, tmp_path: Path) -> None:
    from tests.faults import FaultServer

    with FaultServer() as faults:
        jobs_toml = tmp_path / "jobs.toml"
        jobs_toml.write_text(
            f'[jobs.faulty]\nurl = "{faults.url("/x")}"\nevery = "1s"\ntimeout = "500ms"\n'
            'queries = [ { f = "reset-in-headers" }, { f = "bad-chunk" }, '
            '{ f = "reset-in-body" }, { f = "long-line" }, { f = "ok" } ]\n')
        daemon = DaemonProcess(sqlite_url, "--jobs", str(jobs_toml)).started()
        try:
            wait_until(lambda: len(daemon.batches()) >= 3, message="the daemon stopped firing")
        finally:
            assert daemon.stop() == 0
    rows = stored_batches(sqlite_url)
    assert len(rows) >= 3 and {r["status"] for r in rows} == {"partial"}
    assert all((r["requests_succeeded"], r["requests_failed"]) == (1, 4) for r in rows)
    assert not any(line["level"] == "error" for line in daemon.lines)


def test_every_fire_is_stored_or_a_counted_logged_skip(sqlite_url: str, server: LocalServer,
                                                       tmp_path: Path) -> None:
    # Three jobs every second: a fast one, one whose batch takes longer than its interval
    # (its next fires find it running) and one that cannot run (a variable not set).
    jobs_toml = tmp_path / "jobs.toml"
    jobs_toml.write_text(
        f'[jobs.fast]\nurl = "{server.url("/search")}"\nevery = "1s"\nqueries = [{{ q = "a" }}]\n'
        f'[jobs.slow]\nurl = "{server.url("/delay/1.6")}"\nevery = "1s"\n'
        'queries = [{ q = "a" }]\n'
        '[jobs.unset]\nurl = "http://127.0.0.1:9/${COLLECTOR_TEST_NEVER_SET}"\nevery = "1s"\n'
        'queries = [{ q = "a" }]\n')
    daemon = DaemonProcess(sqlite_url, "--jobs", str(jobs_toml), "--log-level", "debug")
    daemon.started()
    wait_until(lambda: sum(r["job_name"] == "slow" for r in stored_batches(sqlite_url)) >= 3,
               timeout=60, message="the slow job stored fewer than 3 batches")
    assert daemon.stop() == 0
    rows = stored_batches(sqlite_url)
    skips = [line for line in daemon.lines if "skipped" in line]
    summaries = [line["skip"] for line in daemon.lines
                 if "skip" in line and line["level"] == "info"]
    for job in ("fast", "slow", "unset"):
        stored = [r["scheduled_for"] for r in rows if r["job_name"] == job]
        skipped = [datetime.fromisoformat(s["skipped"]["scheduled_for"]) for s in skips
                   if s["skipped"]["job"] == job]
        accounted = Counter(stored + skipped)
        assert max(accounted.values()) == 1, (job, accounted)  # none twice
        first, last = min(accounted), max(accounted)
        expected = int((last - first).total_seconds()) + 1
        assert len(accounted) == expected, (job, sorted(accounted))  # none missing
        # Each skip is also in an INFO line: the first at once, the rest summed.
        assert sum(s["count"] for s in summaries if s["job"] == job) == len(skipped), job
    reasons = Counter((s["skipped"]["job"], s["skipped"]["reason"]) for s in skips)
    assert reasons[("slow", "previous_running")] >= 2
    assert reasons[("unset", "config")] >= 3
    # Why it cannot run is an ERROR once, not at every fire.
    assert sum(line["level"] == "error" and "COLLECTOR_TEST_NEVER_SET" in line["message"]
               for line in daemon.lines) == 1
    assert not any(job == "fast" and reason != "stopping" for job, reason in reasons)


def _catch_ups(sqlite_url: str, tmp_path: Path, jobs_count: int, every: int,
               created_ago: timedelta) -> dict[str, tuple[datetime, datetime] | None]:
    """Each job's planned catch-up (run time, missed fire) when a daemon schedules jobs
    created ``created_ago``, its scheduler not started."""
    jobs_toml = tmp_path / "jobs.toml"
    jobs_toml.write_text("".join(f'[jobs.j{i}]\nurl = "http://127.0.0.1:9/"\nevery = "{every}s"\n'
                                 for i in range(jobs_count)))
    invoke("jobs", "apply", str(jobs_toml), "--db", sqlite_url)
    with open_store(sqlite_url) as store:
        with store.connect(write=True) as conn:
            conn.execute(update(jobs).values(created_at=datetime.now(UTC) - created_ago,
                                             updated_at=datetime.now(UTC) - created_ago))
        daemon = Daemon(store, DaemonConfig())
        daemon.sync_jobs()
        return {f"j{i}": daemon.scheduler.get_job(f"j{i}").trigger.catch_up
                for i in range(jobs_count)}


def test_a_new_job_never_runs_a_fire_from_before_it_existed(sqlite_url: str,
                                                            tmp_path: Path) -> None:
    # Created a second ago, every minute: the minute's fire was before it existed.
    planned = _catch_ups(sqlite_url, tmp_path, 20, 60, timedelta(seconds=1))
    missed = {name: plan for name, plan in planned.items()
              if plan is not None and plan[1] < datetime.now(UTC) - timedelta(seconds=1)}
    assert missed == {}


def test_catch_up_fires_are_spread_and_end_before_the_next_fire(sqlite_url: str,
                                                                 tmp_path: Path) -> None:
    # 200 jobs every minute, created an hour ago, a daemon starting now: each job's
    # missed fire runs once, spread over the first half of the time to the next fire.
    before = datetime.now(UTC)
    planned = _catch_ups(sqlite_url, tmp_path, 200, 60, timedelta(hours=1))
    after = datetime.now(UTC)
    plans = [plan for plan in planned.values() if plan is not None]
    assert len(plans) == 200
    # Each before its own next fire's half-way mark (a minute may turn while 200 jobs are
    # scheduled: the jobs scheduled after it miss the newer fire).
    for run, fire in plans:
        assert before <= run <= after + (fire + timedelta(seconds=60) - before) / 2
    # Spread, not bunched: no tenth of the span holds more than a fifth of a fire's jobs.
    by_fire: dict[datetime, list[datetime]] = {}
    for run, fire in plans:
        by_fire.setdefault(fire, []).append(run)
    largest: list[datetime] = max(by_fire.values(), key=len)
    runs = sorted(largest)
    span = (runs[-1] - runs[0]) / 10
    assert max(sum(runs[0] + span * k <= r < runs[0] + span * (k + 1) for r in runs)
               for k in range(10)) <= len(runs) / 5
