"""The spool: batches the database could not take, kept whole on disk and stored once."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import make_url

from collector.collect import collect
from collector.models import batches
from collector.results import PendingBatch
from collector.runner import run_batch
from collector.spec import BatchSpec
from collector.spool import CHUNK_BATCHES, Replayed, Spool, Spooled, new_batch_key
from collector.store import open_store
from tests.cli import assert_one_line_error, invoke
from tests.conftest import database_outage
from tests.daemons import DaemonProcess, stored_batches, wait_until
from tests.proxy import Proxy
from tests.server import LocalServer

FIRE = datetime(2026, 11, 27, 12, 5, tzinfo=UTC)


def entry(server: LocalServer, *, database: str | None = None, **changes: object) -> Spooled:
    """A spooled batch; ``database`` None: for any database (as format 1's were)."""
    result = run_batch(BatchSpec(url=server.url("/flaky/x"), retries=1,
                                 queries=({"q": "a"}, {"q": "b"})))
    fields = {"batch_key": new_batch_key(), "job_name": "j", "trigger": "manual",
              "scheduled_for": None, "claimed": None, "worker": "h:1", "result": result,
              **changes}
    return Spooled(PendingBatch(**fields), database)  # type: ignore[arg-type]


def put(spool: Spool, spooled: Spooled) -> Path:
    return spool.put(spooled.batch, database=spooled.database)


def test_a_spooled_batch_reads_back_whole(tmp_path: Path, server: LocalServer) -> None:
    spool = Spool(tmp_path / "spool")
    original = entry(server, scheduled_for=FIRE, trigger="schedule")
    assert original.batch.result.requests[0].failed_attempts  # the flaky first attempt
    path = put(spool, original)
    assert spool.paths() == [path] and spool.depth() == 1
    assert [p.name for p in spool.folder.iterdir()] == [path.name]  # no temporary left
    assert spool.read(path) == original
    assert json.loads(path.read_text())["format"] == 4
    assert original.batch.result.connections  # read back whole too


def test_a_spool_file_of_format_1_still_replays(db_url: str, tmp_path: Path,
                                                server: LocalServer) -> None:
    spool = Spool(tmp_path / "spool")
    path = put(spool, entry(server))
    document = json.loads(path.read_text())
    del document["database"]
    path.write_text(json.dumps({**document, "format": 1}))
    assert spool.read(path).database is None
    with open_store(db_url) as store:
        assert spool.replay(store).stored == 1  # it belongs to whichever database replays it
    assert spool.depth() == 0


def test_a_spool_file_of_format_2_replays_without_connections(db_url: str, tmp_path: Path,
                                                              server: LocalServer) -> None:
    spool = Spool(tmp_path / "spool")
    path = put(spool, entry(server))
    document = json.loads(path.read_text())
    del document["result"]["connections"]  # format 2 had neither connections nor phases
    for request in document["result"]["requests"]:
        for key in ("dns_ms", "tcp_ms", "tls_ms", "http_version", "connection"):
            del request[key]
    path.write_text(json.dumps({**document, "format": 2}))
    read = spool.read(path).batch.result
    assert read.connections == () and read.requests[0].connection is None
    with open_store(db_url) as store:
        assert spool.replay(store).stored == 1
        assert store.info().row_counts["connections"] == 0


def test_a_spooled_batch_lands_only_in_its_own_database(tmp_path: Path, db_url: str,
                                                        server: LocalServer) -> None:
    spool = Spool(tmp_path / "spool")
    elsewhere = f"sqlite:///{tmp_path / 'other.db'}"
    with open_store(db_url) as mine, open_store(elsewhere) as other:
        put(spool, entry(server, database=mine.url))
        assert spool.replay(other) == Replayed(0, 0, 0, 0)  # not the other's to store
        assert other.info().row_counts["batches"] == 0
        assert spool.destinations() == {mine.url: 1}
        assert spool.replay(mine).stored == 1


def test_spool_flush_stores_each_batch_in_its_own_database(
        tmp_path: Path, server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    spool_dir = tmp_path / "spool"
    monkeypatch.setenv("COLLECTOR_SPOOL_DIR", str(spool_dir))
    spool = Spool(spool_dir)
    first, second = (f"sqlite:///{tmp_path / name}" for name in ("a.db", "b.db"))
    for url in (first, second):
        open_store(url).close()
        put(spool, entry(server, database=url))
    code, out, err = invoke("spool", "flush", "--db", first)  # only a.db's
    assert (code, err) == (0, "")
    assert out.splitlines() == [f"{first}: stored 1, already stored 0, rejected 0, left 0",
                                "1 batches wait for other databases (collector spool status "
                                "lists them)"]
    assert f"for {second}: 1" in invoke("spool", "status")[1]
    code, out, err = invoke("spool", "flush")  # every database its own; none in the default
    assert (code, err) == (0, "")
    assert out.splitlines() == [f"{second}: stored 1, already stored 0, rejected 0, left 0"]
    assert [len(stored_batches(url)) for url in (first, second)] == [1, 1]
    default = tmp_path / "xdg" / "collector" / "collector.db"
    assert not default.exists()
    assert invoke("spool", "flush")[1].strip() == "the spool: nothing waiting"


def test_a_spool_that_cannot_write_loses_the_batch_in_one_line(
        tmp_path: Path, postgres_url: str, server: LocalServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A folder that cannot be written to stands in for a full disk (both are OSErrors
    # from the same write); root may write anywhere, so the spool is a file's child.
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("COLLECTOR_SPOOL_DIR", str(tmp_path / "file" / "spool"))
    code, out, err = invoke("run-once", "--url", server.url("/search"), "--db", postgres_url)
    assert code == 0  # the database answered: the spool was never needed
    outage = database_outage(postgres_url)
    server.before_answer = outage.__enter__
    try:
        code, out, err = invoke("run-once", "--url", server.url("/search"), "--db",
                                postgres_url, "--json")
    finally:
        outage.__exit__(None, None, None)
        server.before_answer = None
    assert code == 1 and json.loads(out)["requests"][0]["status"] == 200  # shown, at least
    assert_one_line_error(err, "was not stored: database ", f"and the spool {tmp_path}",
                          "cannot keep it: Not a directory")


def test_replay_stores_each_batch_once(db_url: str, tmp_path: Path, server: LocalServer) -> None:
    spool = Spool(tmp_path / "spool")
    first = entry(server)
    put(spool, first)
    put(spool, first)  # the same batch twice, as after a crash between store and delete
    with open_store(db_url) as store:
        done = spool.replay(store)
        assert (done.stored, done.duplicates, done.rejected, done.left) == (1, 1, 0, 0)
        assert store.info().row_counts["batches"] == 1
    assert spool.depth() == 0


def test_replay_stores_many_batches_a_transaction(db_url: str, tmp_path: Path,
                                                  server: LocalServer) -> None:
    spool = Spool(tmp_path / "spool")
    many = [entry(server, scheduled_for=FIRE + timedelta(seconds=i), trigger="schedule")
            for i in range(2 * CHUNK_BATCHES + 50)]
    with open_store(db_url) as store:
        claimed = store.claim("j", BatchSpec(url=server.url("/search")),
                              scheduled_for=FIRE - timedelta(seconds=1), worker="h:1",
                              exclusive=False)
        many.append(entry(server, claimed=claimed, trigger="schedule",
                          scheduled_for=FIRE - timedelta(seconds=1)))
        for spooled in many:
            put(spool, spooled)
        put(spool, many[7])  # one twice
        commits = []
        event.listen(store.engine, "commit", lambda conn: commits.append(1))
        done = spool.replay(store)
        assert done == Replayed(stored=len(many), duplicates=1, rejected=0, left=0)
        assert len(commits) == 3  # 200, 200, 52: not one a batch
        assert store.info().row_counts == {**store.info().row_counts,
                                           "batches": len(many), "requests": 2 * len(many)}
        assert claimed is not None and store.load_batch(claimed).status == "ok"
    assert spool.depth() == 0


def test_a_batch_the_database_refuses_is_set_aside_and_the_rest_stored(
        db_url: str, tmp_path: Path, server: LocalServer) -> None:
    spool = Spool(tmp_path / "spool")
    for i in range(5):
        put(spool, entry(server, trigger="bogus" if i == 2 else "manual"))
    with open_store(db_url) as store:
        assert spool.replay(store) == Replayed(stored=4, duplicates=0, rejected=1, left=0)
        assert store.info().row_counts["batches"] == 4
    assert spool.depth() == 0 and len(list((spool.folder / "rejected").iterdir())) == 1


def test_replay_completes_a_claimed_batch(db_url: str, tmp_path: Path,
                                          server: LocalServer) -> None:
    spool = Spool(tmp_path / "spool")
    with open_store(db_url) as store:
        claimed = store.claim("j", BatchSpec(url=server.url("/search")), scheduled_for=FIRE,
                              exclusive=False)
        put(spool, entry(server, claimed=claimed, scheduled_for=FIRE, trigger="schedule"))
        assert spool.replay(store).stored == 1
        assert claimed is not None and store.load_batch(claimed).status == "ok"


def test_a_claim_that_went_through_late_is_completed_by_the_replay(
        db_url: str, tmp_path: Path, server: LocalServer) -> None:
    # The daemon gave up waiting for its claim, ran the fire and spooled it; then the
    # claim went through: the replay completes that running row, not a second one.
    spool = Spool(tmp_path / "spool")
    with open_store(db_url) as store:
        late = store.claim("j", BatchSpec(url=server.url("/search")), scheduled_for=FIRE,
                           worker="h:1", exclusive=False)
        put(spool, entry(server, scheduled_for=FIRE, trigger="schedule", worker="h:1"))
        assert spool.replay(store).stored == 1
        assert late is not None and store.load_batch(late).status == "ok"
        assert store.info().row_counts["batches"] == 1


def test_an_unreadable_file_is_set_aside_not_lost(db_url: str, tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.folder.mkdir()
    (spool.folder / "00000000000000000001-x.json").write_text("{not json")
    with open_store(db_url) as store:
        assert spool.replay(store).rejected == 1
    assert (spool.folder / "rejected" / "00000000000000000001-x.json").exists()


def test_collect_spools_during_an_outage_and_replay_stores_it(
        db_url: str, tmp_path: Path, server: LocalServer) -> None:
    spool = Spool(tmp_path / "spool")
    spec = BatchSpec(url=server.url("/search"), queries=({"q": "a"},))
    with open_store(db_url, busy_timeout=0.2) as store:
        with database_outage(db_url):
            outcome = collect("j", spec, store=store, spool=spool)
        assert outcome.spooled is not None and outcome.transient and not outcome.stored
        assert store.info().row_counts["batches"] == 0
        assert spool.replay(store).stored == 1
        assert store.info().row_counts["batches"] == 1


def test_run_once_spools_and_flush_stores(postgres_url: str, server: LocalServer) -> None:
    outage = database_outage(postgres_url)
    server.before_answer = outage.__enter__
    try:
        code, out, err = invoke("run-once", "--url", server.url("/search"), "-q", "q=python",
                                "--db", postgres_url, "--json")
    finally:
        outage.__exit__(None, None, None)
        server.before_answer = None
    assert code == 1 and json.loads(out)["batch_id"] is None
    assert_one_line_error(err, "was not stored: database ", "it is kept in the spool (",
                          "collector spool flush")
    assert "waiting: 1" in invoke("spool", "status")[1]
    shown = make_url(postgres_url).render_as_string(hide_password=True)
    code, out, _ = invoke("spool", "flush", "--db", postgres_url)
    assert (code, out.strip()) == (0, f"{shown}: stored 1, already stored 0, rejected 0, left 0")
    code, out, _ = invoke("spool", "flush", "--db", postgres_url)
    assert out.strip() == f"{shown}: nothing waiting"
    assert len(stored_batches(postgres_url)) == 1


def daemon_behind_a_proxy(postgres_url: str, server: LocalServer, tmp_path: Path,
                          *args: str, env: dict[str, str] | None = None
                          ) -> tuple[DaemonProcess, Proxy]:
    """A daemon with a job every second, its database reached through a proxy the
    test can cut or freeze; both to be stopped by the caller."""
    invoke("db", "upgrade", "--db", postgres_url)
    url = make_url(postgres_url)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(f'[jobs.tick]\nurl = "{server.url("/search")}"\nevery = "1s"\n')
    daemon = DaemonProcess(through, "--jobs", str(jobs), "--db-timeout", "1s", *args, env=env)
    return daemon, proxy


def run_through_an_outage(postgres_url: str, server: LocalServer, tmp_path: Path,
                          outage: str) -> DaemonProcess:
    """A daemon with a job every second, its database behind a proxy that is cut or
    frozen for several fires and then restored; returns it stopped, its spool replayed."""
    daemon, proxy = daemon_behind_a_proxy(postgres_url, server, tmp_path,
                                          "--log-level", "debug")
    try:
        # Frozen: the connections stay open and nothing answers.
        ride_out(daemon, proxy.cut if outage == "cut" else proxy.freeze, proxy.restore)
    finally:
        assert daemon.stop() == 0
        proxy.close()
    return daemon


def ride_out(daemon: DaemonProcess, begin: Callable[[], object],
             end: Callable[[], object]) -> None:
    """Once the daemon stored a batch, an outage from ``begin()`` until it spooled 4
    batches, then ``end()``; returns once its spool is replayed and 2 more batches are
    stored."""
    daemon.started()
    daemon.wait_for(lambda line: line.get("batch", {}).get("status") == "ok")
    begin()
    wait_until(lambda: sum("spooled" in line["message"] for line in daemon.lines) >= 4,
               timeout=30, message="fewer than 4 batches spooled")
    end()
    replayed = daemon.wait_for(lambda line: line["message"].endswith(" 0 left"), timeout=30)
    wait_until(lambda: sum(line["time"] > replayed["time"] and
                           line.get("batch", {}).get("batch_id") is not None
                           for line in daemon.lines) >= 2,
               timeout=30, message="no batch stored after the replay")


@pytest.mark.parametrize("outage", ["cut", "frozen"])
def test_a_daemon_goes_on_through_an_outage_and_stores_every_fire_once(
        outage: str, postgres_url: str, server: LocalServer, tmp_path: Path) -> None:
    daemon = run_through_an_outage(postgres_url, server, tmp_path, outage)
    assert_every_fire_stored_once(postgres_url, daemon)


def test_a_daemon_goes_on_through_a_sqlite_write_lock(sqlite_url: str, server: LocalServer,
                                                      tmp_path: Path) -> None:
    invoke("db", "upgrade", "--db", sqlite_url)
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(f'[jobs.tick]\nurl = "{server.url("/search")}"\nevery = "1s"\n')
    daemon = DaemonProcess(sqlite_url, "--jobs", str(jobs), "--db-timeout", "1s",
                           "--log-level", "debug",
                           env={"COLLECTOR_SPOOL_DIR": str(tmp_path / "spool")})
    lock = database_outage(sqlite_url)  # another connection holds the write lock
    try:
        ride_out(daemon, lock.__enter__, lambda: lock.__exit__(None, None, None))
    finally:
        assert daemon.stop() == 0
    assert_every_fire_stored_once(sqlite_url, daemon)
    # Reads go on under SQLite's write lock: the daemon takes the database for back only
    # once it can write (it used to say so, and go away again, at every heartbeat).
    assert sum(line["message"] == "the database answers again" for line in daemon.lines) == 1


def assert_every_fire_stored_once(url: str, *daemons: DaemonProcess) -> None:
    """Each fire of the daemons' 1 s jobs, from a job's first stored fire to its last,
    stored once and complete, or counted and logged as skipped."""
    rows = stored_batches(url)
    keys = [(r["job_name"], r["scheduled_for"]) for r in rows]
    assert len(keys) == len(set(keys))  # none twice
    # A fire may be skipped for a reason the daemon logs (a batch that outlasted the
    # second on a loaded machine); the outage itself must cost none. The logs are
    # printed whole on stderr, which pytest shows in full.
    skipped = {(line["skipped"]["job"], line["skipped"]["scheduled_for"]):
               line["skipped"]["reason"] for daemon in daemons for line in daemon.lines
               if line.get("skipped", {}).get("reason", "claimed_elsewhere")
               != "claimed_elsewhere"}
    missing = []
    for job in {name for name, _ in keys}:
        fires = sorted(t for name, t in keys if name == job)
        assert len(fires) >= 5, (job, fires)
        missing += [(job, t) for t in (fires[0] + timedelta(seconds=i) for i in range(
            int((fires[-1] - fires[0]).total_seconds()) + 1))
            if t not in fires and (job, t.isoformat()) not in skipped]
    if missing or skipped:
        for daemon in daemons:
            print("".join(daemon.raw), file=sys.stderr)
    assert missing == [] and set(skipped.values()) <= {"previous_running", "late"}, \
        (missing, skipped)
    assert sum("spooled" in line["message"] for d in daemons for line in d.lines) >= 4
    with open_store(url) as store, store.connect() as conn:
        assert conn.execute(select(batches.c.status).where(
            batches.c.status != "ok")).all() == []


def test_a_cluster_through_an_outage_stores_every_fire_once(
        postgres_url: str, server: LocalServer, tmp_path: Path) -> None:
    # While the database is away each daemon runs every fire itself (none can claim);
    # the replays store one batch of each fire and drop the others.
    invoke("db", "upgrade", "--db", postgres_url)
    url = make_url(postgres_url)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    through = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    jobs = tmp_path / "jobs.toml"
    jobs.write_text("".join(f'[jobs.tick{i}]\nurl = "{server.url("/search")}"\nevery = "1s"\n'
                            for i in range(2)))
    daemons = [DaemonProcess(through, "--jobs", str(jobs), "--db-timeout", "1s",
                             "--log-level", "debug",
                             env={"COLLECTOR_SPOOL_DIR": str(tmp_path / f"spool{i}")})
               for i in range(3)]
    try:
        for daemon in daemons:
            daemon.started()
        wait_until(lambda: len(stored_batches(postgres_url)) >= 4, timeout=30,
                   message="no batches stored before the outage")
        proxy.cut()
        wait_until(lambda: all(sum("spooled" in line["message"] for line in d.lines) >= 4
                               for d in daemons),
                   timeout=30, message="a daemon spooled fewer than 4 batches")
        proxy.restore()
        replayed = [d.wait_for(lambda line: line["message"].endswith(" 0 left"), timeout=30)
                    for d in daemons]
        last = max(line["time"] for line in replayed)
        wait_until(lambda: sum(line["time"] > last and
                               line.get("batch", {}).get("batch_id") is not None
                               for d in daemons for line in d.lines) >= 4,
                   timeout=30, message="no batches stored after the replays")
    finally:
        codes = [d.stop() for d in daemons]
        proxy.close()
    assert codes == [0, 0, 0]
    assert_every_fire_stored_once(postgres_url, *daemons)
    dropped = sum(int(m[1]) for d in daemons for line in d.lines
                  if (m := re.match(r"spool: \d+ stored, (\d+) there already", line["message"])))
    assert dropped > 0  # each fire of the outage ran on every daemon, and was stored once


def test_collect_says_when_the_spool_cannot_keep_a_batch(db_url: str, tmp_path: Path,
                                                         server: LocalServer) -> None:
    (tmp_path / "file").write_text("")
    spool = Spool(tmp_path / "file" / "spool")
    spec = BatchSpec(url=server.url("/search"))
    with open_store(db_url, busy_timeout=0.2) as store, database_outage(db_url):
        outcome = collect("j", spec, store=store, spool=spool)
    assert outcome.result is not None and outcome.transient
    assert outcome.spooled is None and outcome.spool_error is not None
    assert "cannot keep it: Not a directory" in str(outcome.spool_error)


def test_a_daemon_whose_spool_cannot_write_says_so_and_counts_it(
        postgres_url: str, server: LocalServer, tmp_path: Path) -> None:
    import urllib.request

    (tmp_path / "file").write_text("")  # the spool would be a folder inside a file
    daemon, proxy = daemon_behind_a_proxy(
        postgres_url, server, tmp_path, "--metrics-port", "0",
        env={"COLLECTOR_SPOOL_DIR": str(tmp_path / "file" / "spool")})
    try:
        served = daemon.wait_for(lambda line: line["message"].startswith("metrics on "))
        metrics = served["message"].removeprefix("metrics on ")
        daemon.wait_for(lambda line: line.get("batch", {}).get("status") == "ok")
        proxy.cut()
        lost = daemon.wait_for(lambda line: line["message"].startswith("batch lost: "),
                               timeout=15)
        assert lost["level"] == "error" and "cannot keep it: Not a directory" in lost["message"]
        with urllib.request.urlopen(metrics, timeout=5) as response:
            text = response.read().decode()
        counted = [line for line in text.splitlines()
                   if line.startswith("collector_spool_write_failures_total ")]
        assert counted and float(counted[0].split()[1]) >= 1
        proxy.restore()
    finally:
        assert daemon.stop() == 0
        proxy.close()
    assert not any("Traceback" in line for line in daemon.raw)
