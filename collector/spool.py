"""Batches the database could not take, kept on disk until it can.

One file per batch in the spool folder, written to a temporary name, fsynced
and renamed, so a crash leaves a whole file or none. The format is versioned
JSON. Each file names the database it belongs to (its URL, the password as
``***``); :meth:`Spool.replay` stores a store's own batches oldest first as
soon as its database answers and leaves every other database's alone. Each
carries a unique ``batch_key`` (or the id of the batch it claimed), so a
replay after a crash never stores a batch twice. A file the database refuses
is moved to ``rejected/`` beside them, never deleted.

Format 1 (collector before the destination was recorded) still replays: its
batches belong to whichever database replays them, as they did then.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collector.errors import DatabaseUnavailable, StoreError
from collector.results import (
    BatchResult,
    CaptureResult,
    CheckResult,
    ConnectionResult,
    FailedAttempt,
    PendingBatch,
    RequestResult,
)
from collector.results import new_batch_key as new_batch_key

if TYPE_CHECKING:
    from collector.store import Store

log = logging.getLogger(__name__)

# 3: connections; the requests' phases, HTTP version, connection and checks. 4: captures,
# content hashes and validators, kept bodies (base64).
FORMAT = 4
_READABLE = (1, 2, 3, 4)  # 1 and 2 read with no connections
CHUNK_BATCHES = 200  # spooled batches stored in one transaction
CHUNK_REQUESTS = 20_000  # or fewer batches, when theirs hold this many requests


@dataclass(frozen=True)
class Spooled:
    """A spooled file read back: the batch, and the database it waits for (its URL as
    shown, no password; None: format 1, any database)."""

    batch: PendingBatch
    database: str | None


@dataclass(frozen=True)
class Replayed:
    """What one replay did: stored, already there, refused, left for later."""

    stored: int = 0
    duplicates: int = 0
    rejected: int = 0
    left: int = 0


def default_spool() -> Spool:
    """The spool in ``$COLLECTOR_SPOOL_DIR``, else beside the default database."""
    from collector.settings import spool_folder

    return Spool(spool_folder())


class Spool:
    """The spool folder (created when first needed)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._destinations: dict[str, str | None] = {}  # file name: its database

    def put(self, batch: PendingBatch, *, database: str | None) -> Path:
        """Write ``batch``, to be recorded in ``database`` (its URL as shown; None: any
        database, as format 1's), whole: temporary file, fsync, rename, fsync the
        folder. Its path."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():020d}-{batch.batch_key}.json"
        data = json.dumps(_encode(batch, database)).encode()
        fd, temporary = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            path = self.folder / name
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _fsync_folder(self.folder)
        return path

    def paths(self) -> list[Path]:
        """The spooled batches, oldest first."""
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.glob("*.json") if not p.name.startswith("."))

    def depth(self) -> int:
        return len(self.paths())

    def read(self, path: Path) -> Spooled:
        document = json.loads(path.read_bytes())
        if document.get("format") not in _READABLE:
            raise ValueError(f"format {document.get('format')!r}, not one of {_READABLE}")
        return _decode(document)

    def destinations(self) -> dict[str | None, int]:
        """How many batches wait for each database (None: format 1, any database)."""
        return dict(Counter(self._databases(self.paths())))

    def replay(self, store: Store, *, limit: int | None = None,
               legacy: bool = True) -> Replayed:
        """Store the batches spooled for ``store``'s database (and, with ``legacy``, those
        of format 1), oldest first, until the database stops answering; other
        databases' are left and not counted.

        Many batches to a transaction (:data:`CHUNK_BATCHES`, or fewer when they hold
        more than :data:`CHUNK_REQUESTS` requests); a file is removed only once its
        transaction committed, so a crash in between stores nothing twice (the batch
        is recognised by its key). A transaction the database refuses is tried again
        one batch at a time, and only the batch it refuses is set aside.
        """
        done, away = Replayed(), False
        chunk: list[tuple[Path, Spooled]] = []
        tried = requests = 0
        for path in self.paths():
            if away or (limit is not None and tried >= limit):
                break
            try:
                entry = self.read(path)
            except FileNotFoundError:
                continue  # another process replayed it
            except (ValueError, KeyError, TypeError) as exc:
                self._reject(path, f"unreadable: {exc}")
                done = replace(done, rejected=done.rejected + 1)
                continue
            if not _belongs(entry.database, store, legacy):
                continue  # another database's: never stored here
            tried += 1
            chunk.append((path, entry))
            requests += len(entry.batch.result.requests)
            if len(chunk) >= CHUNK_BATCHES or requests >= CHUNK_REQUESTS:
                done, away = self._store(store, chunk, done)
                chunk, requests = [], 0
        if chunk and not away:
            done, _ = self._store(store, chunk, done)
        return replace(done, left=self._waiting_for(store, legacy))

    def _store(self, store: Store, chunk: list[tuple[Path, Spooled]],
               done: Replayed) -> tuple[Replayed, bool]:
        """Store ``chunk`` in one transaction (else one by one); what was done, and
        whether the database went away meanwhile."""
        try:
            written = store.record([entry.batch for _, entry in chunk])
        except DatabaseUnavailable:
            return done, True
        except StoreError:
            return self._store_each(store, chunk, done)
        for (path, entry), stored in zip(chunk, written, strict=True):
            done = self._stored(path, entry, stored, done)
        return done, False

    def _store_each(self, store: Store, chunk: list[tuple[Path, Spooled]],
                    done: Replayed) -> tuple[Replayed, bool]:
        for path, entry in chunk:
            try:
                (stored,) = store.record([entry.batch])
            except DatabaseUnavailable:
                return done, True
            except StoreError as exc:
                self._reject(path, str(exc))
                done = replace(done, rejected=done.rejected + 1)
                continue
            done = self._stored(path, entry, stored, done)
        return done, False

    def _stored(self, path: Path, entry: Spooled, stored: int | None,
                done: Replayed) -> Replayed:
        path.unlink(missing_ok=True)
        self._destinations.pop(path.name, None)
        if stored is not None:
            return replace(done, stored=done.stored + 1)
        log.debug("spooled batch %s of %s was stored already (or its fire ran elsewhere): "
                  "dropped", entry.batch.batch_key, entry.batch.job_name)
        return replace(done, duplicates=done.duplicates + 1)

    def _waiting_for(self, store: Store, legacy: bool) -> int:
        return sum(_belongs(database, store, legacy)
                   for database in self._databases(self.paths()))

    def _databases(self, paths: list[Path]) -> Iterator[str | None]:
        """The database each readable file of ``paths`` belongs to (None: format 1); an
        unreadable one is left out (replay moves it to rejected/). A file never changes
        once written, so what it says is read once."""
        for path in paths:
            if path.name not in self._destinations:
                try:
                    self._destinations[path.name] = self.read(path).database
                except (OSError, ValueError, KeyError, TypeError):
                    continue
            yield self._destinations[path.name]

    def _reject(self, path: Path, why: str) -> None:
        folder = self.folder / "rejected"
        folder.mkdir(exist_ok=True)
        os.replace(path, folder / path.name)
        log.error("spooled batch %s moved to %s: %s", path.name, folder, why)


def _belongs(database: str | None, store: Store, legacy: bool) -> bool:
    """Whether a batch spooled for ``database`` (None: format 1) is ``store``'s to store."""
    return database == store.url or (legacy and database is None)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- the format: JSON with times as ISO 8601 -------------------------------------------------

