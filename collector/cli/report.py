"""``collector report``, ``batches``, ``show`` and ``prune``: reading and trimming history."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from collector.cli.options import DbOption, Format, FormatOption, open_db, whole
from collector.cli.render import (
    batch_document,
    batch_table,
    colour_wanted,
    records,
    sparkline,
)
from collector.errors import ConfigError, StoreError
from collector.quantities import parse_duration, parse_since

if TYPE_CHECKING:
    from collector.report import Filters

JobFilter = Annotated[str | None, typer.Option(
    "--job", metavar="NAME", help="Only this job's batches.")]
SinceFilter = Annotated[str | None, typer.Option(
    "--since", metavar="WHEN", help="Only batches started since: 24h, 7d, or a date "
                                    "like 2026-11-01 (UTC).")]

# A failed batch (no responses) shows as ×, one with some failed requests as !.
MARKS = {"failed": "×", "partial": "!"}
# What collector report's table shows, and the headings.
REPORT_COLUMNS = {
    "job_name": "job", "batches": "batches", "requests": "requests", "status_2xx": "2xx",
    "status_3xx": "3xx", "status_4xx": "4xx", "status_5xx": "5xx", "no_response": "none",
    "p50_ms": "p50_ms", "p95_ms": "p95_ms", "max_ms": "max_ms",
    "mean_body_length": "mean_bytes", "requests_per_connection": "req/conn",
    "checks_pass_pct": "checks_%", "last_started_at": "last batch", "last_status": "last",
    "trend": "trend",
}


def _filters(job: str | None, since: str | None) -> Filters:
    from collector.report import Filters

    if since is None:
        return Filters(job=job)
    try:
        return Filters(job=job, since=parse_since(since, datetime.now(UTC)))
    except ValueError as exc:
        raise ConfigError(f"--since: {exc}") from None


def report(job: JobFilter = None, since: SinceFilter = None, db: DbOption = None,
           fmt: FormatOption = Format.table) -> None:
    """How each job did: answers by status class, times, body size, connection re-use.

    The trend column has one mark per recent batch (oldest first): a bar for
    its median time, × for a batch with no responses, ! for one with failures.
    """
    from collector.report import job_summaries

    filters = _filters(job, since)
    with open_db(db, create=False) as store:
        summaries = job_summaries(store, filters)
    rows = [s.as_record() for s in summaries]
    for summary, row in zip(summaries, rows, strict=True):
        if fmt == Format.table:
            row["trend"] = sparkline([p.p50_ms for p in summary.trend],
                                     [MARKS.get(p.status, "") for p in summary.trend])
        elif fmt == Format.json:
            row["trend"] = [{"p50_ms": p.p50_ms, "status": p.status} for p in summary.trend]
    typer.echo(records(rows, fmt, columns=REPORT_COLUMNS,
                       right=frozenset(list(REPORT_COLUMNS)[1:14]),
                       kinds={"status_5xx": "bad", "no_response": "bad", "last_status": "status"},
                       colour=colour_wanted(sys.stdout)))


def batches(job: JobFilter = None, since: SinceFilter = None,
            limit: Annotated[int, typer.Option(parser=whole("--limit", 1, 1_000_000),
                                               metavar="N",
                                               help="Show at most N batches.")] = 20,
            db: DbOption = None, fmt: FormatOption = Format.table) -> None:
    """Batch history, newest first: status, requests, connections."""
    from collector.report import batch_history

    filters = _filters(job, since)
    with open_db(db, create=False) as store:
        history = batch_history(store, filters, limit=limit)
    rows = [dict(b.__dict__) for b in history]
    typer.echo(records(rows, fmt, right=frozenset({"id", "requests", "failed",
                                                   "num_connections", "num_requests",
                                                   "tcp_connections", "duration_ms"}),
                       kinds={"status": "status", "failed": "bad"},
                       colour=colour_wanted(sys.stdout)))


def show(batch_id: Annotated[int, typer.Argument(metavar="BATCH_ID",
                                                 parser=whole("BATCH_ID", 1, 2**63 - 1),
                                                 help="The batch's id.")],
         db: DbOption = None, fmt: FormatOption = Format.table) -> None:
    """One stored batch: its connection counts and a row per request."""
    with open_db(db, create=False) as store:
        batch = store.load_batch(batch_id)
        where = store.url
    result = batch.result
    if result is None:
        typer.echo(f"batch {batch.id} of {batch.job_name}: {batch.status} since "
                   f"{batch.started_at:%Y-%m-%d %H:%M:%S} UTC on {batch.worker}, "
                   "no results stored")
        return
    if fmt == Format.table:
        typer.echo(batch_table(result, job_name=batch.job_name, batch_id=batch.id,
                               where=where, status=batch.status,
                               colour=colour_wanted(sys.stdout)))
        return
    if fmt == Format.json:
        typer.echo(batch_document(batch.id, batch.columns, result))
    else:
        rows = [{**row, "failed_attempts": json.dumps(row["failed_attempts"])}
                for row in (r.to_dict() for r in result.requests)]
        typer.echo(records(rows, "csv"))


_SHA256 = re.compile(r"[0-9a-f]{64}\Z")


def body(sha256: Annotated[str, typer.Argument(
             metavar="SHA256", help="The body's hash, as requests.body_sha256 (or "
                                    "content_sha256) names it.")],
         out: Annotated[Path | None, typer.Option(
             "--out", metavar="FILE", help="Write it to this file instead of stdout.")]
         = None,
         db: DbOption = None) -> None:
    """Write a kept body (keep_bodies) back, byte for byte as the server sent it."""
    import hashlib

    wanted = sha256.strip().lower()
    if not _SHA256.match(wanted):
        raise ConfigError(f"SHA256: {sha256!r} is not a SHA-256 (64 hexadecimal digits)")
    with open_db(db, create=False) as store:
        data = store.body(wanted)
    if hashlib.sha256(data).hexdigest() != wanted:
        raise StoreError(f"database {store.url}: the body stored as {wanted} does not match "
                         "its hash: it was changed after it was stored")
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    try:
        out.write_bytes(data)
    except OSError as exc:
        raise ConfigError(f"--out: cannot write {out}: {exc.strerror or exc}") from None


def prune(
    older_than: Annotated[str, typer.Option(
        "--older-than", metavar="AGE", help="Delete batches started longer ago than this: "
                                            "90d, 12h ...")],
    job: Annotated[str | None, typer.Option(
        "--job", metavar="NAME", help="Only this job's batches (a removed job's too).")]
        = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Count what would be deleted and delete nothing.")] = False,
    db: DbOption = None,
) -> None:
    """Delete old batches and their requests (jobs are kept)."""
    try:
        before = datetime.now(UTC) - timedelta(seconds=parse_duration(older_than))
    except ValueError as exc:
        raise ConfigError(f"--older-than: {exc}") from None
    with open_db(db, create=False) as store:
        n_batches, n_requests = store.prune(before, dry_run=dry_run, job=job)
    verb = "would delete" if dry_run else "deleted"
    of = f" of {job}" if job is not None else ""
    typer.echo(f"{verb} {n_batches} batches{of} and {n_requests} requests started before "
               f"{before:%Y-%m-%d %H:%M:%S} UTC")
