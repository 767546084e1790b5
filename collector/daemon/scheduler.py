"""The daemon: every enabled job fired on its schedule, each fire claimed, run and stored once.

A ``BackgroundScheduler`` (APScheduler 3) fires jobs into a thread pool of
``workers``; the main thread waits for signals and, between them, keeps the
daemon's heartbeat, marks batches of dead workers ``abandoned``, follows
changes to the ``jobs`` table and pings systemd's watchdog while the
scheduler's own loop is alive.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from collector.collect import collect
from collector.daemon.notify import Notifier
from collector.errors import CollectorError, ConfigError, StoreError
from collector.metrics import Metrics
from collector.schedule import Fires
from collector.settings import spool_folder, worker_id
from collector.spec import JobSpec
from collector.spool import Spool
from collector.store import Store

log = logging.getLogger("collector.daemon")


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


class Daemon:
    """One ``collector run``: start it, let signals ask it to reload or stop, then stop it."""

    def __init__(self, store: Store, config: DaemonConfig, *,
                 notifier: Notifier | None = None, metrics: Metrics | None = None) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        self.store = store
        self.config = config
        self.notifier = notifier or Notifier({})
        self.metrics = metrics or Metrics()
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(config.workers),
                       "tick": ThreadPoolExecutor(1)},
            # Overlapping fires of a job are not dropped here: the cluster-wide check
            # (a batch of the job still running) skips and counts them, and while the
            # database is away they run and are spooled.
            job_defaults={"coalesce": True, "max_instances": config.workers},
            timezone=UTC,
        )
        self.spool = Spool(config.spool_folder)
        # After an outage is seen, fires go straight to the spool until the main
        # thread finds the database answering again: no fire waits on it.
        self.database_away = threading.Event()
        self.stop_batches = threading.Event()  # set when the shutdown timeout has passed
        self.stopping = threading.Event()
        self.reload_requested = threading.Event()
        self.wake = threading.Event()
        self._scheduled: dict[str, JobSpec] = {}
        self._marker: object = None
        self._active = 0
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
        abandoned = self.store.register_worker(self.config.worker)
        if abandoned:
            log.warning("marked %d batches of an earlier %s abandoned", abandoned,
                        self.config.worker)
        self.apply_job_files()
        self.sync_jobs()
        self.scheduler.add_job(self._tick, "interval", seconds=1, id="collector-tick",
                               executor="tick", misfire_grace_time=None)
        self.scheduler.start()
        self.notifier.ready(self._status())
        log.info("collector daemon %s started: %d jobs scheduled", self.config.worker,
                 len(self._scheduled))

    def apply_job_files(self) -> None:
        """Apply ``job_paths`` to the jobs table (files are the truth for their jobs)."""
        if not self.config.job_paths:
            return
        from collector.jobs import apply_jobs, read_jobs

        found = read_jobs(self.config.job_paths, local=False)
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
        wanted = {s.name: s.job for s in stored.jobs
                  if s.job.enabled and (s.job.every is not None or s.job.cron is not None)}
        for name in list(self._scheduled):
            if name not in wanted:
                self.scheduler.remove_job(name)
                del self._scheduled[name]
                log.info("job %s: no longer scheduled", name)
        for name, job in wanted.items():
            if self._scheduled.get(name) != job:
                self._schedule(job)
        self._marker = marker
        self.metrics.jobs.set(len(self._scheduled))
        self.notifier.status(self._status())

    def _schedule(self, job: JobSpec) -> None:
        from collector.daemon.trigger import FireTrigger

        fires = Fires(job)
        now = datetime.now(UTC)
        grace = fires.grace(now)
        latest = fires.latest(now)
        options: dict[str, object] = {}
        if latest is not None and now - latest <= grace:
            # Catch up the last fire once if it was missed (a claim tells if it ran).
            options["next_run_time"] = latest
        self.scheduler.add_job(self._fire, FireTrigger(fires), args=[job, fires], id=job.name,
                               name=job.name, replace_existing=True,
                               misfire_grace_time=max(1, int(grace.total_seconds())), **options)
        verb = "rescheduled" if job.name in self._scheduled else "scheduled"
        self._scheduled[job.name] = job
        upcoming = fires.next_after(None, now)
        log.info("job %s: %s, next fire %s", job.name, verb,
                 upcoming.isoformat() if upcoming is not None else "none")

    # -- a fire -----------------------------------------------------------------------------

    def _fire(self, job: JobSpec, fires: Fires) -> None:
        """Run by APScheduler's thread pool: claim this fire, run it, store it, log it."""
        if self.stopping.is_set():
            return
        scheduled_for = fires.latest(datetime.now(UTC))
        if scheduled_for is None:
            return
        with self._idle:
            self._active += 1
        try:
            self._run(job, scheduled_for)
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def _run(self, job: JobSpec, scheduled_for: datetime) -> None:
        try:
            outcome = collect(job.name, job.batch, store=self.store, trigger="schedule",
                              scheduled_for=scheduled_for, worker=self.config.worker,
                              stop=self.stop_batches, spool=self.spool,
                              offline=self.database_away.is_set())
        except ConfigError as exc:
            log.error("job %s: %s", job.name, exc)
            self.metrics.skipped.labels(job.name, "config").inc()
            return
        except StoreError as exc:
            log.warning("job %s: fire %s not claimed: %s", job.name, scheduled_for.isoformat(),
                        exc)
            self.metrics.skipped.labels(job.name, "database").inc()
            return
        except Exception:  # a bug in one fire must not stop the others
            log.exception("job %s: fire %s failed", job.name, scheduled_for.isoformat())
            self.metrics.skipped.labels(job.name, "error").inc()
            return
        if outcome.skipped is not None:
            log.debug("job %s: fire %s skipped: %s", job.name, scheduled_for.isoformat(),
                      outcome.skipped)
            self.metrics.skipped.labels(job.name, outcome.skipped).inc()
            return
        result = outcome.result
        assert result is not None
        self.metrics.batch(job.name, result, stored=outcome.stored)
        late_ms = round((result.started_at - scheduled_for).total_seconds() * 1000, 1)
        fields = {
            "job": job.name, "scheduled_for": scheduled_for.isoformat(),
            "batch_id": outcome.batch_id, "status": result.status,
            "requests": len(result.requests), "failed": result.requests_failed,
            "tcp_connections": result.tcp_connections,
            "duration_ms": round((result.finished_at - result.started_at).total_seconds()
                                 * 1000, 1),
            "late_ms": late_ms,
        }
        text = " ".join(f"{k}={v}" for k, v in fields.items())
        if outcome.transient:
            self.database_away.set()
        if outcome.spooled is not None:
            log.warning("batch spooled: %s: %s", text, outcome.store_error,
                        extra={"batch": {**fields, "spooled": str(outcome.spooled)}})
        elif outcome.spool_error is not None:
            self.metrics.spool_write_failures.inc()
            log.error("batch lost: %s: %s, and %s", text, outcome.store_error,
                      outcome.spool_error, extra={"batch": fields})
        elif outcome.store_error is not None:
            log.error("batch not stored: %s: %s", text, outcome.store_error,
                      extra={"batch": fields})
        else:
            log.info("batch %s", text, extra={"batch": fields})
        self._last_batch = f"{job.name} {result.status} at {result.finished_at:%H:%M:%S}"
        self.notifier.status(self._status())

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
            if now >= next_sync:
                next_sync = now + self.config.sync_interval
                self._guarded(self.sync_jobs, "reading the jobs table")
            if now >= next_beat:
                next_beat = now + self.config.heartbeat_interval
                self._guarded(self._heartbeat, "keeping the heartbeat")
                self._guarded(self._replay, "replaying the spool")
            interval = self.notifier.watchdog_interval
            if interval is not None and now >= next_ping and self.scheduler_alive():
                next_ping = now + interval
                self.notifier.watchdog()
            self.wake.wait(0.5)
            self.wake.clear()

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

    def _replay(self) -> None:
        """Store what the spool holds, oldest first, while the database answers."""
        depth = self.spool.depth()
        self.metrics.spool_depth.set(depth)
        if self.database_away.is_set():
            self.store.revision()  # raises while it is still away
            log.info("the database answers again")
            self.database_away.clear()
        if not depth:
            return
        done = self.spool.replay(self.store, limit=200)
        if done.stored or done.duplicates or done.rejected:
            log.info("spool: %d stored, %d there already, %d rejected, %d left", done.stored,
                     done.duplicates, done.rejected, done.left)
        self.metrics.spool_depth.set(done.left)

    def _heartbeat(self) -> None:
        try:
            self.store.heartbeat(self.config.worker)
        except StoreError:
            self.database_away.set()
            raise
        abandoned = self.store.abandon_stale(timedelta(seconds=self.config.heartbeat_timeout))
        if abandoned:
            log.warning("marked %d batches abandoned: their workers stopped beating", abandoned)

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
        deadline = time.monotonic() + self.config.shutdown_timeout
        with self._idle:
            while self._active and time.monotonic() < deadline:
                self._idle.wait(deadline - time.monotonic())
            if self._active:
                log.warning("%d batches still running after %gs: stopping them", self._active,
                            self.config.shutdown_timeout)
                self.stop_batches.set()
                self._idle.wait_for(lambda: not self._active, timeout=60)
        try:
            self.store.worker_stopped(self.config.worker)
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