def _encode(batch: PendingBatch, database: str | None) -> dict[str, Any]:
    result = batch.result
    return {
        "format": FORMAT, "database": database,
        "batch_key": batch.batch_key, "job_name": batch.job_name,
        "trigger": batch.trigger, "claimed": batch.claimed, "worker": batch.worker,
        "scheduled_for": _time(batch.scheduled_for),
        "result": {
            **{f.name: _plain(getattr(result, f.name)) for f in fields(BatchResult)
               if f.name not in ("requests", "connections", "bodies")},
            "bodies": {sha256: base64.b64encode(data).decode()
                       for sha256, data in result.bodies.items()},
            "requests": [{f.name: _plain(getattr(r, f.name)) for f in fields(RequestResult)}
                         for r in result.requests],
            "connections": [c.to_dict() for c in result.connections],
        },
    }


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, tuple):  # failed attempts, checks
        return [{f.name: _plain(getattr(a, f.name)) for f in fields(a)} for a in value]
    return value


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


_CONNECTION_TIMES = frozenset({"opened_at", "cert_not_before", "cert_not_after",
                               "chain_not_after"})


def _parsed_time(value: Any) -> Any:
    return None if value is None else datetime.fromisoformat(value)


def _decode(document: dict[str, Any]) -> Spooled:
    raw = document["result"]
    requests = tuple(RequestResult(**{
        **r, "started_at": datetime.fromisoformat(r["started_at"]),
        "failed_attempts": tuple(FailedAttempt(**{**a, "at": datetime.fromisoformat(a["at"])})
                                 for a in r["failed_attempts"]),
        "checks": tuple(CheckResult(**c) for c in r.get("checks", ())),
        "captures": tuple(CaptureResult(**c) for c in r.get("captures", ())),
    }) for r in raw["requests"])
    connections = tuple(ConnectionResult(**{
        k: _parsed_time(v) if k in _CONNECTION_TIMES else v for k, v in c.items()})
        for c in raw.get("connections", ()))
    result = BatchResult(**{
        **{k: v for k, v in raw.items() if k not in ("requests", "connections", "bodies")},
        "bodies": {sha256: base64.b64decode(data)
                   for sha256, data in raw.get("bodies", {}).items()},
        "started_at": datetime.fromisoformat(raw["started_at"]),
        "finished_at": datetime.fromisoformat(raw["finished_at"]),
        "requests": requests, "connections": connections,
    })
    scheduled = document["scheduled_for"]
    batch = PendingBatch(
        batch_key=document["batch_key"], job_name=document["job_name"],
        trigger=document["trigger"], claimed=document["claimed"], worker=document["worker"],
        result=result,
        scheduled_for=None if scheduled is None else datetime.fromisoformat(scheduled))
    return Spooled(batch, document.get("database"))
