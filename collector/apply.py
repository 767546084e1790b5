"""Job files applied to the ``jobs`` table: what would change, and making it so.

The files are the source of truth for the jobs that came from them: ``apply``
creates and updates those jobs (``enabled`` included) and, with ``prune``,
removes the ones that left the files. Jobs added on the command line (source
``cli``) are never pruned. Removing a job never removes its batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from collector.definition import job_definition
from collector.errors import JobFilesInvalid
from collector.jobfile import JobSet, read_job_paths
from collector.spec import JobSpec

if TYPE_CHECKING:
    from collector.store import Store, StoredJobs

Action = Literal["create", "update", "unchanged", "remove"]


@dataclass(frozen=True)
class Change:
    """One line of a plan: what happens to one job, and why."""

    action: Action
    name: str
    source: str
    detail: str = ""


@dataclass(frozen=True)
class ApplyPlan:
    changes: list[Change]
    create: list[JobSpec] = field(default_factory=list)
    update: list[JobSpec] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)

    def count(self, action: Action) -> int:
        return sum(change.action == action for change in self.changes)


def load_jobs(paths: Sequence[str | Path], *, local: bool = True) -> JobSet:
    """Every job in the files and folders; raises JobFilesInvalid listing every mistake.

    Without ``local``, problems that depend on this machine (a ``ca_file`` that is
    not here, ``.local`` errors) are no mistake: their jobs are kept, the problems
    stay in ``errors`` for the caller to warn about, and a batch of such a job
    fails at run time on a machine without the file, alone.
    """
    found = read_job_paths(paths)
    mistakes = [e for e in found.errors if local or not e.local]
    if mistakes:
        raise JobFilesInvalid(mistakes)
    return found


def plan_apply(stored: StoredJobs, found: JobSet, paths: Sequence[str | Path], *,
               prune: bool) -> ApplyPlan:
    """Compare the files' jobs with the stored ones.

    A stored row that is not a valid job is replaced by the file's job of that name.
    """
    by_name = {s.name: s for s in stored.jobs}
    broken = {b.name: b for b in stored.broken}
    plan = ApplyPlan(changes=[])
    for job in found.jobs:
        old = by_name.get(job.name)
        if job.name in broken:
            plan.update.append(job)
            problem = broken[job.name].problem
            plan.changes.append(Change("update", job.name, job.source,
                                       f"replaces an invalid definition ({problem})"))
            continue
        if old is None:
            plan.create.append(job)
            plan.changes.append(Change("create", job.name, job.source))
            continue
        differences = _differences(old.job, job)
        if differences:
            plan.update.append(job)
            plan.changes.append(Change("update", job.name, job.source, ", ".join(differences)))
        else:
            plan.changes.append(Change("unchanged", job.name, job.source))
    if prune:
        in_files = {job.name for job in found.jobs}
        files = {str(f.absolute()) for f in found.files}
        folders = [Path(p).absolute() for p in paths if Path(p).is_dir()]
        for name, source in [*((s.name, s.source) for s in stored.jobs),
                             *((b.name, b.source) for b in stored.broken)]:
            if name not in in_files and _came_from(source, files, folders):
                plan.remove.append(name)
                plan.changes.append(Change("remove", name, source, "no longer in its job file"))
    return plan


def apply_jobs(store: Store, paths: Sequence[str | Path], *, prune: bool = False,
               dry_run: bool = False, found: JobSet | None = None) -> ApplyPlan:
    """Create, update (and with ``prune`` remove) stored jobs to match the files.

    ``found`` is the files read already (:func:`load_jobs`), so that a caller can
    refuse files with mistakes before it opens, or creates, a database.
    """
    plan = plan_apply(store.jobs(), found or load_jobs(paths, local=False), paths, prune=prune)
    if not dry_run:
        store.save_jobs(create=plan.create, update=plan.update, remove=plan.remove)
    return plan


def _differences(old: JobSpec, new: JobSpec) -> list[str]:
    before, after = job_definition(old), job_definition(new)
    changed = [key for key in dict.fromkeys([*before, *after]) if before.get(key) != after.get(key)]
    if old.source != new.source:
        changed.append(f"source (was {old.source})")
    return changed


def _came_from(source: str, files: set[str], folders: Sequence[Path]) -> bool:
    """Whether a stored job's source is one of the files read or lies in a folder given."""
    if source == "cli":
        return False
    return source in files or any(Path(source).is_relative_to(f) for f in folders)
