"""Text renderings of results for the terminal."""

from __future__ import annotations

from collections.abc import Sequence

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
                where: str | None) -> str:
    """One row per request, then the pool's counters: what the urllib3 example printed."""
    stored = f"batch {batch_id} stored in {where}" if batch_id is not None else "not stored"
    lines = [f"{job_name}: {result.method} {result.url} "
             f"(pool_size {result.pool_size}, concurrency {result.concurrency}), {stored}", ""]
    rows = [[str(r.position), r.query or "-",
             str(r.status) if r.status is not None else "-",
             r.error_kind or "", r.content_type or "-",
             str(r.body_length) if r.body_length is not None else "-",
             f"{r.elapsed_ms:.1f}", "yes" if r.reused else "no"]
            for r in result.requests]
    lines += table(["#", "query", "status", "error", "content type", "bytes", "ms", "re-used"],
                   rows, right=frozenset({0, 5, 6}))
    errors = [f"  #{r.position} {r.error_kind}: {r.error}" for r in result.requests if r.failed]
    if errors:
        lines += ["", "errors:", *errors]
    elapsed = (result.finished_at - result.started_at).total_seconds() * 1000
    lines += [
        "",
        f"Number of connections: {result.num_connections} "
        f"(TCP connections opened: {result.tcp_connections})",
        f"Number of requests: {result.num_requests}",
        f"Batch {result.status}: {result.requests_succeeded} succeeded, "
        f"{result.requests_failed} failed, in {elapsed:.0f} ms",
    ]
    return "\n".join(lines)
