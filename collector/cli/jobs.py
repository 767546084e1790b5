"""``collector jobs``: job files checked and applied, jobs listed, added, switched, removed."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from collector.cli.options import (
    BatchOptions,
    DbOption,
    Format,
    FormatOption,
    batch_options,
    open_db,
)
from collector.cli.render import printable, records
from collector.errors import ConfigError, JobFilesInvalid, NoDatabase

if TYPE_CHECKING:
    from collector.apply import Action

app = typer.Typer(help="Manage jobs: from job files (validate, apply) or one by one.",
                  no_args_is_help=True)

_Paths = Annotated[list[Path], typer.Argument(
    metavar="PATH...", help="Job files, or folders searched for *.toml files.")]
_Name = Annotated[str, typer.Argument(metavar="NAME", help="The job's name.")]


def _shown(source: str) -> str:
    """A job's source relative to the current folder when it is below it."""
    if source == "cli":
        return source
    try:
        return str(Path(source).relative_to(Path.cwd()))
    except ValueError:
        return source


def _report_mistakes(exc: JobFilesInvalid) -> None:
    for error in exc.errors:
        typer.echo(f"collector: error: {error}", err=True)


@app.command()
def validate(paths: _Paths) -> None:
    """Check job files without touching the database; exit 2 listing every mistake."""
    from collector.apply import load_jobs  # here: --help need not import the job files' parser

    try:
        found = load_jobs(paths)
    except JobFilesInvalid as exc:
        _report_mistakes(exc)
        raise
    files = len(found.files)
    typer.echo(f"{len(found.jobs)} job{'s' * (len(found.jobs) != 1)} in {files} "
               f"file{'s' * (files != 1)}: all valid")


@app.command()
def apply(
    paths: _Paths,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print what would change and change nothing.")] = False,
    prune: Annotated[bool, typer.Option(
        "--prune", help="Remove jobs that came from these paths and are no longer in them.")]
        = False,
    db: DbOption = None,
) -> None:
    """Create or update jobs from job files (the files are the source of truth)."""
    from collector.apply import apply_jobs, load_jobs, plan_apply
    from collector.store import StoredJobs

    try:
        found = load_jobs(paths, local=False)  # before the database: a mistake creates nothing
    except JobFilesInvalid as exc:
        _report_mistakes(exc)
        raise
    for problem in found.errors:  # right, but not usable on this machine
        typer.echo(f"collector: warning: {problem} on this machine (stored all the same: "
                   "its batches fail where the file is missing)", err=True)
    if dry_run:
        try:
            with open_db(db, create=False) as store:
                plan = apply_jobs(store, paths, prune=prune, dry_run=True, found=found)
        except NoDatabase:  # nothing stored yet: every job would be created
            plan = plan_apply(StoredJobs(jobs=[], broken=[]), found, paths, prune=prune)
    else:
        with open_db(db) as store:
            plan = apply_jobs(store, paths, prune=prune, found=found)
    verbs: dict[Action, str] = {"create": "created", "update": "updated",
                                "unchanged": "unchanged", "remove": "removed"}
    if dry_run:
        verbs = {"create": "would create", "update": "would update",
                 "unchanged": "unchanged", "remove": "would remove"}
    for change in plan.changes:
        detail = f": {change.detail}" if change.detail else ""
        typer.echo(f"{verbs[change.action]:<13} {change.name} ({_shown(change.source)}){detail}")
    summary = ", ".join(f"{plan.count(a)} {verbs[a]}" for a in verbs if plan.count(a))
    typer.echo(f"{summary or 'no jobs'}{' (dry run: nothing was changed)' if dry_run else ''}")


@app.command("list")
def list_(db: DbOption = None, fmt: FormatOption = Format.table) -> None:
    """List the stored jobs: schedule, enabled, target, where each came from."""
    with open_db(db, create=False) as store:
        stored = store.jobs()
    rows = [{"name": s.name, "enabled": s.job.enabled, "schedule": s.schedule,
             "url": s.job.batch.url, "queries": len(s.job.batch.queries) or 1,
             "source": s.source if fmt != "table" else _shown(s.source),
             "created_at": s.created_at, "updated_at": s.updated_at} for s in stored.jobs]
    typer.echo(records(rows, fmt, columns=["name", "enabled", "schedule", "queries", "url",
                                           "source"], right=frozenset({"queries"})))
    for broken in stored.broken:  # listed apart, so the others stay usable
        typer.echo(f"collector: warning: {broken}", err=True)


@app.command()
def show(name: _Name, db: DbOption = None) -> None:
    """Print a stored job as a job file table (save it to a .toml file to edit it).

    Values of the fields it lists under redact are shown as REDACTED.
    """
    import dataclasses

    from collector.definition import job_to_toml
    from collector.references import redacted

    with open_db(db, create=False) as store:
        stored = store.job(name)
    typer.echo(f"# source: {printable(stored.source)}; created "
               f"{stored.created_at:%Y-%m-%d %H:%M:%S} UTC, updated "
               f"{stored.updated_at:%Y-%m-%d %H:%M:%S} UTC")
    if stored.job.batch.redact:
        typer.echo("# the values of redacted fields are not shown: keep the job file")
    job = dataclasses.replace(stored.job, batch=redacted(stored.job.batch))
    typer.echo(job_to_toml(job), nl=False)


@app.command()
@batch_options
def add(
    name: _Name,
    batch: BatchOptions,
    every: Annotated[str | None, typer.Option(
        metavar="DURATION", help="Run every 30s, 5m, 1h ...")] = None,
    cron: Annotated[str | None, typer.Option(
        metavar="'M H DOM MON DOW'", help="Run on a crontab schedule, e.g. '*/5 * * * *'.")]
        = None,
    timezone: Annotated[str, typer.Option(
        metavar="ZONE", help="The time zone of a cron schedule.")] = "UTC",
    jitter: Annotated[str | None, typer.Option(
        metavar="DURATION", help="Spread the job's runs by up to this much.")] = None,
    disabled: Annotated[bool, typer.Option(
        "--disabled", help="Store the job without scheduling it.")] = False,
    db: DbOption = None,
) -> None:
    """Add a job without a job file (its source is "cli")."""
    from collector.jobfile import job_from_options

    if batch.url is None:
        raise ConfigError("--url is required")
    if (every is None) == (cron is None):
        raise ConfigError("give the schedule with --every or --cron (one of them)")
    job = job_from_options(name, {**batch.values(), "every": every, "cron": cron,
                                  "timezone": timezone, "jitter": jitter,
                                  "enabled": not disabled})
    with open_db(db) as store:
        store.add_job(job)
    typer.echo(f"added {job.name}")


@app.command()
def enable(name: _Name, db: DbOption = None) -> None:
    """Enable a job, so the daemon runs it on its schedule."""
    with open_db(db, create=False) as store:
        changed = store.set_enabled(name, True)
    typer.echo(f"{'enabled' if changed else 'already enabled:'} {name}")


@app.command()
def disable(name: _Name, db: DbOption = None) -> None:
    """Disable a job: kept, and runnable with run-once, but not scheduled."""
    with open_db(db, create=False) as store:
        changed = store.set_enabled(name, False)
    typer.echo(f"{'disabled' if changed else 'already disabled:'} {name}")


@app.command()
def remove(name: _Name, db: DbOption = None) -> None:
    """Remove a job. Its batches stay in the database."""
    with open_db(db, create=False) as store:
        store.remove_job(name)
    typer.echo(f"removed {name} (its batches are kept)")

