"""Text renderings of results for the terminal."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from collector.results import BatchResult


# Colours on a terminal: a batch's status, an HTTP status by class, what failed.
_STATUS_STYLES = {"ok": "green", "partial": "yellow", "failed": "bold red",
                  "interrupted": "magenta", "abandoned": "magenta", "running": "cyan",
                  "2": "green", "3": "cyan", "4": "yellow", "5": "bold red"}
Paint = Callable[[str, str], str]  # (column kind, cell text) -> the cell, perhaps coloured


def colour_wanted(stream: TextIO) -> bool:
    """Colour for a terminal only, unless ``NO_COLOR`` is set (no-color.org) or it is dumb."""
    return (stream.isatty() and not os.environ.get("NO_COLOR")
            and os.environ.get("TERM") != "dumb")


def painter(colour: bool) -> Paint | None:
    """How cells are coloured: None when they are not (piped, redirected, NO_COLOR)."""
    if not colour:
        return None
    from rich.color import ColorSystem
    from rich.style import Style

    def paint(kind: str, text: str) -> str:
        style = None
        if kind == "status":
            style = _STATUS_STYLES.get(text) or (
                _STATUS_STYLES.get(text[0]) if len(text) == 3 and text.isdigit() else None)
            style = style or ("bold red" if text in ("-", "none") else None)
        elif kind == "bad" and text not in ("", "0", "-", "no"):
            style = "bold red"
        if style is None:
            return text
        return Style.parse(style).render(text, color_system=ColorSystem.STANDARD)

    return paint


def table(headers: Sequence[str], rows: Sequence[Sequence[str]],
          right: frozenset[int] = frozenset(), *, kinds: Mapping[int, str] | None = None,
          paint: Paint | None = None) -> list[str]:
    """Rows as aligned columns; columns whose index is in ``right`` align right. With
    ``paint``, the cells of the columns ``kinds`` names ("status", "bad") are coloured."""
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
    lines = []
    for number, row in enumerate((headers, *rows)):
        cells = []
        for i, (cell, width) in enumerate(zip(row, widths, strict=True)):
            text = str(cell)
            pad = " " * (width - len(text))
            if paint is not None and number and kinds and i in kinds:
                text = paint(kinds[i], text)
            cells.append(pad + text if i in right else text + pad)
        lines.append("  ".join(cells).rstrip())
    return lines


def batch_table(result: BatchResult, *, job_name: str, batch_id: int | None,
                where: str | None, status: str | None = None, colour: bool = False) -> str:
    """One row per request, then the pool's counters: what the urllib3 example printed.

    ``status`` is the stored batch's, when it differs from what the result says;
    ``colour`` colours statuses and errors (for a terminal).
    """
    paint = painter(colour)
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
                   rows, right=frozenset({0, 5, 6}), kinds={2: "status", 3: "bad"}, paint=paint)
    errors = [f"  #{r.position} {r.error_kind}: {printable(r.error)}"
              for r in result.requests if r.failed]
    if errors:
        lines += ["", "errors:", *errors]
    failed_checks = [f"  #{r.position} {c.name}: saw {printable(c.observed) or 'nothing'}"
                     for r in result.requests for c in r.checks if not c.passed]
    if failed_checks:
        lines += ["", "failed checks:", *failed_checks]
    lines += _captured(result)
    lines += _certificates(result)
    elapsed = (result.finished_at - result.started_at).total_seconds() * 1000
    lines += [
        "",
        f"Number of connections: {result.num_connections} "
        f"(TCP connections opened: {result.tcp_connections})",
        f"Number of requests: {result.num_requests}",
        f"Batch {paint('status', status or result.status) if paint else status or result.status}"
        f": {result.requests_succeeded} succeeded, "
        f"{result.requests_failed} failed, in {elapsed:.0f} ms"
        + (f"; checks: {result.checks_passed} passed, {result.checks_failed} failed"
           if result.checks_passed or result.checks_failed else ""),
    ]
    return "\n".join(lines)


CAPTURED_SHOWN = 20  # requests whose captures the table lists
_SHORT = 60


def _captured(result: BatchResult) -> list[str]:
    """The values the job's captures found, a line per request (the first few)."""
    found = [r for r in result.requests if r.captures]
    if not found:
        return []

    def short(text: str) -> str:
        text = printable(text) or ""
        return text if len(text) <= _SHORT else text[:_SHORT - 1] + "…"

    lines = [f"  #{r.position} " + ", ".join(f"{c.name}={short(c.value)}" for c in r.captures)
             for r in found[:CAPTURED_SHOWN]]
    if len(found) > CAPTURED_SHOWN:
        lines.append(f"  ... and {len(found) - CAPTURED_SHOWN} more (collector show --format "
                     "json, or the captures table)")
    return ["", "captured:", *lines]


def _certificates(result: BatchResult) -> list[str]:
    """A line for each certificate the batch's connections were shown, with its session."""
    seen: dict[str, str] = {}
    for c in result.connections:
        if c.cert_sha256 is not None and c.cert_sha256 not in seen:
            expires = (f", expires {c.chain_not_after:%Y-%m-%d %H:%M} UTC"
                       if c.chain_not_after else "")
            seen[c.cert_sha256] = (f"  {printable(c.cert_subject)}, issued by "
                                   f"{printable(c.cert_issuer)}{expires} "
                                   f"({c.tls_version}, {c.cipher})")
    return ["", "TLS certificates:", *seen.values()] if seen else []


def batch_document(batch_id: int | None, columns: Mapping[str, Any],
                   result: BatchResult) -> str:
    """A batch as one JSON object: every ``batches`` column (its ``id`` as ``batch_id``,
    None when it is not stored), then ``requests``, each with every ``requests`` column
    and its ``failed_attempts``, oldest first, and ``connections``, each with every
    ``connections`` column (a request names its connection by ``number``)."""
    document = {"batch_id": batch_id, **{k: v for k, v in columns.items() if k != "id"},
                "requests": [r.to_dict() for r in result.requests],
                "connections": [c.to_dict() for c in result.connections]}
    return json.dumps(document, indent=2, default=_json_value)


def records(rows: Sequence[Mapping[str, Any]], fmt: str, *,
            columns: Sequence[str] | Mapping[str, str] | None = None,
            right: frozenset[str] = frozenset(), kinds: Mapping[str, str] | None = None,
            colour: bool = False) -> str:
    """Rows as an aligned table, a JSON list or CSV with a header line.

    ``columns`` picks and orders the keys the table shows (a mapping also gives
    each its heading); ``right`` are the keys aligned right. JSON and CSV get
    every key. With ``colour``, the table's cells of the keys ``kinds`` names
    ("status", "bad") are coloured.
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
                           right=frozenset(i for i, k in enumerate(shown) if k in right),
                           kinds={i: kinds[k] for i, k in enumerate(shown) if k in kinds}
                           if kinds else None, paint=painter(colour)))


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
