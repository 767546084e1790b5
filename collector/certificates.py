"""What a server's certificate says, read from its DER bytes by ``cryptography``.

Only the facts a ``connections`` row keeps: subject and issuer (RFC 4514 strings),
the SHA-256 fingerprint of the DER, and the validity period. A batch's connections
usually present the same certificate, so each is parsed once (:class:`Certificates`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class Certificate:
    subject: str
    issuer: str
    sha256: str
    not_before: datetime
    not_after: datetime


class Certificates:
    """Certificates parsed once each, by their DER bytes."""

    def __init__(self) -> None:
        self._parsed: dict[bytes, Certificate | None] = {}

    def __call__(self, der: bytes) -> Certificate | None:
        """The certificate ``der`` is, or None when it cannot be parsed."""
        try:
            return self._parsed[der]
        except KeyError:
            parsed = self._parsed[der] = _parse(der)
            return parsed

    def earliest_expiry(self, certificates: tuple[bytes, ...]) -> datetime | None:
        """The earliest ``not_after`` among ``certificates`` that parse."""
        times = [c.not_after for der in certificates if (c := self(der)) is not None]
        return min(times, default=None)


def _parse(der: bytes) -> Certificate | None:
    from cryptography import x509  # here: only batches that opened a TLS connection need it

    try:
        certificate = x509.load_der_x509_certificate(der)
        return Certificate(
            subject=certificate.subject.rfc4514_string(),
            issuer=certificate.issuer.rfc4514_string(),
            sha256=hashlib.sha256(der).hexdigest(),
            not_before=certificate.not_valid_before_utc,
            not_after=certificate.not_valid_after_utc)
    except ValueError:  # not a certificate cryptography can read: no facts, not a failure
        return None
