"""The exceptions collector raises on purpose.

Every error a user can cause or meet derives from :class:`CollectorError`;
anything else escaping the library is a bug. The CLI maps the tree to exit
codes in one place (``collector.cli``)::

    CollectorError
    ├── ConfigError            bad input: job file, option, URL, setting (exit 2)
    │   ├── JobFileError       a mistake in a job file, with .path/.job/.key
    │   ├── JobFilesInvalid    every mistake in a set of job files, with .errors
    │   ├── JobExists          a job of that name is stored already, with .name/.source
    │   ├── NoDatabase         a read-only command found no database to read
    │   ├── ForeignDatabase    the database holds another application's tables, with .tables
    │   ├── UnknownJob         no stored job has that name, with .name
    │   └── UnknownBatch       no stored batch has that id, with .batch_id
    └── StoreError             the database could not be used (exit 1)
        ├── DatabaseUnavailable    cannot be reached, locked past its busy timeout,
        │                          or timed out: transient, worth trying again
        ├── DataRejected           the database refused what was written: not transient
        ├── BatchNotStored         a batch ran (and was shown) but saving it failed
        ├── SpoolFull              nor could the spool keep it (a full disk), with .folder
        └── SchemaMismatch         schema older/newer than this collector

Losing a claim to another daemon is not an error: ``Store.claim`` returns None.
Any other database error is a bug and is not translated.

Third-party exceptions are translated once, where they enter: urllib3's in
``collector.runner`` (into per-request error kinds, never raised), SQLAlchemy's
and Alembic's in ``collector.store``.
"""

from __future__ import annotations


class CollectorError(Exception):
    """Root of every error collector raises on purpose."""

    exit_code = 1


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


class NoDatabase(ConfigError):
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


class UnknownJob(ConfigError):
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


class UnknownBatch(ConfigError):
    """No stored batch has this id."""

    def __init__(self, batch_id: int) -> None:
        self.batch_id = batch_id
        super().__init__(f"no batch {batch_id}; collector batches lists them")


class StoreError(CollectorError):
    """The database could not be used."""

    exit_code = 1


class DatabaseUnavailable(StoreError):
    """The database cannot be reached, was locked past the busy timeout, or timed out.

    Transient: what could not be written may be written later.
    """

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
