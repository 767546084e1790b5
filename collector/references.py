"""Secrets by reference only: expanded in memory for the request alone.

``${VAR}`` is read from the environment and ``${credential:NAME}`` from the
file ``$CREDENTIALS_DIRECTORY/NAME`` (systemd's ``LoadCredential=``), in the
URL, headers, fields, queries, ``basic_auth``'s password and the ``proxy``'s user
name and password; ``proxy = "env"`` takes the environment's proxy. :func:`prepare`
returns two specs: the one that is sent, with the values, and the one that is
shown, stored and logged, with the references as written and the fields a
job lists under ``redact`` as ``REDACTED``.
"""

from __future__ import annotations

import base64
import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import quote, urlsplit

from collector.errors import ConfigError
from collector.jobkeys import REFERENCE, header_value_problem
from collector.redaction import REDACTED, SECRETS
from collector.results import BatchResult, RequestResult
from collector.spec import BODY_METHODS, BatchSpec, encode_query, with_query

__all__ = ["REDACTED", "Prepared", "prepare", "redacted"]


@dataclass(frozen=True)
class Prepared:
    """A batch as it is sent (``ready``) and as it is shown and stored (``shown``);
    ``values`` are the secrets filled in, registered with
    :data:`collector.redaction.SECRETS` so that no log line shows them.

    The runner sends ``ready`` and records what it sent; :meth:`show` and
    :meth:`show_request` turn that record into ``shown``'s before anything else
    (a progress callback, the store, the spool, a log line) sees it.
    """

    ready: BatchSpec
    shown: BatchSpec
    values: tuple[str, ...] = ()

    def show(self, result: BatchResult) -> BatchResult:
        """``result`` as it may be stored and shown: see :meth:`show_request`."""
        if not self._rewrites and not self.values:
            return result
        return dataclasses.replace(result, url=self.shown.url, requests=tuple(
            self.show_request(r) for r in result.requests))

    def show_request(self, request: RequestResult) -> RequestResult:
        """One request as it may be stored and shown: its URL and query as written
        (``${TOKEN}``, fields under ``redact`` as REDACTED), and any secret value that
        slipped into an error message (as sent, or percent-encoded) as REDACTED."""
        if self._rewrites:
            query = encode_query(self._queries[request.position], self.shown.fields,
                                 shown=True)
            path = (self._path if self.shown.method in BODY_METHODS
                    else with_query(self._path, query))
            request = dataclasses.replace(request, url=self._origin + path, query=query)
        if self.values and (request.error or request.failed_attempts):
            clean = SECRETS.scrub
            request = dataclasses.replace(
                request, error=clean(request.error) if request.error else request.error,
                failed_attempts=tuple(dataclasses.replace(a, error=clean(a.error))
                                      for a in request.failed_attempts))
        return request

    def stored_queries(self) -> list[str]:
        """Each request's query as it is stored (and shown), by position."""
        if self._rewrites:
            return [encode_query(q, self.shown.fields, shown=True) for q in self._queries]
        return [encode_query(q, self.ready.fields) for q in self.ready.queries or ({},)]

    @cached_property
    def _rewrites(self) -> bool:
        """Whether what was sent differs from what is shown (a reference, a redacted field)."""
        ready, shown = self.ready, self.shown
        return (ready.url != shown.url or ready.fields != shown.fields
                or ready.queries != shown.queries)

    @cached_property
    def _queries(self) -> tuple[dict[str, str], ...]:
        return self.shown.queries or ({},)

    @cached_property
    def _origin(self) -> str:
        from collector.runner import origin  # here: jobs show need not import urllib3

        return origin(self.shown.url)

    @cached_property
    def _path(self) -> str:
        """The URL's path and query string as written (``${TOKEN}``, not ``$%7BTOKEN%7D``)."""
        parts = urlsplit(self.shown.url)
        return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def prepare(batch: BatchSpec, environ: Mapping[str, str] = os.environ, *,
            where: str) -> Prepared:
    """Fill in every reference of ``batch``; ConfigError naming ``where`` and the key when
    a variable is not set or a credential cannot be read."""

    values: list[str] = []

    def expand(key: str, text: str) -> str:
        if "${" not in text:
            return text

        def lookup(match: re.Match[str]) -> str:
            value = _value(match, environ, where=f"{where}: {key}")
            values.append(value)
            return value

        return REFERENCE.sub(lookup, text)

    def expand_all(key: str, values: dict[str, str]) -> dict[str, str]:
        return {k: expand(f"{key}.{k}", v) for k, v in values.items()}

    headers = expand_all("headers", batch.headers)
    if batch.basic_auth is not None:
        username, password = batch.basic_auth
        token = f"{username}:{expand('basic_auth.password', password)}"
        encoded = base64.b64encode(token.encode()).decode()
        values += [token, encoded]
        headers.setdefault("Authorization", "Basic " + encoded)
    for name, value in headers.items():
        if value != batch.headers.get(name) and (problem := header_value_problem(value)):
            raise ConfigError(f"{where}: headers.{name}: the value from the environment: "
                              f"{problem}")
    queries = batch.queries  # as they are unless one refers to something: most batches
    if any("${" in v for query in queries for v in query.values()):
        queries = tuple(expand_all(f"queries[{i}]", q) for i, q in enumerate(queries))
    url = expand("url", batch.url)
    proxy = batch.proxy
    if proxy == "env":
        proxy = environment_proxy(url, environ, where=where)
    elif proxy is not None and "${" in proxy:
        def quoted(match: re.Match[str]) -> str:  # a value may hold @ or :
            value = _value(match, environ, where=f"{where}: proxy")
            values.extend((value, quote(value, safe="")))
            return quote(value, safe="")

        proxy = REFERENCE.sub(quoted, proxy)
    if proxy is not None and (userinfo := urlsplit(proxy).netloc.rpartition("@")[0]):
        values += [userinfo, *userinfo.split(":", 1)]  # kept out of every log line
    ready = dataclasses.replace(
        batch, url=url, headers=headers, fields=expand_all("fields", batch.fields),
        queries=queries, proxy=proxy)
    shown = redacted(batch)
    if batch.redact:
        hidden = set(batch.redact)
        values += [v for q in (batch.fields, *batch.queries) for k, v in q.items() if k in hidden]
    secrets = tuple(dict.fromkeys(values))
    SECRETS.add(secrets)  # which also leaves out values too short to hide
    return Prepared(ready=ready, shown=shown, values=secrets)


