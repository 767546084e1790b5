"""Where the warnings of commands other than the daemon go: stderr, one line each.

Imported by the command callback, not by ``collector --help``: logging alone is a
sixth of the help's start-up.
"""

from __future__ import annotations

import logging
import sys
from typing import Any


class _OneLine(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"collector: {record.levelname.lower()}: {record.getMessage()}"


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is when a record comes (as logging's last resort
    does), not as it was when the handler was made."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass  # StreamHandler.__init__ sets it; sys.stderr is read at each record


def warnings_to_stderr() -> None:
    """Warnings of commands other than the daemon (which sets up its own log) go to stderr
    as one line each, through the redacting filter, like the daemon's."""
    from collector.redaction import RedactingFilter

    handler = _Stderr()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(_OneLine())
    handler.addFilter(RedactingFilter())
    logging.lastResort = handler
