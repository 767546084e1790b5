"""``collector run``: the daemon, in the foreground (systemd runs it as a service)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from collector.cli.options import DbOption, one_of, whole
from collector.errors import ConfigError, JobFilesInvalid
from collector.quantities import DAY, parse_duration


class LogFormat(StrEnum):
    text = "text"
    json = "json"


class LogLevel(StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"


def _seconds(option: str, text: str, maximum: float = DAY) -> float:
    try:
        return parse_duration(text, maximum=maximum)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None


def _age(option: str, text: str) -> float:
    age = _seconds(option, text, maximum=100 * 366 * DAY)
    if age < 3600:
        raise ConfigError(f"{option}: {text!r} keeps less than an hour of history (at least "
                          "1h: a retention prunes what the daemon just stored otherwise)")
    return age


def run(
    jobs: Annotated[list[Path] | None, typer.Option(
        "--jobs", metavar="PATH",
        help="Job files or folders to apply at start and on SIGHUP (systemctl reload); "
             "repeatable. Without it, the jobs table as it is.")] = None,
    db: DbOption = None,
    workers: Annotated[int, typer.Option(
        parser=whole("--workers", 1, 1000), metavar="N",
        help="Batches this daemon runs at once.")] = 4,
    shutdown_timeout: Annotated[str, typer.Option(
        metavar="DURATION", help="On SIGTERM, how long running batches may go on before "
                                 "they stop (what they collected is stored).")] = "30s",
    heartbeat_timeout: Annotated[str, typer.Option(
        metavar="DURATION", help="A daemon silent this long is taken for dead and its running "
                                 "batches are marked abandoned.")] = "30s",
    db_timeout: Annotated[str, typer.Option(
        metavar="DURATION", help="How long a database call may take before the database is "
                                 "taken for away: batches are then spooled.")] = "5s",
    retention: Annotated[str | None, typer.Option(
        metavar="AGE", envvar="COLLECTOR_RETENTION",
        help="Keep this much history (90d ...): older batches are pruned at start and "
             "then daily. Without it, history is kept until collector prune.")] = None,
    metrics_port: Annotated[int | None, typer.Option(
        parser=whole("--metrics-port", 0, 65535), metavar="PORT",
        help="Serve Prometheus metrics on this port (0: any free port).")] = None,
    metrics_address: Annotated[str, typer.Option(
        metavar="ADDRESS", help="The address the metrics listen on.")] = "127.0.0.1",
    log_format: Annotated[LogFormat, typer.Option(
        parser=one_of("--log-format", LogFormat), metavar="text|json",
        help="text (journald adds the time) or json (one object per line).")] = LogFormat.text,
    log_level: Annotated[LogLevel, typer.Option(
        parser=one_of("--log-level", LogLevel), metavar="debug|info|warning|error",
        help="The least important to log.")] = LogLevel.info,
) -> None:
    """Run every enabled job on its schedule until stopped (SIGTERM or Ctrl-C; SIGHUP reloads).

    Several daemons, on one host or many, may share one database: each fire of
    a job is claimed by one of them and run once.
    """
    from collector.daemon.daemon import DaemonConfig
    from collector.daemon.daemon import run as run_daemon
    from collector.daemon.logs import setup_logging
    from collector.daemon.notify import Notifier
    from collector.metrics import Metrics

    config = DaemonConfig(
        job_paths=tuple(jobs or ()), workers=workers,
        shutdown_timeout=_seconds("--shutdown-timeout", shutdown_timeout),
        heartbeat_timeout=_seconds("--heartbeat-timeout", heartbeat_timeout),
        heartbeat_interval=min(5.0, _seconds("--heartbeat-timeout", heartbeat_timeout) / 3),
        metrics_port=metrics_port, metrics_address=metrics_address,
        retention=None if retention is None else _age("--retention", retention),
    )
    operation_timeout = _seconds("--db-timeout", db_timeout)
    from collector.cli.options import database_url
    from collector.store import open_store

    url = database_url(db)  # every option checked before anything starts
    try:
        if config.job_paths:  # and the job files: a mistake creates no database
            from collector.apply import load_jobs

            load_jobs(config.job_paths, local=False)
        metrics = Metrics()
        if metrics_port is not None:  # and the address can be listened on
            metrics.serve(metrics_port, metrics_address)
        setup_logging(log_format.value, log_level.value)
        # A daemon waits on its database for --db-timeout at most, then spools and goes on.
        try:
            with open_store(url, operation_timeout=operation_timeout) as store:
                run_daemon(store, config, notifier=Notifier(), metrics=metrics)
        finally:
            metrics.close()
    except JobFilesInvalid as exc:
        for error in exc.errors:
            typer.echo(f"collector: error: {error}", err=True)
        raise
