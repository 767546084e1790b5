"""The collect step that ``run-once``, ``demo`` and the daemon share.

:func:`collect` takes a batch spec with ``${VAR}`` as written, fills the
references in (:mod:`collector.references`: in memory, for this run alone; what
is stored and shown keeps the references), claims the
fire when it has a scheduled time, runs the batch through one pool, stores it
and says what happened in an :class:`Outcome`. A batch that ran but could not
be stored is not an exception here: the outcome carries the result and the
reason, so the caller can show it (and, later, spool it).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from collector.errors import DatabaseUnavailable, DataRejected, SpoolFull, StoreError
from collector.references import prepare
from collector.results import BatchResult, Trigger
from collector.settings import worker_id
from collector.spec import BatchSpec
from collector.spool import Spool, Spooled, new_batch_key

if TYPE_CHECKING:
    from collector.runner import OnRequest
    from collector.store import Store

@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What one collect step did.

    - stored: ``result`` and ``batch_id`` are set;
    - ran but not stored: ``result`` and ``store_error`` are set (``store`` was
      given and could not take it; ``transient`` says whether trying again may work);
    - ran without a store: only ``result``;
    - skipped: nothing ran, ``result`` is None; ``skipped`` says why: another
      worker claimed the fire, or the job's previous batch is still running.
    """

    job_name: str
    result: BatchResult | None = None
    batch_id: int | None = None
    store_error: StoreError | None = None
    skipped: Literal["claimed_elsewhere", "previous_running"] | None = None
    spooled: Path | None = None  # where the batch waits for the database
    spool_error: SpoolFull | None = None  # it should have been spooled and could not be

    @property
    def stored(self) -> bool:
        return self.batch_id is not None

    @property
    def claimed_elsewhere(self) -> bool:
        return self.skipped == "claimed_elsewhere"

    @property
    def transient(self) -> bool:
        """Whether the store's failure was an outage (worth keeping the batch for later)."""
        return isinstance(self.store_error, DatabaseUnavailable)


def collect(job_name: str, batch: BatchSpec, *, store: Store | None,
            trigger: Trigger = "manual", scheduled_for: datetime | None = None,
            environ: Mapping[str, str] = os.environ, where: str | None = None,
            on_request: OnRequest | None = None, worker: str | None = None,
            stop: threading.Event | None = None, spool: Spool | None = None) -> Outcome:
    """Expand, (claim,) run and store one batch of ``job_name``.

    ``store`` None runs without storing. With ``scheduled_for`` the fire is
    claimed (by ``worker``) before anything is sent; it is skipped when
    another worker claimed it, or while a batch of the job runs anywhere.
    ``stop`` ends the batch early (see :func:`~collector.runner.run_batch`).
    With a ``spool``, a batch the database cannot take now (and a fire that
    could not be claimed because the database is away, run anyway) is kept
    there, to be stored when the database answers.
    Raises ConfigError for an environment variable that is not set (before
    anything runs) and StoreError when the claim itself cannot be made.
    """
    from collector.runner import run_batch

    prepared = prepare(batch, environ, where=where or f'job "{job_name}"')
    worker = worker or worker_id()
    claimed: int | None = None
    unclaimed: DatabaseUnavailable | None = None
    if store is not None and scheduled_for is not None:
        try:
            won = store.claim(job_name, batch, scheduled_for=scheduled_for,
                                        worker=worker)
            if won == "busy":
                return Outcome(job_name=job_name, skipped="previous_running")
            claimed = won
        except DatabaseUnavailable as exc:
            if spool is None:
                raise
            # The database is away: run the fire anyway and spool it. If another
            # daemon ran it too, the first result stored wins on replay.
            unclaimed = exc
        else:
            if claimed is None:
                return Outcome(job_name=job_name, skipped="claimed_elsewhere")
    result = prepared.scrub(run_batch(prepared.ready, shown=prepared.shown,
                                      on_request=on_request, stop=stop))
    if store is None:
        return Outcome(job_name=job_name, result=result)
    batch_key = new_batch_key()
    try:
        if unclaimed is not None:
            raise unclaimed
        if claimed is not None:
            if not store.complete(claimed, result):
                raise DataRejected(store.url, f"batch {claimed} is no longer running")
            batch_id: int | None = claimed
        else:
            batch_id = store.save_batch(result, job_name=job_name, trigger=trigger,
                                        worker=worker, batch_key=batch_key)
    except StoreError as exc:
        spooled = None
        if spool is not None and isinstance(exc, DatabaseUnavailable):
            try:
                spooled = spool.put(Spooled(
                    batch_key=batch_key, job_name=job_name, trigger=trigger,
                    scheduled_for=scheduled_for, claimed=claimed, worker=worker,
                    result=result, database=store.url))
            except OSError as spool_exc:  # a full disk, a read-only folder: the batch is lost
                return Outcome(job_name=job_name, result=result, store_error=exc,
                               spool_error=SpoolFull(spool.folder, spool_exc))
        return Outcome(job_name=job_name, result=result, store_error=exc, spooled=spooled)
    return Outcome(job_name=job_name, result=result, batch_id=batch_id)
