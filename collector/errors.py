"""The exceptions collector raises on purpose.

Every error a user can cause or meet derives from :class:`CollectorError`;
anything else escaping the library is a bug. Each error carries its exit code
(``.exit_code``) and whether trying again may work (``.transient``); the CLI
turns any of them into one line on stderr and that code, in one place
(``collector.cli``). Every one survives pickling (a process pool, a log
handler in another process), attributes and message included::

    CollectorError                 (exit 1)
    ├── ConfigError                bad input: job file, option, URL, setting (exit 2)
    │   ├── JobFileError           a mistake in a job file, with .path/.job/.key
    │   ├── JobFilesInvalid        every mistake in a set of job files, with .errors
    │   ├── KeyProblem             one bad value under .key, before its file or option is
    │   │   │                      known (the reader makes it a JobFileError)
    │   │   └── LocalProblem       a right value this machine cannot use (a missing ca_file)
    │   ├── JobExists              a job of that name is stored already, with .name/.source
    │   └── ForeignDatabase        the database holds another application's tables, with .tables
    ├── NotFound                   what was asked for is not there (exit 2, as a mistyped name)
    │   ├── NoDatabase             a read-only command found no database to read
    │   ├── UnknownJob             no stored job has that name, with .name
    │   ├── UnknownBatch           no stored batch has that id, with .batch_id
    │   └── UnknownBody            no kept body has that SHA-256, with .sha256
    ├── StoreError                 the database could not be used (exit 1)
    │   ├── DatabaseUnavailable    cannot be reached, locked past its busy timeout, or
    │   │                          timed out: transient, worth trying again
    │   ├── DataRejected           the database refused what was written: not transient
    │   ├── InvalidDefinition      a stored job's definition this collector cannot read
    │   ├── BatchNotStored         a batch ran (and was shown) but saving it failed
    │   ├── SpoolFull              nor could the spool keep it (a full disk), with .folder
    │   └── SchemaMismatch         schema older/newer than this collector
    ├── RequestsFailed             ``--fail-on-error``: requests failed or got >= 400 (exit 3)
    └── Interrupted                a signal ended the batch early; what it collected is kept
                                   (exit 128 + the signal's number)

Losing a claim to another daemon is not an error: ``Store.claim`` returns None.
Any other database error is a bug and is not translated.

Third-party exceptions are translated once, where they enter: urllib3's in
``collector.runner`` (into per-request error kinds, never raised), SQLAlchemy's
and Alembic's in ``collector.store``.
"""

from __future__ import annotations

from typing import Any


def _rebuilt(cls: type[CollectorError], args: tuple[Any, ...],
             state: dict[str, Any]) -> CollectorError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class CollectorError(Exception):
    """Root of every error collector raises on purpose."""

    exit_code = 1
    transient = False  # whether the same thing tried again later may work
    label: str | None = "error"  # how the CLI's line says it: "collector: error: ..."

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take their context as arguments, not the message pickle would pass
        # back; rebuild from the message and the attributes instead (as urllib3's do).
        return _rebuilt, (type(self), self.args, dict(self.__dict__))


class ConfigError(CollectorError):
    """Bad input from the user: a job file, an option, a URL or a setting."""

    exit_code = 2


class JobFileError(ConfigError):
    """A mistake in a job file.

    The message names the file, the job and the key, then what was wrong and
    what is allowed: ``jobs/search.toml: job "search": timeout: -1s must be > 0``.
    """

    def __init__(self, path: str, problem: str, *, job: str | None = None,
                 key: str | None = None, local: bool = False) -> None:
        self.path = path
        self.job = job
        self.key = key
        self.problem = problem
        self.local = local  # right, but not usable on this machine (a missing ca_file)
        where = [path]
        if job is not None:
            where.append(f"job {_quoted(job)}")
        if key is not None:
            where.append(key if key.isprintable() else _quoted(key))
        super().__init__(": ".join([*where, problem]))


class JobFilesInvalid(ConfigError):
    """Job files with mistakes; ``.errors`` has one :class:`JobFileError` per mistake."""

    def __init__(self, errors: list[JobFileError]) -> None:
        self.errors = errors
        count = len(errors)
        super().__init__(f"{count} mistake{'s' * (count != 1)} in job files")


class JobExists(ConfigError):
    """A job of this name is stored already."""

    def __init__(self, name: str, source: str | None) -> None:
        self.name = name
        self.source = source
        origin = f" (from {source})" if source else ""
        super().__init__(f'a job named "{name}" exists already{origin}; '
                         "remove it first or choose another name")


