"""The daemon's log: journald-friendly text, or one JSON object per line."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal

from collector.redaction import RECORD_ATTRIBUTES, RedactingFilter

LogFormat = Literal["text", "json"]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        document.update({k: v for k, v in vars(record).items() if k not in RECORD_ATTRIBUTES})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            document["exception"] = record.exc_text
        return json.dumps(document, default=str)


def setup_logging(fmt: LogFormat, level: str) -> None:
    """Log to stderr (journald keeps it): text without timestamps, or JSON lines.

    Every record, collector's or a library's, passes the redacting filter first.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # APScheduler logs every run at INFO, Alembic every step, SQLAlchemy every statement:
    # collector logs what matters. urllib3's debug lines (one per request) are noise at
    # any level; its warnings pass the filter like every other line.
    for noisy in ("apscheduler", "alembic", "sqlalchemy", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
