"""Secret values kept out of every log line and every stored message.

collector's own code shows requests as written (``${VAR}``, ``REDACTED``);
what other code prints is not up to it: urllib3's retry warning carries the
URL it sent, an exception's text may carry a header. So every secret value a
batch fills in is registered here, in the forms it can take on the way out
(as sent, percent-encoded, quoted by ``repr`` or JSON, base64 in a basic-auth
header), and :class:`RedactingFilter`, on every handler collector installs,
rewrites each record, whoever wrote it, before it is formatted.

The registry is process-wide on purpose: logging is process-wide, and a value
registered once stays hidden for the life of the process (a daemon's set of
secrets is bounded by its jobs' definitions).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from urllib.parse import quote, quote_plus

REDACTED = "REDACTED"
# Values of a few characters would turn innocent text into REDACTED: not registered.
SHORTEST = 4


def forms(value: str) -> set[str]:
    """The ways ``value`` can appear in text printed by collector or a library."""
    found = {value, quote(value, safe=""), quote(value), quote_plus(value),
             quote(value, safe="${}:"), json.dumps(value)[1:-1], repr(value)[1:-1]}
    return {form for form in found if len(form) >= SHORTEST}


class Redactor:
    """A set of secret values, and text with each of them replaced by ``REDACTED``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def add(self, values: Iterable[str]) -> None:
        new = {form for value in values if len(value) >= SHORTEST for form in forms(value)}
        if new <= self._values:
            return
        with self._lock:
            self._values |= new
            # Longest first, so a value that contains another is hidden whole.
            ordered = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, ordered)))

    def scrub(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None:
            return text
        return pattern.sub(REDACTED, text)


SECRETS = Redactor()


class RedactingFilter(logging.Filter):
    """Rewrites a record's message, exception text and extra fields with secrets hidden.

    Put on a handler, it sees every record the handler writes, collector's
    and every library's; the record is changed in place (``msg`` becomes the
    finished message, ``args`` empty) so any formatter prints it clean.
    """

    def __init__(self, redactor: Redactor = SECRETS) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        scrub = self.redactor.scrub
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit: keep both, scrubbed
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = scrub(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
            # The formatters print exc_text; the exception object itself could carry
            # the value again.
            record.exc_info = None
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in RECORD_ATTRIBUTES and isinstance(value, str | dict | list | tuple):
                setattr(record, key, _scrubbed(value, scrub))
        return True


# Attributes every LogRecord has; anything else came in through ``extra=``.
RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


def _scrubbed(value: object, scrub: Callable[[str], str]) -> object:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrubbed(v, scrub) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(v, scrub) for v in value]
    return value