class KeyProblem(ConfigError):
    """One bad value under ``key``; the caller adds the file and job, or the option."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")


class LocalProblem(KeyProblem):
    """A value that is right but cannot be used on this machine (a file that is not here)."""


class NotFound(CollectorError):
    """What a command was asked for is not there: a job, a batch, a database to read.

    Exit 2, as for a mistyped option: the name given was wrong, nothing failed.
    """

    exit_code = 2


class NoDatabase(NotFound):
    """A command that only reads found no database (or no collector schema) to read."""


class ForeignDatabase(ConfigError):
    """The database has tables and no collector schema: another application's, left alone."""

    def __init__(self, url: str, tables: list[str]) -> None:
        self.url = url
        self.tables = tables
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        super().__init__(f"database {url} has tables ({shown}) but no alembic_version; it was "
                         "not made by collector, which leaves it alone (give collector a "
                         "database of its own with --db)")


class UnknownJob(NotFound):
    """No stored job has this name; the message suggests close names."""

    def __init__(self, name: str, known: list[str]) -> None:
        import difflib

        self.name = name
        close = difflib.get_close_matches(name, known, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        super().__init__(f'no job named "{name}"{hint}; collector jobs list shows them')


def _quoted(text: str) -> str:
    """``"text"``, with line breaks and other unprintables escaped so a message stays one line."""
    import json

    return json.dumps(text, ensure_ascii=False)


class UnknownBatch(NotFound):
    """No stored batch has this id."""

    def __init__(self, batch_id: int) -> None:
        self.batch_id = batch_id
        super().__init__(f"no batch {batch_id}; collector batches lists them")


class UnknownBody(NotFound):
    """No kept body has this SHA-256."""

    def __init__(self, sha256: str) -> None:
        self.sha256 = sha256
        super().__init__(f"no kept body {sha256}; bodies are kept for jobs with keep_bodies "
                         "(requests.body_sha256 names them)")


class StoreError(CollectorError):
    """The database could not be used."""

    exit_code = 1


class DatabaseUnavailable(StoreError):
    """The database cannot be reached, was locked past the busy timeout, or timed out.

    Transient: what could not be written may be written later.
    """

    transient = True

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"database {url}: {reason}")


class DataRejected(StoreError):
    """The database refused a value (too long, a byte it cannot store); trying again won't help."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"database {url} refused the data: {reason}")


class InvalidDefinition(StoreError):
    """A stored definition that is not a valid job; ``.name`` and ``.problem`` say which and why."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem
        super().__init__(f'stored job "{name}": {problem}')


class SpoolFull(StoreError):
    """The spool could not keep a batch the database could not take: it is lost."""

    def __init__(self, folder: object, cause: OSError) -> None:
        self.folder = folder
        self.reason = cause.strerror or str(cause)
        super().__init__(f"the spool {folder} cannot keep it: {self.reason}")


class BatchNotStored(StoreError):
    """A batch ran but saving it failed; the caller has already shown the result.

    ``.spooled`` is where it waits for the database, when it was spooled;
    ``.spool_error`` why it could not be spooled, when it could not.
    """

    def __init__(self, cause: StoreError, spooled: object = None,
                 spool_error: SpoolFull | None = None) -> None:
        self.cause = cause
        self.spooled = spooled
        self.spool_error = spool_error
        kept = (f"; it is kept in the spool ({spooled}) and stored by `collector spool flush` "
                "or a running daemon once the database answers") if spooled else ""
        if spool_error is not None:
            kept = f", and {spool_error}"
        super().__init__(f"the batch ran (printed above) but was not stored: {cause}{kept}")


class SchemaMismatch(StoreError):
    """The database's schema revision is not the one this collector uses."""

    def __init__(self, url: str, current: str | None, head: str, advice: str) -> None:
        self.url = url
        self.current = current
        self.head = head
        super().__init__(
            f"database {url} is at schema revision {current}, this collector needs {head}: "
            f"{advice}"
        )


class RequestsFailed(CollectorError):
    """``--fail-on-error``: ``.failed`` of ``.total`` requests got no response, a status
    >= 400 or failed a check (the batch is stored and shown all the same)."""

    exit_code = 3
    label = None

    def __init__(self, failed: int, total: int) -> None:
        self.failed = failed
        self.total = total
        super().__init__(f"{failed} of {total} requests failed, got a status >= 400 or "
                         "failed a check")


class Interrupted(CollectorError):
    """A signal ended a batch early: the requests sent so far are kept (stored, or spooled,
    as ``interrupted``); ``.not_stored`` says why they were not stored, when they were not."""

    label = None

    def __init__(self, signal_number: int, not_stored: BatchNotStored | None = None) -> None:
        self.signal_number = signal_number
        self.not_stored = not_stored
        self.exit_code = 128 + signal_number
        super().__init__(f"stopped by signal {signal_number}: the requests sent so far are "
                         "kept, as an interrupted batch")
