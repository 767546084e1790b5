"""Kept bodies (once per content, compressed, given back exactly) and conditional
requests (a 304 stands for the body it confirms), against nginx serving static files."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text

from collector.captures import parse_captures
from collector.checks import parse_checks
from collector.collect import collect
from collector.models import bodies, requests
from collector.runner import run_batch
from collector.spec import BatchSpec
from collector.store import Store, open_store
from tests.cli import invoke
from tests.daemons import COLLECTOR
from tests.peers import Nginx

PAGE = ("<!doctype html><html><head><title>Prices</title></head><body>\n"
        + "".join(f"<p class=row>item {i}: price {i * 3} EUR</p>\n" for i in range(400))
        + "<p id=total>price: 42</p></body></html>\n").encode()


@dataclass
class Site:
    nginx: Nginx
    root: Path

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.nginx.port}/{name}"

    def change(self, name: str, data: bytes) -> None:
        """A new version of a file, dated later (nginx's ETag is its time and size)."""
        path = self.root / name
        before = path.stat().st_mtime if path.exists() else 0.0
        path.write_bytes(data)
        later = max(before + 10, path.stat().st_mtime)
        os.utime(path, (later, later))

    def statuses(self, count: int) -> list[int]:
        """The statuses nginx logged, in order, once it logged ``count`` requests (it logs
        a request after its answer is sent: a client can be faster than the log)."""
        self.nginx.wait_connections(count)
        lines = self.nginx.log.read_text().splitlines()
        return [int(line.split('" ')[1].split()[0]) for line in lines]


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    root = tmp_path / "www"
    root.mkdir()
    (root / "page.html").write_bytes(PAGE)
    (root / "data.json").write_bytes(b'{"price": 12.5, "name": "widget"}\n')
    (root / "noise.bin").write_bytes(os.urandom(4096))
    with Nginx(tmp_path, root) as nginx:
        yield Site(nginx, root)


def _body_rows(store: Store) -> dict[str, tuple[str, int, int]]:
    with store.connect() as conn:
        return {row.sha256: (row.codec, row.raw_length, row.stored_length) for row in
                conn.execute(select(bodies.c.sha256, bodies.c.codec, bodies.c.raw_length,
                                    bodies.c.stored_length))}


def test_bodies_are_kept_once_compressed_and_given_back(db_url: str, site: Site,
                                                        tmp_path: Path) -> None:
    page = BatchSpec(url=site.url("page.html"), queries=({"v": "1"}, {"v": "2"}),
                     keep_bodies=True)
    first, second = run_batch(page), run_batch(page)
    noise = run_batch(replace(page, url=site.url("noise.bin"), queries=()))
    page_sha = hashlib.sha256(PAGE).hexdigest()
    noise_data = (site.root / "noise.bin").read_bytes()
    noise_sha = hashlib.sha256(noise_data).hexdigest()
    # two queries, one content: kept once in the batch, and referred to by both
    assert first.bodies == {page_sha: PAGE}
    assert [r.body_sha256 for r in first.requests] == [page_sha, page_sha]
    with open_store(db_url) as store:
        for result, job in ((first, "pages"), (second, "pages"), (noise, "noise")):
            assert store.save_batch(result, job_name=job) is not None
        stored = _body_rows(store)
        assert set(stored) == {page_sha, noise_sha}  # each content once, over batches
        codec, raw, packed = stored[page_sha]
        assert (codec, raw) == ("zstd", len(PAGE)) and packed < raw / 5  # HTML compresses
        assert stored[noise_sha] == ("identity", 4096, 4096)  # random bytes do not
        url = store.url
    # byte for byte, to a file and to stdout (a real process: stdout as bytes)
    out = tmp_path / "page.html"
    code, _, err = invoke("body", page_sha, "--out", str(out), "--db", db_url)
    assert code == 0, err
    assert out.read_bytes() == PAGE
    written = subprocess.run([str(COLLECTOR), "body", noise_sha.upper(), "--db", db_url],
                             capture_output=True, check=True, timeout=60)
    assert written.stdout == noise_data
    code, _, err = invoke("body", "0" * 64, "--db", db_url)
    assert code == 2 and f"no kept body {'0' * 64}" in err, url
    code, _, err = invoke("body", "not-a-hash", "--db", db_url)
    assert code == 2 and "is not a SHA-256 (64 hexadecimal digits)" in err


def test_no_keep_bodies_no_bodies(db_url: str, site: Site) -> None:
    result = run_batch(BatchSpec(url=site.url("page.html")))
    assert result.bodies == {} and not result.keeps_bodies
    # the content it stands for all the same: a 200's body
    assert result.requests[0].content_sha256 == hashlib.sha256(PAGE).hexdigest()
    head = run_batch(BatchSpec(url=site.url("page.html"), method="HEAD")).requests[0]
    assert head.status == 200 and head.content_sha256 is None  # no body: no content
    with open_store(db_url) as store:
        store.save_batch(result, job_name="plain")
        assert store.info().row_counts["bodies"] == 0


def test_a_cap_on_kept_bodies(site: Site) -> None:
    capped = run_batch(BatchSpec(url=site.url("page.html"), keep_bodies=True,
                                 max_kept_body=len(PAGE) - 1,
                                 queries=({}, {"small": "1"})))
    assert capped.bodies == {}  # larger than the cap: not kept, still hashed
    assert capped.requests[0].body_sha256 == hashlib.sha256(PAGE).hexdigest()
    assert run_batch(BatchSpec(url=site.url("page.html"), keep_bodies=True,
                               max_kept_body=len(PAGE))).bodies


def test_changed_keeps_a_body_only_when_the_content_changed(db_url: str, site: Site) -> None:
    spec = BatchSpec(url=site.url("data.json"), keep_bodies="changed",
                     queries=({"q": "a"}, {"q": "b"}),
                     captures=parse_captures({"price": {"json": "price"},
                                              "name": {"json": "name"}}))
    with open_store(db_url) as store:
        first = collect("prices", spec, store=store)
        unchanged = collect("prices", spec, store=store)
        site.change("data.json", b'{"price": 13.0, "name": "widget"}\n')
        changed = collect("prices", spec, store=store)
        assert len(first.result.bodies) == 1
        assert unchanged.result.bodies == {}  # as the last one for each query: not sent
        assert len(changed.result.bodies) == 1
        # the JSON's number and text, before and after the change
        assert [[(c.value, c.number) for c in r.captures] for r in
                (first.result.requests[0], changed.result.requests[1])] == [
            [("12.5", 12.5), ("widget", None)], [("13.0", 13.0), ("widget", None)]]
        new_sha = next(iter(changed.result.bodies))
        assert new_sha != next(iter(first.result.bodies))
        assert set(_body_rows(store)) == set(first.result.bodies) | {new_sha}
        # the unchanged batch's use of the first version is noted, so prune keeps it
        with store.connect() as conn:
            used = conn.execute(select(bodies.c.last_used_at).where(
                bodies.c.sha256 == next(iter(first.result.bodies)))).scalar_one()
        assert used == unchanged.result.started_at


def test_prune_removes_the_bodies_no_request_refers_to(db_url: str, site: Site) -> None:
    page = BatchSpec(url=site.url("page.html"), keep_bodies=True)
    data = BatchSpec(url=site.url("data.json"), keep_bodies=True)
    old = datetime.now(UTC) - timedelta(days=30)
    with open_store(db_url) as store:
        for spec in (page, data):
            result = run_batch(spec)
            store.save_batch(result.shifted(old - result.started_at), job_name="old")
        store.save_batch(run_batch(page), job_name="new")  # the page is still referred to
        assert len(_body_rows(store)) == 2
        assert store.prune(datetime.now(UTC) - timedelta(days=1), job="old") == (2, 2)
        assert len(_body_rows(store)) == 2  # --job leaves bodies: other jobs may refer
        assert store.prune(datetime.now(UTC) - timedelta(days=1)) == (0, 0)
        assert set(_body_rows(store)) == {hashlib.sha256(PAGE).hexdigest()}
        assert store.prune(datetime.now(UTC) + timedelta(seconds=1)) == (1, 1)
        assert _body_rows(store) == {}


def test_a_conditional_job_stores_304s_that_stand_for_the_body(db_url: str, site: Site) -> None:
    spec = BatchSpec(url=site.url("page.html"), conditional=True, keep_bodies=True,
                     queries=({"q": "a"},),
                     checks=parse_checks([{"name": "fresh", "status": [200, 304]},
                                          {"name": "total", "body_matches": "price: 42"},
                                          {"name": "sold-out", "body_matches": "sold out"}]),
                     captures=parse_captures({"total": {"regex": r"price: (\d+)</p></body>"},
                                              "server": {"header": "Server"}}))
    sha = hashlib.sha256(PAGE).hexdigest()
    with open_store(db_url) as store:
        full = collect("page", spec, store=store)
        confirmed = collect("page", spec, store=store)
        new_page = PAGE.replace(b"price: 42", b"price: 43")
        site.change("page.html", new_page)
        changed = collect("page", spec, store=store)
        again = collect("page", spec, store=store)
        (first,), (second,), (third,), (fourth,) = (
            o.result.requests for o in (full, confirmed, changed, again))
        assert site.statuses(4) == [200, 304, 200, 304]  # as nginx saw them
        etag = (first.etag or "").strip('"')
        assert first.status == 200 and first.content_sha256 == sha and etag
        assert first.last_modified and first.last_modified.endswith(" GMT")
        # the 304: its own (empty) body, and the content it confirmed
        assert second.status == 304 and second.body_length == 0
        assert second.body_sha256 == hashlib.sha256(b"").hexdigest()
        assert second.content_sha256 == sha and second.etag == first.etag
        # its checks and captures that read the body were made on the 200 it stands for
        assert [(c.name, c.passed) for c in second.checks] == [("fresh", True)]
        assert [c.name for c in second.captures] == ["server"]
        assert [(c.value, c.number) for c in first.captures[:1]] == [("42", 42.0)]
        assert [(c.name, c.passed) for c in first.checks] == [
            ("fresh", True), ("total", True), ("sold-out", False)]
        assert [(c.name, c.passed) for c in third.checks][1] == ("total", False)  # 43 now
        assert third.status == 200 and third.content_sha256 == hashlib.sha256(
            new_page).hexdigest() and third.etag != first.etag
        assert fourth.status == 304 and fourth.content_sha256 == third.content_sha256
        assert confirmed.result.bodies == {} and set(_body_rows(store)) == {
            sha, third.content_sha256, hashlib.sha256(b"").hexdigest()} - {
            hashlib.sha256(b"").hexdigest()}
        assert (full.batch_id is not None and store.load_batch(full.batch_id).result
                is not None)
        with store.connect() as conn:
            stored = conn.execute(select(requests.c.status, requests.c.content_sha256,
                                         requests.c.etag).order_by(requests.c.id)).all()
            assert [(s, c) for s, c, _ in stored] == [
                (200, sha), (304, sha), (200, third.content_sha256),
                (304, third.content_sha256)]
            # the docs' "when a page's content changed": no special case for the 304s
            changes = conn.execute(text(_changes(store))).all()
        assert [(row.previous_sha256, row.content_sha256) for row in changes] == [
            (sha, third.content_sha256)]


def _changes(store: Store) -> str:
    from tests.test_docs import readme_queries

    return readme_queries(store.engine.dialect.name)["when a page's content changed"]


def test_without_a_known_content_a_conditional_job_asks_in_full(site: Site) -> None:
    # No store: nothing is known, so no validators are sent and a 200 comes back.
    spec = BatchSpec(url=site.url("data.json"), conditional=True)
    assert [o.status for o in collect("j", spec, store=None).result.requests] == [200]
    assert [o.status for o in collect("j", spec, store=None).result.requests] == [200]
    assert site.statuses(2) == [200, 200]


def test_a_spooled_batch_keeps_its_bodies_and_captures(tmp_path: Path, site: Site) -> None:
    from collector.results import PendingBatch, new_batch_key
    from collector.spool import Spool

    result = run_batch(BatchSpec(url=site.url("noise.bin"), keep_bodies=True,
                                 conditional=True,
                                 captures=parse_captures({"type": {"header": "Content-Type"}})))
    spool = Spool(tmp_path / "spool")
    batch = PendingBatch(result=result, job_name="c", trigger="manual", worker="h:1",
                         batch_key=new_batch_key())
    back = spool.read(spool.put(batch, database=None)).batch.result
    assert back == result and back.bodies == result.bodies and result.bodies
    assert back.requests[0].captures and back.requests[0].etag


def test_the_daemon_asks_conditionally(sqlite_url: str, site: Site, tmp_path: Path) -> None:
    from tests.daemons import DaemonProcess

    path = tmp_path / "jobs.toml"
    path.write_text(f'[jobs.page]\nurl = "{site.url("data.json")}"\nevery = "1s"\n'
                    'conditional = true\nkeep_bodies = "changed"\n')
    daemon = DaemonProcess(sqlite_url, "--jobs", str(path))
    try:
        # the first is a 200; each after it knows what the one before got
        daemon.wait_for(lambda _: sum("batch" in line for line in daemon.lines) >= 3,
                        timeout=30)
    finally:
        assert daemon.stop() == 0
    with open_store(sqlite_url) as store, store.connect() as conn:
        statuses = list(conn.execute(select(requests.c.status).order_by(requests.c.id))
                        .scalars())
        assert statuses[0] == 200 and 304 in statuses[1:] and set(statuses) == {200, 304}
        assert store.info().row_counts["bodies"] == 1