def environment_proxy(url: str, environ: Mapping[str, str], *, where: str) -> str | None:
    """The proxy the environment names for ``url`` (``https_proxy`` for https://,
    ``http_proxy`` for http://, then their upper-case spellings, as curl reads them),
    None where ``no_proxy`` lists its host or none is set; ConfigError for a proxy
    collector cannot use."""
    from collector.jobkeys import PROXY_SCHEMES
    from collector.settings import without_password

    parts = urlsplit(url)
    names = (f"{parts.scheme}_proxy", f"{parts.scheme.upper()}_PROXY")
    name = next((n for n in names if environ.get(n, "").strip()), None)
    if name is None:
        return None
    no_proxy = environ.get("no_proxy") or environ.get("NO_PROXY") or ""
    if _bypassed(parts.hostname or "", parts.port, no_proxy):
        return None
    found = environ[name].strip()
    found = found if "://" in found else "http://" + found
    proxy = urlsplit(found)
    if proxy.scheme.lower() not in PROXY_SCHEMES or not proxy.hostname:
        raise ConfigError(f'{where}: proxy = "env": ${name} is {without_password(found)!r}, '
                          "not an http://, https://, socks5:// or socks5h:// proxy URL")
    return found


def _bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether ``no_proxy`` (comma-separated: ``*``, a host or domain, ``.domain``, each
    with an optional ``:port``, as curl reads it) leaves ``host`` out of the proxy."""
    host = host.lower().rstrip(".")
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if entry == "*":
            return True
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (
            entry, "", "")
        if entry_port and entry_port != str(port):
            continue
        name = name.strip("[]").lstrip(".").rstrip(".")
        if name and (host == name or host.endswith("." + name)):
            return True
    return False


def redacted(batch: BatchSpec) -> BatchSpec:
    """``batch`` as it may be shown: the fields it lists under ``redact`` as REDACTED."""
    if not batch.redact:
        return batch
    hidden = set(batch.redact)

    def hide(values: dict[str, str]) -> dict[str, str]:
        return {k: REDACTED if k in hidden else v for k, v in values.items()}

    return dataclasses.replace(batch, fields=hide(batch.fields),
                               queries=tuple(hide(q) for q in batch.queries))


def _value(match: re.Match[str], environ: Mapping[str, str], *, where: str) -> str:
    kind, name = match.group(1), match.group(2)
    if kind == "credential":
        folder = environ.get("CREDENTIALS_DIRECTORY")
        if not folder:
            raise ConfigError(f"{where}: ${{credential:{name}}} needs $CREDENTIALS_DIRECTORY "
                              "(systemd's LoadCredential=)")
        try:
            return (Path(folder) / name).read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"{where}: ${{credential:{name}}} cannot be read "
                              f"({exc.strerror})") from None
    try:
        return environ[name]
    except KeyError:
        raise ConfigError(f"{where}: ${{{name}}} is not set in the environment") from None
