"""Text renderings of results for the terminal."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collector.results import BatchResult


def table(headers: Sequence[str], rows: Sequence[Sequence[str]],
          right: frozenset[int] = frozenset()) -> list[str]:
    """Rows as aligned columns; columns whose index is in ``right`` align right."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
    lines = []
    for row in (headers, *rows):
        cells = [str(c).rjust(w) if i in right else str(c).ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    return lines


def batch_table(result: BatchResult, *, job_name: str, batch_id: int | None,
                where: str | None, status: str | None = None) -> str:
    """One row per request, then the pool's counters: what the urllib3 example printed.

    ``status`` is the stored batch's, when it differs from what the result says.
    """
    stored = f"batch {batch_id} stored in {where}" if batch_id is not None else "not stored"
    lines = [f"{job_name}: {result.method} {result.url} "
             f"(pool_size {result.pool_size}, concurrency {result.concurrency}), {stored}", ""]
    rows = [[str(r.position), printable(r.query) or "-",
             str(r.status) if r.status is not None else "-",
             r.error_kind or "", printable(r.content_type) or "-",
             str(r.body_length) if r.body_length is not None else "-",
             f"{r.elapsed_ms:.1f}", "yes" if r.reused else "no"]
            for r in result.requests]
    lines += table(["#", "query", "status", "error", "content type", "bytes", "ms", "re-used"],
                   rows, right=frozenset({0, 5, 6}))
    errors = [f"  #{r.position} {r.error_kind}: {printable(r.error)}"
              for r in result.requests if r.failed]
    if errors:
        lines += ["", "errors:", *errors]
    elapsed = (result.finished_at - result.started_at).total_seconds() * 1000
    lines += [
        "",
        f"Number of connections: {result.num_connections} "
        f"(TCP connections opened: {result.tcp_connections})",
        f"Number of requests: {result.num_requests}",
        f"Batch {status or result.status}: {result.requests_succeeded} succeeded, "
        f"{result.requests_failed} failed, in {elapsed:.0f} ms",
    ]
    return "\n".join(lines)


def records(rows: Sequence[Mapping[str, Any]], fmt: str, *,
            columns: Sequence[str] | Mapping[str, str] | None = None,
            right: frozenset[str] = frozenset()) -> str:
    """Rows as an aligned table, a JSON list or CSV with a header line.

    ``columns`` picks and orders the keys the table shows (a mapping also gives
    each its heading); ``right`` are the keys aligned right. JSON and CSV get
    every key.
    """
    if fmt == "json":
        return json.dumps([dict(r) for r in rows], indent=2, default=_json_value)
    keys = list(rows[0]) if rows else list(columns or [])
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: _exact(r[k]) for k in keys} for r in rows)
        return out.getvalue().rstrip("\n")
    if not rows:
        return "(none)"
    shown = dict(columns) if isinstance(columns, Mapping) else {k: k for k in columns or keys}
    body = [[_cell(r[k]) for k in shown] for r in rows]
    return "\n".join(table(list(shown.values()), body,
                           right=frozenset(i for i, k in enumerate(shown) if k in right)))


def printable(text: str | None) -> str | None:
    """Text for a terminal: control characters (escape codes, line breaks) as ``\\xNN``."""
    if text is None or text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return printable(value) or ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def _exact(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else value


def _json_value(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{value!r} is not JSON")


SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float | None], marks: Sequence[str]) -> str:
    """One character per batch: a bar for its median time, or the batch's mark.

    ``marks[i]`` is ``""`` for a batch shown as a bar, else the character to show.
    """
    known = [v for v, m in zip(values, marks, strict=True) if v is not None and not m]
    low, high = (min(known), max(known)) if known else (0.0, 0.0)
    chars = []
    for value, mark in zip(values, marks, strict=True):
        if mark or value is None:
            chars.append(mark or "·")
        elif high == low:
            chars.append(SPARKS[len(SPARKS) // 2])
        else:
            chars.append(SPARKS[round((value - low) / (high - low) * (len(SPARKS) - 1))])
    return "".join(chars)
