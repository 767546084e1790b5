"""A job as the ``jobs`` table keeps it, and as TOML to edit.

The stored definition is the job's job-file keys with every default filled
in and ``${VAR}`` as written (never the value). Reading it back checks
structure only: a ``ca_file`` another host wrote need not exist here, and is
checked when the batch runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from collector.errors import InvalidDefinition
from collector.jobkeys import job_from_table
from collector.quantities import format_duration
from collector.spec import DEFAULT_RETRY_AFTER_MAX, JobSpec


def job_definition(job: JobSpec) -> dict[str, Any]:
    """The job as job-file keys with every default filled in: what the ``jobs`` table keeps.

    :func:`job_from_definition` reads it back.
    """
    batch = job.batch
    timeout = {"connect": format_duration(batch.timeout.connect),
               "read": format_duration(batch.timeout.read)}
    if batch.timeout.total is not None:
        timeout["total"] = format_duration(batch.timeout.total)
    definition: dict[str, Any] = {
        "url": batch.url, "method": batch.method, "queries": [dict(q) for q in batch.queries],
        "fields": dict(batch.fields), "headers": dict(batch.headers),
        "pool_size": batch.pool_size, "concurrency": batch.concurrency, "timeout": timeout,
        "retries": batch.retries, "max_body": batch.max_body,
    }
    for key in ("ca_file", "client_cert", "client_key"):
        if getattr(batch, key) is not None:
            definition[key] = getattr(batch, key)
    if not batch.verify:
        definition["verify"] = False
    if batch.follow_redirects:
        definition["follow_redirects"] = True
    if batch.basic_auth is not None:
        definition["basic_auth"] = {"username": batch.basic_auth[0],
                                    "password": batch.basic_auth[1]}
    if batch.redact:
        definition["redact"] = list(batch.redact)
    if batch.proxy is not None:
        definition["proxy"] = batch.proxy
    if batch.checks:
        definition["checks"] = [dict(c.table) for c in batch.checks]
    if batch.captures:
        definition["captures"] = {c.name: {c.kind: c.expression} for c in batch.captures}
    if batch.keep_bodies:
        definition["keep_bodies"] = batch.keep_bodies
    if batch.max_kept_body is not None:
        definition["max_kept_body"] = batch.max_kept_body
    if batch.conditional:
        definition["conditional"] = True
    if batch.retry_statuses:
        definition["retry_statuses"] = list(batch.retry_statuses)
    if batch.retry_after_max != DEFAULT_RETRY_AFTER_MAX:
        definition["retry_after_max"] = format_duration(batch.retry_after_max)
    if job.every is not None:
        definition["every"] = format_duration(job.every)
    if job.cron is not None:
        definition["cron"] = job.cron
    definition["timezone"] = job.timezone
    if job.jitter is not None:
        definition["jitter"] = format_duration(job.jitter)
    definition["enabled"] = job.enabled
    return definition


def job_from_definition(name: str, definition: Mapping[str, Any], *, source: str) -> JobSpec:
    """The job a stored definition describes; raises InvalidDefinition naming its first problem.

    Structure only: nothing here looks at this machine's files.
    """
    if not isinstance(definition, Mapping):
        raise InvalidDefinition(name, "the definition is not a table of job-file keys")
    job, problems = job_from_table(name, definition, source=source, local=False)
    if problems:
        raise InvalidDefinition(name, str(problems[0]))
    assert job is not None
    return job


def job_to_toml(job: JobSpec) -> str:
    """The job as a ``[jobs.NAME]`` table that :func:`~collector.jobfile.load_job_file` reads.

    Empty ``queries``, ``fields`` and ``headers`` are left out: they are the defaults.
    """
    import tomli_w

    table = {key: value for key, value in job_definition(job).items()
             if not (key in ("queries", "fields", "headers") and not value)}
    return tomli_w.dumps({"jobs": {job.name: table}})
