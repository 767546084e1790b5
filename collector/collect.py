"""The collect step: run a batch, and the one path from a finished batch to the database.

:func:`collect` (``run-once``, ``demo``) takes a batch spec with ``${VAR}`` as
written, fills the references in (:mod:`collector.references`: in memory, for
this run alone; what is stored and shown keeps the references), runs the batch
through one pool and records it. :func:`record` is what the daemon's writer
calls too, for the fires it claimed and ran: the batches go to
``Store.record`` in one transaction, and to the spool only when the database
is unavailable. A batch that ran but could not be stored is not an exception
here: its :class:`Outcome` carries the result and the reason, so the caller
can show it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from collector.errors import DatabaseUnavailable, DataRejected, SpoolFull, StoreError
from collector.references import Prepared, prepare
from collector.results import BatchResult, Known, PendingBatch, Trigger, new_batch_key
from collector.settings import worker_id
from collector.spec import BatchSpec

if TYPE_CHECKING:
    from collector.runner import OnRequest
    from collector.spool import Spool
    from collector.store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What became of one batch that ran.

    - stored: ``batch_id`` is set;
    - not stored: ``store_error`` is set (``.transient``: the database was away, and the
      batch waits in the spool at ``spooled``, or ``spool_error`` says why it could not);
    - run without a store: neither.
    """

    batch: PendingBatch  # what ran, as it is (or would be) recorded
    batch_id: int | None = None
    store_error: StoreError | None = None
    spooled: Path | None = None  # where the batch waits for the database
    spool_error: SpoolFull | None = None  # it should have been spooled and could not be

    @property
    def job_name(self) -> str:
        return self.batch.job_name

    @property
    def result(self) -> BatchResult:
        return self.batch.result

    @property
    def stored(self) -> bool:
        return self.batch_id is not None

    @property
    def transient(self) -> bool:
        """Whether the store's failure was an outage (worth keeping the batch for later)."""
        return self.store_error is not None and self.store_error.transient


def collect(job_name: str, batch: BatchSpec, *, store: Store | None,
            trigger: Trigger = "manual", environ: Mapping[str, str] = os.environ,
            where: str | None = None, on_request: OnRequest | None = None,
            worker: str | None = None, stop: threading.Event | None = None,
            spool: Spool | None = None) -> Outcome:
    """Expand, run and record one batch of ``job_name``.

    ``store`` None runs without storing. ``stop`` ends the batch early (see
    :func:`~collector.runner.run_batch`). With a ``spool``, a batch the database
    cannot take now is kept there, to be stored when the database answers.
    Raises ConfigError for an environment variable that is not set (before
    anything runs).
    """
    from collector.runner import run_batch

    prepared = prepare(batch, environ, where=where or f'job "{job_name}"')
    progress = None if on_request is None else (
        lambda request: on_request(prepared.show_request(request)))
    result = prepared.show(run_batch(prepared.ready, on_request=progress, stop=stop,
                                     known=known(store, job_name, prepared)))
    pending = PendingBatch(result=result, job_name=job_name, trigger=trigger,
                           worker=worker or worker_id(), batch_key=new_batch_key())
    if store is None:
        return Outcome(batch=pending)
    (outcome,) = record(store, [pending], spool=spool)
    return outcome


def wants_known(spec: BatchSpec) -> bool:
    """Whether a batch of ``spec`` needs what its job last got for each query."""
    return spec.conditional or spec.keep_bodies == "changed"


def known(store: Store | None, job_name: str, prepared: Prepared, *,
          timeout: float | None = None) -> tuple[Known | None, ...]:
    """What the job last got for each of the batch's queries, by position, when the job
    asks for it (:func:`wants_known`); () otherwise. A database that does not answer
    leaves it unknown: the batch asks unconditionally, keeps every body, and says so in
    the log."""
    spec = prepared.shown
    if store is None or not wants_known(spec):
        return ()
    found = last_got(store, job_name, spec.url, timeout=timeout)
    return () if found is None else by_position(found, prepared)


def last_got(store: Store, job_name: str, url: str, *,
             timeout: float | None = None) -> dict[str, Known] | None:
    """What the job last got for each query (by the query as stored), or None, said in
    the log, when the database does not answer: its batch then asks for every query in
    full and keeps every body."""
    try:
        return store.known(job_name, url, timeout=timeout)
    except StoreError as exc:
        log.warning("job %s: what it last got is unknown, so its batch asks for every "
                    "query in full: %s", job_name, exc)
        return None


def by_position(found: Mapping[str, Known], prepared: Prepared) -> tuple[Known | None, ...]:
    """``found`` (by the query as stored) for each of the batch's requests, in order."""
    return tuple(found.get(query) for query in prepared.stored_queries())


def remember(found: dict[str, Known], result: BatchResult) -> None:
    """What ``result`` got for each query, into ``found`` (the latest wins): a 200's
    content and validators, or the content a 304 confirmed."""
    for r in result.requests:
        if r.content_sha256 is not None:
            found[r.query] = Known(content_sha256=r.content_sha256, etag=r.etag,
                                   last_modified=r.last_modified)


def record(store: Store, batches: Sequence[PendingBatch], *, spool: Spool | None,
           away: DatabaseUnavailable | None = None) -> list[Outcome]:
    """Record ``batches`` in one transaction; what became of each, in order.

    A batch the database refuses is found by recording them one at a time (the
    others are stored); when the database is unavailable (or ``away`` says it is
    known to be, so nothing is tried) each batch not yet stored goes to ``spool``,
    when given.
    """
    errors: dict[int, StoreError] = {}
    ids: list[int | None] = [None] * len(batches)
    if away is None:
        try:
            ids = store.record(batches)
        except DatabaseUnavailable as exc:
            away = exc
        except StoreError:
            for i, batch in enumerate(batches):
                try:
                    (ids[i],) = store.record([batch])
                except DatabaseUnavailable as exc:  # gone meanwhile: the rest need not wait
                    errors.update(dict.fromkeys(range(i, len(batches)), exc))
                    break
                except StoreError as exc:
                    errors[i] = exc
    if away is not None:
        errors = dict.fromkeys(range(len(batches)), away)
    outcomes = []
    for i, batch in enumerate(batches):
        error = errors.get(i)
        if error is None and ids[i] is None:
            error = DataRejected(store.url, f"batch {batch.claimed} is no longer running"
                                 if batch.claimed is not None
                                 else f"batch {batch.batch_key} is stored already")
        outcomes.append(_outcome(store, batch, ids[i], error, spool))
    return outcomes


def _outcome(store: Store, batch: PendingBatch, batch_id: int | None,
             error: StoreError | None, spool: Spool | None) -> Outcome:
    if error is None:
        return Outcome(batch=batch, batch_id=batch_id)
    if spool is None or not error.transient:
        return Outcome(batch=batch, store_error=error)
    try:
        spooled = spool.put(batch, database=store.url)
    except OSError as exc:  # a full disk, a read-only folder: the batch is lost
        return Outcome(batch=batch, store_error=error, spool_error=SpoolFull(spool.folder, exc))
    return Outcome(batch=batch, store_error=error, spooled=spooled)
