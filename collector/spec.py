"""What a batch and a job are: frozen values, parsed once and passed down.

A :class:`BatchSpec` is what one batch sends; a :class:`JobSpec` is a named
batch and when to run it. They come from job files and options
(:mod:`collector.jobfile`) or from the ``jobs`` table
(:mod:`collector.definition`). ``${VAR}`` in headers and fields is kept as
written here; the collect step fills it in just before a batch runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlencode

if TYPE_CHECKING:
    from collector.captures import Capture
    from collector.checks import Check

METHODS = ("GET", "HEAD", "POST")
BODY_METHODS = frozenset({"POST"})  # methods whose fields go in a form body, not the URL
DEFAULT_TIMEOUT = 10.0
DEFAULT_MAX_BODY = 10 * 1024 * 1024
DEFAULT_RETRY_AFTER_MAX = 30.0


@dataclass(frozen=True, kw_only=True)
class Timeouts:
    """Seconds allowed to connect, between reads, and for the whole request.

    ``connect`` and ``read`` map onto urllib3's ``Timeout``; ``total``, when
    set, also bounds reading the body.
    """

    connect: float = DEFAULT_TIMEOUT
    read: float = DEFAULT_TIMEOUT
    total: float | None = None


@dataclass(frozen=True, kw_only=True)
class BatchSpec:
    """What one batch sends: every query of ``queries`` to ``url`` through one pool.

    Each request carries the query's fields followed by the common ``fields``
    (a query's own value wins). No queries means one request to the bare URL.
    ``ca_file`` is checked when the batch runs, on the machine that runs it.
    """

    url: str
    method: str = "GET"
    queries: tuple[dict[str, str], ...] = ()
    fields: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    pool_size: int = 1
    concurrency: int = 1
    timeout: Timeouts = Timeouts()
    retries: int = 0
    max_body: int = DEFAULT_MAX_BODY
    ca_file: str | None = None
    client_cert: str | None = None  # PEM certificate (and key, unless client_key) to present
    client_key: str | None = None
    verify: bool = True  # false: TLS certificates not checked (warned on every batch)
    follow_redirects: bool = False  # same origin only, each hop kept in failed_attempts
    retry_statuses: tuple[int, ...] = ()  # statuses tried again, like 503
    retry_after_max: float = DEFAULT_RETRY_AFTER_MAX  # the longest Retry-After honoured
    basic_auth: tuple[str, str] | None = None  # (username, password reference)
    redact: tuple[str, ...] = ()  # field names whose values are stored as REDACTED
    # http://, https://, socks5:// or socks5h:// (credentials by reference), or "env": the
    # environment's https_proxy/http_proxy and no_proxy; None: direct, whatever they say.
    proxy: str | None = None
    checks: tuple[Check, ...] = ()  # what a right answer is (collector.checks)
    captures: tuple[Capture, ...] = ()  # values kept from each response (collector.captures)
    # Bodies kept, each distinct one once: False, True, or "changed" (only when the content
    # differs from the job's last for that query); none larger than max_kept_body.
    keep_bodies: bool | Literal["changed"] = False
    max_kept_body: int | None = None  # None: max_body
    conditional: bool = False  # send the validators of the last content of each query


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """A named batch and when to run it; ``source`` is the file it came from, or ``cli``."""

    name: str
    batch: BatchSpec
    every: float | None = None
    cron: str | None = None
    timezone: str = "UTC"
    jitter: float | None = None
    enabled: bool = True
    source: str = "cli"


def encode_query(query: dict[str, str], common: dict[str, str], *, shown: bool = False) -> str:
    """A request's fields as sent: the query's own, then the common ones it does not set,
    form-encoded. ``shown`` keeps ``${...}`` references readable, as they are stored."""
    if common:
        query = {**query, **{k: v for k, v in common.items() if k not in query}}
    return urlencode(query, safe="${}:" if shown else "")


def with_query(path: str, query: str) -> str:
    """``path`` with ``query`` appended (after its own query string, if it has one)."""
    return path + ("&" if "?" in path else "?") + query if query else path
