"""A job's fires as an APScheduler trigger (its public ``BaseTrigger`` interface)."""

from __future__ import annotations

from datetime import datetime

from apscheduler.triggers.base import BaseTrigger

from collector.schedule import Fires


class FireTrigger(BaseTrigger):  # type: ignore[misc]  # APScheduler 3 has no type hints
    """Fires at :class:`~collector.schedule.Fires` times, the same on every daemon.

    APScheduler's own ``jitter`` is never used: it would move each host's
    fire differently and turn one fire into several.
    """

    __slots__ = ("fires",)

    def __init__(self, fires: Fires) -> None:
        self.fires = fires

    def get_next_fire_time(self, previous_fire_time: datetime | None,
                           now: datetime) -> datetime | None:
        return self.fires.next_after(previous_fire_time, now)

    def __str__(self) -> str:
        return f"fires every {self.fires.every}" if self.fires.every else "fires on a crontab"
