"""Job files and command-line options into :class:`~collector.spec.JobSpec`, every mistake listed.

A job file is TOML with one ``[jobs.NAME]`` table per job (README, "Job
files"). Every key is checked strictly (:mod:`collector.jobkeys`); a mistake
names the file, the job and the key (:class:`~collector.errors.JobFileError`).
Options go through the same checks as a job table, and their mistakes name
the option instead.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector.errors import ConfigError, JobFileError, KeyProblem, LocalProblem
from collector.jobkeys import BATCH_KEYS, NAME_RULE, is_job_name, job_from_table
from collector.quantities import show
from collector.spec import BatchSpec, JobSpec

# -- options ----------------------------------------------------------------------------------

_OPTIONS = {"queries": "--query", "fields": "--field", "headers": "--header",
            "timeout.total": "--total-timeout"}


def _option_error(problem: KeyProblem) -> ConfigError:
    key = problem.key
    base, dot, rest = key.partition(".")
    option = _OPTIONS.get(key) or _OPTIONS.get(re.sub(r"[.\[].*", "", key))
    if option is None:
        option = "--" + re.sub(r"[.\[].*", "", key).replace("_", "-")
    if dot and base in ("headers", "fields"):
        option += f" {show(rest)}"  # which header or field
    return ConfigError(f"{option}: {problem.problem}")


def batch_from_options(values: Mapping[str, Any]) -> BatchSpec:
    """Options given as job-file keys (None: not given) as a BatchSpec, checked as a job file.

    Raises ConfigError naming the first bad ``--option``.
    """
    table = {key: value for key, value in values.items() if value is not None}
    unknown = sorted(set(table) - BATCH_KEYS)
    assert not unknown, f"not batch keys: {unknown}"
    job = job_from_options("run-once", table)
    return job.batch


def job_from_options(name: str, values: Mapping[str, Any]) -> JobSpec:
    """A job defined by options (job-file keys; None: not given), source ``cli``."""
    if not is_job_name(name):
        raise ConfigError(f"job name {show(name)}: {NAME_RULE}")
    table = {key: value for key, value in values.items() if value is not None}
    if "url" not in table:
        raise ConfigError("--url is required")
    job, problems = job_from_table(name, table, source="cli")
    if problems:
        raise _option_error(problems[0])
    assert job is not None
    return job


# -- job files --------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobSet:
    """Jobs read from files and folders, and every mistake found on the way."""

    jobs: list[JobSpec]
    errors: list[JobFileError]
    files: list[Path]


def load_job_file(path: str | Path) -> list[JobSpec]:
    """Parse and validate every job of one TOML job file; raises its first mistake."""
    jobs, errors = read_job_file(path)
    if errors:
        raise errors[0]
    return jobs


def read_job_file(path: str | Path) -> tuple[list[JobSpec], list[JobFileError]]:
    """The valid jobs of one file, in file order, and one error per mistake.

    A job's ``source`` is the file's absolute path; messages name the path as given.
    A job whose only problems depend on this machine (``.local`` errors: a
    ``ca_file`` that is not here) is among the jobs, and its problems among the errors.
    """
    shown = str(path)
    try:
        if Path(path).exists() and not Path(path).is_file() and not Path(path).is_dir():
            # A FIFO or a device would block or never end: only regular files are read.
            return [], [JobFileError(shown, "is not a regular file")]
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return [], [JobFileError(shown, "no such file")]
    except IsADirectoryError:
        return [], [JobFileError(shown, "is a folder, not a job file")]
    except OSError as exc:
        return [], [JobFileError(shown, f"cannot be read ({exc.strerror})")]
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return [], [JobFileError(shown, f"is not valid TOML ({exc})")]
    except RecursionError:
        return [], [JobFileError(shown, "is nested too deeply to be a job file")]
    errors: list[JobFileError] = []
    unknown = sorted(set(data) - {"jobs"})
    if unknown:
        errors.append(JobFileError(shown, f"unknown top-level key {unknown[0]!r} "
                                          "(jobs go in [jobs.NAME] tables)"))
    tables = data.get("jobs")
    if not isinstance(tables, dict) or not tables:
        errors.append(JobFileError(shown, "has no jobs (add a [jobs.NAME] table)"))
        return [], errors
    source = str(Path(path).absolute())
    jobs: list[JobSpec] = []
    for name, table in tables.items():
        if not is_job_name(name):
            errors.append(JobFileError(shown, NAME_RULE, job=name))
        elif not isinstance(table, dict):
            errors.append(JobFileError(shown, f"{show(table)} is not a table", job=name))
        else:
            job, problems = job_from_table(name, table, source=source)
            errors += [JobFileError(shown, p.problem, job=name, key=p.key,
                                    local=isinstance(p, LocalProblem)) for p in problems]
            if job is not None:  # valid, if perhaps not usable on this machine
                jobs.append(job)
    return jobs, errors


def read_job_paths(paths: Sequence[str | Path]) -> JobSet:
    """Every job in the given files and folders (``*.toml``, searched recursively).

    Collects every mistake instead of stopping at the first, including a job
    name defined twice.
    """
    files: list[Path] = []
    errors: list[JobFileError] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found, unreadable = _toml_files(path)
            errors += unreadable
            if not found and not unreadable:
                errors.append(JobFileError(str(path), "has no *.toml job files"))
            files += found
        else:
            files.append(path)
    jobs: list[JobSpec] = []
    seen: dict[str, Path] = {}
    for file in dict.fromkeys(files):  # each file once, in order
        found_jobs, found_errors = read_job_file(file)
        errors += found_errors
        for job in found_jobs:
            if job.name in seen:
                errors.append(JobFileError(str(file), f"is also defined in {seen[job.name]}",
                                           job=job.name))
                continue
            seen[job.name] = file
            jobs.append(job)
    return JobSet(jobs=jobs, errors=errors, files=list(dict.fromkeys(files)))


def _toml_files(folder: Path) -> tuple[list[Path], list[JobFileError]]:
    """The ``*.toml`` files below ``folder``, and an error per folder that could not be read.

    A folder that cannot be read is a mistake, never "no jobs there": ``jobs
    apply --prune`` would otherwise remove the jobs that came from it.
    """
    import os

    errors: list[JobFileError] = []

    def unreadable(exc: OSError) -> None:
        errors.append(JobFileError(str(exc.filename or folder),
                                   f"cannot be read ({exc.strerror or exc})"))

    found = [Path(top) / name
             for top, _dirs, names in os.walk(folder, onerror=unreadable)
             for name in names if name.endswith(".toml")]
    return sorted(p for p in found if p.is_file()), errors


def load_one_job(path: str, name: str | None) -> JobSpec:
    """The job called ``name`` in a file (its only job when None), to run here.

    Raises the file's first mistake, or the first problem of the chosen job on
    this machine: another job's missing ``ca_file`` does not stop this one.
    """
    jobs, errors = read_job_file(path)
    for error in errors:
        if not error.local:
            raise error
    chosen = select_job(path, jobs, name)
    for error in errors:
        if error.job == chosen.name:
            raise error
    return chosen


def select_job(path: str, jobs: list[JobSpec], name: str | None) -> JobSpec:
    """The job called ``name`` in a file, or its only job when ``name`` is None."""
    names = ", ".join(job.name for job in jobs)
    if name is None:
        if len(jobs) == 1:
            return jobs[0]
        raise ConfigError(f"{path} has {len(jobs)} jobs ({names}): choose one with --job")
    for job in jobs:
        if job.name == name:
            return job
    raise ConfigError(f'{path}: no job "{name}" (jobs in this file: {names})')
