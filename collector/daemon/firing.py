"""The daemon's fire path, from APScheduler's decision to a stored batch or a counted skip.

APScheduler says when (its triggers, its loop); everything after is collector's::

    APScheduler loop ──FireExecutor──▶ claims thread ──▶ batch threads ──▶ writer thread
       (fire times)     (grace check)   (one statement     (run_batch)      (one commit for
                                         per tick)                           what finished)

- :class:`FireExecutor` takes APScheduler's run times for a job without
  APScheduler's own misfire and max-instances logic (which drop fires
  silently): a fire past its grace time is a counted skip (``late``), anything
  else goes to the claims queue at once, so APScheduler's loop never waits.
- :class:`Skips` counts every skip by job and reason and logs it at INFO: the
  first of a job and reason at once, then one line a minute with how many.
- :class:`Clock` is the database's clock as this daemon sees it: the local
  clock corrected by the offset measured against the database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.executors.base import BaseExecutor

from collector.spec import JobSpec

if TYPE_CHECKING:
    from collector.metrics import Metrics
    from collector.references import Prepared
    from collector.results import BatchResult

log = logging.getLogger("collector.daemon")

# Why a fire was not run here (the reason label of collector_fires_skipped_total).
SKIP_REASONS = {
    "claimed_elsewhere": "claimed by another daemon",
    "previous_running": "previous batch still running",
    "late": "past its grace time (the next fire was due)",
    "spool_full": "database away and the spool could not keep it",
    "stopping": "the daemon was stopping",
    "config": "its job cannot run (see the error)",
    "database": "the database refused the claim",
    "error": "a bug (see the traceback)",
}

# Counted, logged at DEBUG: in a cluster, every fire is claimed elsewhere on all but one.
QUIET = frozenset({"claimed_elsewhere"})


@dataclass(eq=False, slots=True)
class Fire:
    """One fire on its way: claimed (``batch_id``) or run without a claim (``offline``)."""

    job: JobSpec
    scheduled_for: datetime
    start_by: datetime  # the end of its grace time: its claim may not take longer
    prepared: Prepared | None = None
    batch_id: int | None = None
    offline: bool = False
    result: BatchResult | None = None
    early: bool = False  # claimed ahead of its time


class Clock:
    """The database's time as this daemon sees it: local time plus the measured offset.

    ``offset`` is the database's clock minus this host's; 0 until measured.
    """

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def to_local(self, at: datetime) -> datetime:
        return at - self.offset

    def to_database(self, at: datetime) -> datetime:
        return at + self.offset


class Skips:
    """Skipped fires counted (metric, by job and reason) and logged at INFO, a line a
    minute per job and reason at most: the first at once, then how many since."""

    def __init__(self, metrics: Metrics, every: float = 60.0) -> None:
        self.metrics = metrics
        self.every = every
        self._lock = threading.Lock()
        self._pending: Counter[tuple[str, str]] = Counter()
        self._last_logged: dict[tuple[str, str], float] = {}

    def skip(self, job: str, reason: str, scheduled_for: datetime | None = None) -> None:
        self.metrics.skipped.labels(job, reason).inc()
        # Every skip at DEBUG, with its fire; at INFO, the summaries below.
        log.debug("job %s: fire %s skipped: %s", job,
                  scheduled_for.isoformat() if scheduled_for else "-", SKIP_REASONS[reason],
                  extra={"skipped": {"job": job, "reason": reason, "scheduled_for":
                                     scheduled_for.isoformat() if scheduled_for else None}})
        if reason in QUIET:
            return
        key = (job, reason)
        now = time.monotonic()
        with self._lock:
            last = self._last_logged.get(key)
            if last is not None and now - last < self.every:
                self._pending[key] += 1
                return
            self._last_logged[key] = now
            earlier = self._pending.pop(key, 0)
        at = f" {scheduled_for.isoformat()}" if scheduled_for is not None else ""
        more = f" (and {earlier} more since the last line)" if earlier else ""
        log.info("job %s: fire%s skipped: %s%s", job, at, SKIP_REASONS[reason], more,
                 extra={"skip": {"job": job, "reason": reason, "count": earlier + 1}})

    def flush(self) -> None:
        """Log what was counted and not yet said (a minute passed, or the daemon stops)."""
        now = time.monotonic()
        with self._lock:
            due = [(key, n) for key, n in self._pending.items()
                   if now - self._last_logged[key] >= self.every or self.every == 0]
            for key, _ in due:
                del self._pending[key]
                self._last_logged[key] = now
        for (job, reason), count in due:
            log.info("job %s: %d fires skipped in the last minute: %s", job, count,
                     SKIP_REASONS[reason],
                     extra={"skip": {"job": job, "reason": reason, "count": count}})

    def flush_all(self) -> None:
        self.every = 0
        self.flush()


class FireExecutor(BaseExecutor):  # type: ignore[misc]  # APScheduler 3 has no type hints
    """An APScheduler executor that hands fires to ``accept`` and keeps no instances.

    APScheduler's ``submit_job`` would count instances and refuse past
    ``max_instances``, and its ``run_job`` would drop fires past
    ``misfire_grace_time`` with a warning; neither happens here. Each job's
    ``args`` are (JobSpec, FireTrigger). ``run_times`` are every fire time
    APScheduler found due (jobs are added with ``coalesce=False``).
    """

    def __init__(self, accept: Callable[[JobSpec, Any, list[datetime]], None]) -> None:
        super().__init__()
        self._accept = accept

    def submit_job(self, job: Any, run_times: list[datetime]) -> None:
        spec, trigger = job.args
        self._accept(spec, trigger, run_times)

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        raise NotImplementedError("FireExecutor.submit_job hands fires over itself")
