"""TLS per job: verify = false (warned, recorded), client certificates, missing files."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from collector.errors import JobFileError
from collector.jobfile import load_job_file
from collector.runner import run_batch
from collector.spec import BatchSpec
from collector.store import open_store
from tests.server import LocalServer


def test_verify_false_is_warned_and_recorded(https_server: LocalServer, db_url: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    checked = run_batch(BatchSpec(url=https_server.url("/search")))
    assert checked.requests[0].error_kind == "tls" and checked.tls_verified is True
    with caplog.at_level(logging.WARNING, logger="collector.runner"):
        result = run_batch(BatchSpec(url=https_server.url("/search"), verify=False))
    assert result.requests[0].status == 200 and result.tls_verified is False
    assert "TLS certificates are not verified (verify = false)" in caplog.text
    with open_store(db_url) as store:
        batch_id = store.save_batch(result, job_name="insecure")
        assert batch_id is not None
        stored = store.load_batch(batch_id)
    assert stored.result is not None and stored.result.tls_verified is False


@pytest.fixture
def mutual(ca: trustme.CA) -> Iterator[LocalServer]:
    """An HTTPS server that wants a client certificate signed by the test CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    context.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(context)
    with LocalServer(tls=context) as server:
        yield server


def test_a_client_certificate_is_presented(mutual: LocalServer, ca: trustme.CA, ca_file: str,
                                           tmp_path: Path) -> None:
    client = tmp_path / "client.pem"
    ca.issue_cert("client.test").private_key_and_cert_chain_pem.write_to_path(str(client))
    without = run_batch(BatchSpec(url=mutual.url("/search"), ca_file=ca_file))
    assert without.requests[0].status is None and without.requests[0].error_kind is not None
    with_cert = run_batch(BatchSpec(url=mutual.url("/search"), ca_file=ca_file,
                                    client_cert=str(client)))
    assert with_cert.requests[0].status == 200


def test_tls_keys_in_job_files(tmp_path: Path) -> None:
    path = tmp_path / "jobs.toml"
    key = tmp_path / "k.pem"
    key.write_text("a key")
    path.write_text(f'[jobs.a]\nurl = "https://x.test/"\nclient_key = "{key}"\n')
    with pytest.raises(JobFileError, match="client_key: needs client_cert"):
        load_job_file(path)
    path.write_text('[jobs.a]\nurl = "https://x.test/"\nverify = "no"\n')
    with pytest.raises(JobFileError, match='verify: "no" is not true or false'):
        load_job_file(path)
    path.write_text('[jobs.a]\nurl = "https://x.test/"\nclient_cert = "/nowhere.pem"\n')
    with pytest.raises(JobFileError, match='client_cert: "/nowhere.pem" is not a readable file'):
        load_job_file(path)
    path.write_text('[jobs.a]\nurl = "https://x.test/"\nverify = false\n')
    (job,) = load_job_file(path)
    assert job.batch.verify is False
