"""The daemon: every enabled job fired on its schedule, each fire claimed, run and stored once.

A ``BackgroundScheduler`` (APScheduler 3) says when; :mod:`collector.daemon.firing`
has the path a fire takes from there. Fires reach the claims thread a little
ahead of their time and are claimed many to a statement; the starter thread
starts each at its time on one of ``workers`` batch threads; the writer thread
commits what finished, many batches to a transaction; the replay thread stores
the spool as soon as the database answers. Every fire ends as a stored batch
or a counted, logged skip. The main thread waits for signals and, between
them, keeps the heartbeat on the database's clock, marks batches of dead
workers ``abandoned``, follows changes to the ``jobs`` table and pings
systemd's watchdog while the scheduler's own loop is alive.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from collector.collect import Outcome, by_position, last_got, record, remember, wants_known
from collector.daemon.firing import Clock, Fire, FireExecutor, Skips
from collector.daemon.notify import Notifier
from collector.daemon.trigger import FireTrigger
from collector.errors import (
    CollectorError,
    ConfigError,
    DatabaseUnavailable,
    StoreError,
)
from collector.metrics import Metrics
from collector.references import prepare
from collector.results import Known, PendingBatch, new_batch_key
from collector.runner import run_batch
from collector.schedule import Fires, spread_offset
from collector.settings import spool_folder, worker_id
from collector.spec import JobSpec
from collector.spool import Spool
from collector.store import Store

log = logging.getLogger("collector.daemon")

CLOCK_WARNING = timedelta(seconds=1)  # a clock further off than this is logged
# A running batch of this daemon's that it is not running, and older than this, is a
# claim that went through after the daemon gave up waiting on it.
STRAY_AGE = timedelta(seconds=30)
# How long the claims thread and the writer wait for more of their kind before one
# statement and one commit (the measured trade-off is in benchmarks/README.md).
CLAIM_LINGER = 0.05
# Fires reach the claims thread this much ahead of their time, so that their claim is
# made before it and many fires share it.
CLAIM_LEAD = timedelta(seconds=0.25)
WRITE_LINGER = 0.05
# How often a daemon makes PostgreSQL's partitions ahead and, with a retention, prunes
# (and once at its start); and how soon it tries again when it could not.
MAINTENANCE_EVERY = 24 * 3600.0
MAINTENANCE_RETRY = 300.0
# How long the claims thread waits to learn what a conditional job last got (once per
# job) before its fire asks unconditionally (the database is slow, or away unnoticed).
KNOWN_TIMEOUT = 2.0
# A claim may take until its first fire's grace ends, less this margin for the run to
# start, and never less than CLAIM_LEAST (nor more than the database timeout).
CLAIM_MARGIN = 0.25
CLAIM_LEAST = 0.5


@dataclass(frozen=True, kw_only=True)
class DaemonConfig:
    """How a daemon runs; ``collector run`` builds it from its options."""

    job_paths: tuple[Path, ...] = ()
    workers: int = 4
    shutdown_timeout: float = 30.0
    heartbeat_interval: float = 5.0
    heartbeat_timeout: float = 30.0
    sync_interval: float = 2.0
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"
    worker: str = field(default_factory=worker_id)
    spool_folder: Path = field(default_factory=spool_folder)
    retention: float | None = None  # seconds of history kept: pruned at start, then daily


class Daemon:
    """One ``collector run``: start it, let signals ask it to reload or stop, then stop it."""

    def __init__(self, store: Store, config: DaemonConfig, *,
                 notifier: Notifier | None = None, metrics: Metrics | None = None) -> None:
        from concurrent.futures import ThreadPoolExecutor as Batches

        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        self.store = store
        self.config = config
        self.notifier = notifier or Notifier({})
        self.metrics = metrics or Metrics()
        self.clock = Clock()
        self.skips = Skips(self.metrics)
        self.scheduler = BackgroundScheduler(
            executors={"default": FireExecutor(self._accept),
                       "tick": ThreadPoolExecutor(1)},
            # Every fire time reaches _accept (no coalescing), which decides and counts:
            # APScheduler drops nothing of its own accord.
            job_defaults={"coalesce": False, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )
        self.spool = Spool(config.spool_folder)
        # After an outage is seen, fires go straight to the spool until the main
        # thread finds the database answering again: no fire waits on it. Only a
        # database call that failed sets it, never a fire that merely ran meanwhile.
        self.database_away = threading.Event()
        self.stop_batches = threading.Event()  # set when the shutdown timeout has passed
        self.stopping = threading.Event()
        self.reload_requested = threading.Event()
        self.wake = threading.Event()
        self._replay_wake = threading.Event()
        self._claims: queue.SimpleQueue[Fire | None] = queue.SimpleQueue()
        self._finished: queue.SimpleQueue[Fire | None] = queue.SimpleQueue()
        self._batches = Batches(max_workers=config.workers, thread_name_prefix="collector-batch")
        self._threads: list[threading.Thread] = []
        self._due: list[tuple[datetime, int, Fire]] = []  # claimed ahead, by fire time
        self._due_changed = threading.Condition()
        self._order = itertools.count()
        self._scheduled: dict[str, JobSpec] = {}
        self._marker: object = None
        self._active = 0
        self._in_flight: set[int] = set()  # claimed here, not yet written
        self._cannot_run: dict[str, str] = {}  # job: why its last fire could not run
        # What each conditional (or keep_bodies = "changed") job last got, by job: its URL
        # and, by query, the content: read from the database once, at its first fire,
        # then kept up from its batches here, so no batch thread reads the database.
        self._known: dict[str, tuple[str, dict[str, Known]]] = {}
        self._known_lock = threading.Lock()
        self._idle = threading.Condition()
        self._last_tick = time.monotonic()
        self._last_batch = "none yet"

    # -- starting ---------------------------------------------------------------------------

    def start(self) -> None:
        """Register, apply the job files, schedule the jobs, start firing; READY=1.

        Raises ConfigError for job files with mistakes or metrics it cannot serve,
        and StoreError when the database cannot be used: a daemon that cannot start
        says so and exits, before any fire.
        """
        if self.config.metrics_port is not None and self.metrics.port is None:
            self.metrics.serve(self.config.metrics_port, self.config.metrics_address)
        if self.metrics.port is not None:
            log.info("metrics on http://%s:%d/metrics", self.config.metrics_address,
                     self.metrics.port)
        self._measure_clock()
        abandoned = self.store.register_worker(self.config.worker, now=self.clock.now())
        if abandoned:
            log.warning("marked %d batches of an earlier %s abandoned", abandoned,
                        self.config.worker)
        self.apply_job_files()
        loops = [("claims", self._claim_loop), ("starter", self._start_loop),
                 ("writer", self._write_loop), ("replay", self._replay_loop)]
        loops.append(("maintenance", self._maintenance_loop))
        for name, target in loops:
            thread = threading.Thread(target=target, name=f"collector-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self.sync_jobs()
        self.scheduler.add_job(self._tick, "interval", seconds=1, id="collector-tick",
                               executor="tick")
        self.scheduler.start()
        self.notifier.ready(self._status())
        log.info("collector daemon %s started: %d jobs scheduled, %s", self.config.worker,
                 len(self._scheduled), self._capacity())

    def _capacity(self) -> str:
        """The load the jobs make, in fires a second (a crontab job counted as one a minute)."""
        per_second = sum(1 / job.every if job.every else 1 / 60 for job in self._scheduled.values())
        return (f"about {per_second:.1f} fires a second on {self.config.workers} batch "
                f"threads")

    def apply_job_files(self) -> None:
        """Apply ``job_paths`` to the jobs table (files are the truth for their jobs)."""
        if not self.config.job_paths:
            return
        from collector.apply import apply_jobs, load_jobs

        found = load_jobs(self.config.job_paths, local=False)
        for problem in found.errors:
            log.warning("%s on this machine: its batches fail here until it is", problem)
        plan = apply_jobs(self.store, self.config.job_paths, prune=True, found=found)
        done = {"create": "created", "update": "updated", "remove": "removed"}
        for change in plan.changes:
            if change.action in done:
                log.info("job %s %s from %s", change.name, done[change.action], change.source)

    # -- the jobs table ---------------------------------------------------------------------

    def sync_jobs(self) -> None:
        """Schedule what the jobs table says, when it changed since the last look."""
        marker = self.store.jobs_marker()
        if marker == self._marker:
            return
        stored = self.store.jobs()
        for broken in stored.broken:
            log.warning("%s: skipped", broken)
        wanted = {s.name: s for s in stored.jobs
                  if s.job.enabled and (s.job.every is not None or s.job.cron is not None)}
        for name in list(self._scheduled):
            if name not in wanted:
                self.scheduler.remove_job(name)
                del self._scheduled[name]
                self._known.pop(name, None)
                self.metrics.job_unscheduled(name)
                log.info("job %s: no longer scheduled", name)
        for name, found in wanted.items():
            if self._scheduled.get(name) != found.job:
                self._schedule(found.job, since=found.updated_at)
        self._marker = marker
        self.metrics.jobs.set(len(self._scheduled))
        self.notifier.status(self._status())

    def _schedule(self, job: JobSpec, *, since: datetime) -> None:
        """Schedule ``job``; its last fire, if missed and not from before ``since`` (the job
        as it is now did not exist then), is caught up within the first interval."""
        fires = Fires(job)
        now = self.clock.now()
        latest = fires.latest(now)
        upcoming = fires.next_after(latest, now) if latest is not None else None
        catch_up = None
        if (job.name not in self._scheduled and latest is not None and latest >= since
                and upcoming is not None and now - latest <= fires.grace_of(latest)):
            # Spread as the job's fires are (a fraction from its name), within the first
            # half of the time to its next fire, so it is done before that one is due.
            fraction = spread_offset(job.name, 1.0).total_seconds()
            at = now + (upcoming - now) * fraction / 2
            catch_up = (self.clock.to_local(at), latest)
        previous = self.scheduler.get_job(job.name) if job.name in self._scheduled else None
        # A changed job goes on after the last fire its old trigger handed out, which may
        # be claimed already: never that fire again.
        trigger = FireTrigger(fires, self.clock, catch_up, lead=CLAIM_LEAD,
                              after=previous.trigger.last_handed() if previous else None)
        self.scheduler.add_job(_never_called, trigger, args=[job, trigger], id=job.name,
                               name=job.name, replace_existing=True)
        verb = "rescheduled" if job.name in self._scheduled else "scheduled"
        self._scheduled[job.name] = job
        self.metrics.job_scheduled(job.name, tuple(c.name for c in job.batch.checks))
        log.info("job %s: %s, next fire %s%s", job.name, verb,
                 upcoming.isoformat() if upcoming is not None else "none",
                 f" (its missed fire {catch_up[1].isoformat()} first)" if catch_up else "")

    # -- a fire: accepted, claimed, run, written --------------------------------------------

    def _accept(self, job: JobSpec, trigger: FireTrigger, run_times: list[datetime]) -> None:
        """In APScheduler's loop: each due fire queued for its claim, or counted as late."""
        now = self.clock.now()
        for i, run_time in enumerate(run_times):
            scheduled_for = trigger.key(run_time)
            start_by = scheduled_for + trigger.fires.grace_of(scheduled_for)
            if self.stopping.is_set():
                self.skips.skip(job.name, "stopping", scheduled_for)
            elif i < len(run_times) - 1 or now > start_by:
                self.skips.skip(job.name, "late", scheduled_for)
            else:
                self._claims.put(Fire(job=job, scheduled_for=scheduled_for, start_by=start_by,
                                      early=True))

    def _claim_loop(self) -> None:
        """The claims thread: what is due now, claimed in one statement, then started."""
        for group in _groups(self._claims, 5000, CLAIM_LINGER):
            try:
                self._claim(group)
            except Exception:  # a bug here must not stop every later fire
                log.exception("claiming %d fires failed", len(group))
                for fire in group:
                    self.skips.skip(fire.job.name, "error", fire.scheduled_for)

    def _claim(self, group: list[Fire]) -> None:
        ready = []
        for fire in group:
            if self.stopping.is_set():
                self.skips.skip(fire.job.name, "stopping", fire.scheduled_for)
                continue
            try:
                fire.prepared = prepare(fire.job.batch, where=f'job "{fire.job.name}"')
            except ConfigError as exc:
                # At ERROR when it starts or changes, not at every fire (the skips say
                # how many fires it cost); at DEBUG each time.
                again = self._cannot_run.get(fire.job.name) == str(exc)
                log.log(logging.DEBUG if again else logging.ERROR, "job %s: %s",
                        fire.job.name, exc)
                self._cannot_run[fire.job.name] = str(exc)
                self.skips.skip(fire.job.name, "config", fire.scheduled_for)
                continue
            self._cannot_run.pop(fire.job.name, None)
            if wants_known(fire.job.batch):
                self._learn_known(fire)
            ready.append(fire)
        if not ready:
            return
        if not self.database_away.is_set():
            now = self.clock.now()
            with self._idle:
                running_here = set(self._in_flight)
            try:
                claimed = self.store.claim_fires(
                    [(f.job.name, f.job.batch, f.scheduled_for) for f in ready],
                    worker=self.config.worker, now=now, running_here=running_here,
                    timeout=self._claim_budget(ready, now))
            except DatabaseUnavailable as exc:
                self._away(f"claiming {len(ready)} fires: {exc}")
            except StoreError as exc:
                log.warning("claiming %d fires: %s", len(ready), exc)
                for fire in ready:
                    self.skips.skip(fire.job.name, "database", fire.scheduled_for)
                return
            else:
                for fire in ready:
                    outcome = claimed[(fire.job.name, fire.scheduled_for)]
                    if outcome == "busy" and fire.early:
                        fire.early = False  # asked ahead of time: ask again when it is due
                        self._hold(fire)
                    elif outcome == "busy":
                        self.skips.skip(fire.job.name, "previous_running", fire.scheduled_for)
                    elif outcome is None:
                        self.skips.skip(fire.job.name, "claimed_elsewhere", fire.scheduled_for)
                    else:
                        fire.batch_id = outcome
                        with self._idle:
                            self._in_flight.add(outcome)
                        self._hold(fire)
                return
        for fire in ready:  # the database is away: run them all, spool what they collect
            fire.offline = True
            self._hold(fire)

    def _learn_known(self, fire: Fire) -> None:
        """What the fire's job last got, read once per job and URL (then its batches here
        keep it up): unknown while the database does not answer, when the batch asks in
        full and keeps every body, and read again at the next fire."""
        name, url = fire.job.name, fire.job.batch.url
        if self._known.get(name, ("", None))[0] == url or self.database_away.is_set():
            return
        found = last_got(self.store, name, url, timeout=KNOWN_TIMEOUT)
        if found is None:
            return
        with self._known_lock:
            self._known[name] = (url, found)

    def _claim_budget(self, fires: list[Fire], now: datetime) -> float | None:
        """How long a claim of ``fires`` may take: until the first of them would be past
        its grace time (then they run without a claim, and are spooled), at most the
        database timeout, at least CLAIM_LEAST."""
        most = self.store.operation_timeout
        if most is None:
            return None
        left = (min(f.start_by for f in fires) - now).total_seconds() - CLAIM_MARGIN
        return min(most, max(CLAIM_LEAST, left))

    def _hold(self, fire: Fire) -> None:
        """Keep a fire until it is due (claims are made ahead of time): then it starts, or,
        when it was claimed without success while the job's last batch ran, is claimed
        again."""
        with self._due_changed:
            heapq.heappush(self._due, (fire.scheduled_for, next(self._order), fire))
            self._due_changed.notify()

    def _start_loop(self) -> None:
        """The starter thread: each held fire started at its time."""
        while (fire := self._next_due()) is not None:
            if fire.batch_id is None and not fire.offline:
                self._claims.put(fire)  # to be claimed again, now that it is due
            else:
                self._start(fire)

    def _next_due(self) -> Fire | None:
        """The next held fire once it is due. When the daemon stops, the fires it claimed
        (or runs offline) still start at their time, a claim being a promise no other
        daemon will keep; the ones waiting to be claimed again are counted as skipped;
        None once nothing is held."""
        dropped: list[Fire] = []
        fire = None
        with self._due_changed:
            while fire is None:
                if self.stopping.is_set():
                    kept = [e for e in self._due if e[2].batch_id is not None or e[2].offline]
                    if len(kept) < len(self._due):
                        dropped += [e[2] for e in self._due if e not in kept]
                        self._due = kept
                        heapq.heapify(self._due)
                    if not self._due:
                        break
                now = self.clock.now()
                if self._due and self._due[0][0] <= now:
                    fire = heapq.heappop(self._due)[2]
                else:
                    wait = (self._due[0][0] - now).total_seconds() if self._due else 1.0
                    self._due_changed.wait(min(wait, 1.0))
        for skipped in dropped:
            self.skips.skip(skipped.job.name, "stopping", skipped.scheduled_for)
        return fire

    def _start(self, fire: Fire) -> None:
        with self._idle:
            self._active += 1
        self._batches.submit(self._run, fire)

    def _run(self, fire: Fire) -> None:
        """A batch thread: run the batch, hand it to the writer."""
        try:
            prepared = fire.prepared
            assert prepared is not None
            url, found = self._known.get(fire.job.name, ("", None))
            if url != fire.job.batch.url:
                found = None
            last = () if found is None else by_position(found, prepared)
            result = prepared.show(run_batch(prepared.ready, stop=self.stop_batches,
                                             known=last))
            if found is not None:
                with self._known_lock:
                    remember(found, result)
            fire.result = result.shifted(self.clock.offset)
            self._finished.put(fire)
        except Exception:  # a bug in one fire must not stop the others
            log.exception("job %s: fire %s failed", fire.job.name, fire.scheduled_for.isoformat())
            self.skips.skip(fire.job.name, "error", fire.scheduled_for)
            with self._idle:  # its claim, never to be completed, is a stray
                self._in_flight.discard(fire.batch_id)
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def _write_loop(self) -> None:
        """The writer thread: what finished since its last commit, written in one."""
        for group in _groups(self._finished, 1000, WRITE_LINGER):
            try:
                self._write(group)
            except Exception:
                log.exception("writing %d batches failed", len(group))
                for fire in group:
                    self.skips.skip(fire.job.name, "error", fire.scheduled_for)
            finally:
                with self._idle:
                    self._in_flight.difference_update(f.batch_id for f in group)

    def _write(self, group: list[Fire]) -> None:
        """Record what ``group`` collected (:func:`collector.collect.record`): the claimed
        fires in one transaction, unless the database is known to be away; the fires run
        without a claim, and whatever the database cannot take now, to the spool."""
        claimed = [f for f in group if f.batch_id is not None]
        offline = [f for f in group if f.batch_id is None]
        known_away = (DatabaseUnavailable(self.store.url, "known to be away")
                      if self.database_away.is_set() else None)
        outcomes = record(self.store, [self._pending(f) for f in claimed], spool=self.spool,
                          away=known_away)
        outage = next((o.store_error for o in outcomes if o.transient), None)
        if outage is not None and known_away is None:
            self._away(f"writing {len(claimed)} batches: {outage}")
        outcomes += record(self.store, [self._pending(f) for f in offline], spool=self.spool,
                           away=DatabaseUnavailable(self.store.url, "away when the fire was due"))
        for fire, outcome in zip(claimed + offline, outcomes, strict=True):
            if outcome.spool_error is not None:
                self.metrics.spool_write_failures.inc()
                self.skips.skip(fire.job.name, "spool_full", fire.scheduled_for)
            if outcome.spooled is not None:
                self._replay_wake.set()
            self._report(fire, outcome)

    def _pending(self, fire: Fire) -> PendingBatch:
        assert fire.result is not None
        return PendingBatch(result=fire.result, job_name=fire.job.name, trigger="schedule",
                            worker=self.config.worker, batch_key=new_batch_key(),
                            scheduled_for=fire.scheduled_for, claimed=fire.batch_id)

    def _report(self, fire: Fire, outcome: Outcome) -> None:
        """The batch's log line and metrics."""
        result, job = outcome.result, fire.job
        error, spooled, spool_error = outcome.store_error, outcome.spooled, outcome.spool_error
        self.metrics.batch(job.name, result, stored=error is None)
        fields = {
            "job": job.name, "scheduled_for": fire.scheduled_for.isoformat(),
            "batch_id": outcome.batch_id, "status": result.status,
            "requests": len(result.requests), "failed": result.requests_failed,
            "tcp_connections": result.tcp_connections,
            "duration_ms": round((result.finished_at - result.started_at).total_seconds()
                                 * 1000, 1),
            "late_ms": round((result.started_at - fire.scheduled_for).total_seconds() * 1000, 1),
        }
        text = " ".join(f"{k}={v}" for k, v in fields.items())
        if spooled is not None:
            log.warning("batch spooled: %s: %s", text, error,
                        extra={"batch": {**fields, "spooled": str(spooled)}})
        elif spool_error is not None:
            log.error("batch lost: %s: %s, and %s", text, error, spool_error,
                      extra={"batch": fields})
        elif error is not None:
            log.error("batch not stored: %s: %s", text, error, extra={"batch": fields})
        else:
            log.info("batch %s", text, extra={"batch": fields})
        self._last_batch = f"{job.name} {result.status} at {result.finished_at:%H:%M:%S}"

    def _away(self, what: str) -> None:
        if not self.database_away.is_set():
            self.database_away.set()
            log.warning("the database is away (%s): fires run and are spooled until it "
                        "answers", what)

    # -- the spool --------------------------------------------------------------------------

    def _replay_loop(self) -> None:
        """The replay thread: the spool stored, in bulk, as soon as the database answers."""
        while not self.stopping.is_set():
            self._replay_wake.wait(self.config.heartbeat_interval)
            self._replay_wake.clear()
            if self.database_away.is_set() or self.stopping.is_set():
                continue
            try:
                self._replay()
            except DatabaseUnavailable as exc:
                self._away(f"replaying the spool: {exc}")
            except StoreError as exc:
                log.warning("replaying the spool: %s", exc)

    def _maintenance_loop(self) -> None:
        """The maintenance thread, at start and then every MAINTENANCE_EVERY: PostgreSQL's
        partitions made for the week ahead, and history older than the retention pruned
        (each daemon of a cluster does both; two at once take turns, and finding nothing
        to do costs a few indexed reads)."""
        while not self.stopping.is_set():
            done = False
            if not self.database_away.is_set():
                try:
                    made = self.store.make_partitions()
                    if made:
                        log.info("made %d partitions for the days ahead", made)
                    if self.config.retention is not None:
                        self._apply_retention()
                    done = True
                except StoreError as exc:
                    log.warning("maintenance: %s", exc)
                except Exception:  # a bug here must not stop the daemon
                    log.exception("maintenance failed")
            self.stopping.wait(MAINTENANCE_EVERY if done else MAINTENANCE_RETRY)

    def _apply_retention(self) -> None:
        assert self.config.retention is not None
        before = self.clock.now() - timedelta(seconds=self.config.retention)
        n_batches, n_requests = self.store.prune(before, stop=self.stopping)
        log.log(logging.INFO if n_batches else logging.DEBUG,
                "retention: deleted %d batches and %d requests started before %s",
                n_batches, n_requests, before.isoformat(timespec="seconds"),
                extra={"retention": {"batches": n_batches, "requests": n_requests,
                                     "before": before.isoformat()}})

    def _replay(self) -> None:
        """Store what the spool holds, oldest first, until it is empty or the database
        goes away again."""
        while not self.stopping.is_set() and not self.database_away.is_set():
            done = self.spool.replay(self.store, limit=1000)
            if done.stored or done.duplicates or done.rejected:
                log.info("spool: %d stored, %d there already, %d rejected, %d left",
                         done.stored, done.duplicates, done.rejected, done.left)
            self.metrics.spool_depth.set(done.left)
            if not (done.stored or done.duplicates or done.rejected):
                return

    # -- the main thread --------------------------------------------------------------------

    def _tick(self) -> None:
        """Runs in the scheduler's own executor: proof that its loop is alive."""
        self._last_tick = time.monotonic()

    def scheduler_alive(self) -> bool:
        """Whether the scheduler's loop ran its tick lately (three seconds)."""
        return time.monotonic() - self._last_tick < 3.0

    def serve(self) -> None:
        """Wait for signals, doing the housekeeping between them, until asked to stop."""
        next_sync = next_beat = next_ping = time.monotonic()
        while not self.stopping.is_set():
            now = time.monotonic()
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self._reload()
            if self.database_away.is_set():
                self._guarded(self._probe, "waiting for the database")
            if now >= next_sync:
                next_sync = now + self.config.sync_interval
                self._guarded(self.sync_jobs, "reading the jobs table")
                self.skips.flush()
            if now >= next_beat:
                next_beat = now + self.config.heartbeat_interval
                self._guarded(self._heartbeat, "keeping the heartbeat")
            interval = self.notifier.watchdog_interval
            if interval is not None and now >= next_ping and self.scheduler_alive():
                next_ping = now + interval
                self.notifier.watchdog()
            self.notifier.status(self._status())
            self.wake.wait(0.5)
            self.wake.clear()

    def _probe(self) -> None:
        self.store.ping(write=True)  # raises while it is still away (or still locked)
        log.info("the database answers again")
        self.database_away.clear()
        self._replay_wake.set()

    def _reload(self) -> None:
        log.info("reloading: applying %s", ", ".join(map(str, self.config.job_paths)) or
                 "no job files")
        try:
            self.apply_job_files()
        except CollectorError as exc:
            for error in getattr(exc, "errors", [exc]):
                log.error("reload: %s", error)
            log.error("reload failed: the jobs stay as they were")
        self._guarded(self.sync_jobs, "reading the jobs table")

    def _measure_clock(self) -> None:
        offset = self.store.clock_offset()
        if offset is None:
            return
        self.clock.offset = offset
        self.metrics.clock_offset.set(offset.total_seconds())
        if abs(offset) > CLOCK_WARNING:
            log.warning("this host's clock is %.3fs %s the database's: collector goes by "
                        "the database's", abs(offset.total_seconds()),
                        "behind" if offset > timedelta(0) else "ahead of")

    def _heartbeat(self) -> None:
        try:
            self._measure_clock()
            now = self.clock.now()
            self.store.heartbeat(self.config.worker, now=now)
            abandoned = self.store.abandon_stale(
                timedelta(seconds=self.config.heartbeat_timeout), now=now)
            with self._idle:
                in_flight = set(self._in_flight)
            strays = self.store.abandon_strays(self.config.worker, keep=in_flight,
                                               before=now - STRAY_AGE, now=now)
        except DatabaseUnavailable as exc:
            self._away(f"keeping the heartbeat: {exc}")
            raise
        if abandoned:
            log.warning("marked %d batches abandoned: their workers stopped beating", abandoned)
        if strays:
            log.warning("marked %d batches of this daemon abandoned: their claims went "
                        "through after it had given up waiting (the spool completes them)",
                        strays)

    def _guarded(self, step: object, what: str) -> None:
        assert callable(step)
        try:
            step()
        except StoreError as exc:
            log.warning("%s: %s", what, exc)

    def request_stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def request_reload(self) -> None:
        self.reload_requested.set()
        self.wake.set()

    # -- stopping ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop firing, let batches finish for up to the shutdown timeout, then cut them
        short (what they collected is stored as ``interrupted``), and let go of everything."""
        self.notifier.stopping()
        self.stopping.set()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        self._claims.put(None)
        for thread in self._threads[:2]:  # claims (nothing more is held after it), then
            with self._due_changed:       # the starter (what was claimed has started)
                self._due_changed.notify()
            thread.join(timeout=60)
        deadline = time.monotonic() + self.config.shutdown_timeout
        with self._idle:
            while self._active and time.monotonic() < deadline:
                self._idle.wait(deadline - time.monotonic())
            if self._active:
                log.warning("%d batches still running after %gs: stopping them", self._active,
                            self.config.shutdown_timeout)
                self.stop_batches.set()
                self._idle.wait_for(lambda: not self._active, timeout=60)
        self._batches.shutdown(wait=False)
        self._finished.put(None)
        self._replay_wake.set()
        for thread in self._threads:
            thread.join(timeout=60)
        self.skips.flush_all()
        try:
            self.store.worker_stopped(self.config.worker, now=self.clock.now())
        except StoreError as exc:
            log.warning("could not record the stop: %s", exc)
        self.metrics.close()
        log.info("collector daemon %s stopped", self.config.worker)

    def _status(self) -> str:
        return f"{len(self._scheduled)} jobs scheduled; last batch: {self._last_batch}"


def run(store: Store, config: DaemonConfig, *, notifier: Notifier,
        metrics: Metrics | None = None) -> None:
    """Start a daemon, serve until SIGTERM or SIGINT (SIGHUP reloads), stop it cleanly.

    The signal handlers only set a flag; the main thread does the work.
    ``metrics`` may already be served (``collector run`` binds them first).
    """
    import signal

    daemon = Daemon(store, config, notifier=notifier, metrics=metrics)

    def stop(_signum: int, _frame: object) -> None:
        daemon.request_stop()

    def reload(_signum: int, _frame: object) -> None:
        daemon.request_reload()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    try:
        daemon.start()
        daemon.serve()
    finally:
        daemon.stop()


def _never_called(*_args: object) -> None:
    """The function APScheduler holds for each job: FireExecutor hands fires on instead."""
    raise AssertionError("FireExecutor runs no job function")


def _groups(source: queue.SimpleQueue[Fire | None], most: int,
            linger: float) -> Iterator[list[Fire]]:
    """What ``source`` holds, a group at a time, until None is taken: the first item, and
    what else comes within ``linger`` seconds (``most`` at most), so that one statement
    and one commit serve many fires under load, at the cost of ``linger`` at most."""
    while True:
        first = source.get()
        if first is None:
            return
        group = [first]
        until = time.monotonic() + linger
        done = False
        while len(group) < most:
            try:
                item = source.get(timeout=max(0.0, until - time.monotonic()))
            except queue.Empty:
                break
            if item is None:
                done = True
                break
            group.append(item)
        yield group
        if done:
            return
