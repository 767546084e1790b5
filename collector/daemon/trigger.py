"""A job's fires as an APScheduler trigger (its public ``BaseTrigger`` interface)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

from apscheduler.triggers.base import BaseTrigger

from collector.daemon.firing import Clock
from collector.schedule import Fires


class FireTrigger(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 has no type hints
    """Fires at :class:`~collector.schedule.Fires` times, the same on every daemon.

    Fire times are the database's (:class:`~collector.daemon.firing.Clock`):
    APScheduler, which runs on this host's clock, is given each one moved by
    the measured offset, and :meth:`key` turns a run time it hands back into
    the fire it stands for, whatever the offset has become since. A
    ``catch_up`` (run time, fire) runs one missed fire first, at a run time of
    its own. With a ``lead``, each run time comes that much before its fire's
    time (the daemon claims ahead). APScheduler's own ``jitter`` is never used: it would move each
    host's fire differently and turn one fire into several.
    """

    __slots__ = ("_keys", "_lock", "after", "catch_up", "clock", "fires", "lead")

    def __init__(self, fires: Fires, clock: Clock,
                 catch_up: tuple[datetime, datetime] | None = None, *,
                 lead: timedelta = timedelta(0), after: datetime | None = None) -> None:
        self.fires = fires
        self.lead = lead
        self.after = after  # a rescheduled job: the last fire its old trigger handed out
        self.clock = clock
        self.catch_up = catch_up
        self._keys: dict[datetime, datetime] = {}
        self._lock = threading.Lock()
        if catch_up is not None:
            self._keys[catch_up[0]] = catch_up[1]

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        if previous_fire_time is None and self.catch_up is not None:
            return self.catch_up[0]
        with self._lock:
            previous = (None if previous_fire_time is None
                        else self._keys.get(previous_fire_time,
                                            self.clock.to_database(previous_fire_time)))
        fire = self.fires.next_after(previous, self.clock.to_database(now))
        if fire is not None and previous is None and self.after is not None \
                and fire <= self.after:
            fire = self.fires.next_after(self.after, self.clock.to_database(now))
        if fire is None:
            return None
        local = self.clock.to_local(fire) - self.lead
        with self._lock:
            self._keys[local] = fire
        return local

    def last_handed(self) -> datetime | None:
        """The latest fire handed to APScheduler (a fire after it is the next's to run)."""
        with self._lock:
            return max(self._keys.values(), default=None)

    def key(self, run_time: datetime) -> datetime:
        """The fire a run time APScheduler hands back stands for."""
        with self._lock:
            fire = self._keys.get(run_time)
            if len(self._keys) > 8:  # the last few are enough: APScheduler asks for the
                for stale in sorted(self._keys)[:-4]:  # next fire after the one it ran
                    del self._keys[stale]
        if fire is not None:
            return fire
        latest = self.fires.latest(self.clock.to_database(run_time) + self.lead)
        return latest if latest is not None else run_time

    def __str__(self) -> str:
        return f"fires every {self.fires.every}" if self.fires.every else "fires on a crontab"
