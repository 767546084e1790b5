"""connections: a row per TCP connection a batch opened, with its phases and TLS facts;
requests: the phases of the connection each opened, its HTTP version, its connection

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTCDateTime = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "connections",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("batch_id", Id, sa.ForeignKey("batches.id", ondelete="CASCADE",
                                                name="fk_connections_batch_id_batches"),
                  nullable=False),
        sa.Column("number", sa.Integer(), nullable=False, comment=(
            "the batch's 1st, 2nd, ... TCP connection, in the order they were opened")),
        sa.Column("position", sa.Integer(), comment="the request that opened it"),
        sa.Column("opened_at", UTCDateTime, nullable=False),
        sa.Column("remote_address", sa.String(64),
                  comment="the address connected to (a proxy's)"),
        sa.Column("remote_port", sa.Integer()),
        sa.Column("dns_ms", sa.Float(), comment="the host's lookup; NULL without one"),
        sa.Column("tcp_ms", sa.Float(),
                  comment="the TCP connect (through a proxy: and its handshake)"),
        sa.Column("tls_ms", sa.Float(),
                  comment="the TLS handshake with the server; NULL without TLS"),
        sa.Column("tls_version", sa.String(20)),
        sa.Column("cipher", sa.String(100)),
        sa.Column("alpn", sa.String(50), comment="the protocol agreed by ALPN, if any"),
        sa.Column("cert_subject", sa.Text(),
                  comment="the server certificate's subject (RFC 4514)"),
        sa.Column("cert_issuer", sa.Text()),
        sa.Column("cert_sha256", sa.String(64), comment="SHA-256 of the certificate's DER"),
        sa.Column("cert_not_before", UTCDateTime),
        sa.Column("cert_not_after", UTCDateTime),
        sa.Column("chain_not_after", UTCDateTime,
                  comment="the earliest expiry over the certificates Python gives"),
        sa.Column("error_kind", sa.String(20),
                  comment="its TLS handshake (or proxy tunnel) failed"),
        sa.PrimaryKeyConstraint("id", name="pk_connections"),
        sa.UniqueConstraint("batch_id", "number", name="uq_connections_batch_id_number"),
    )
    # Added, never copied: the requests table may be large.
    op.add_column("requests", sa.Column("dns_ms", sa.Float(), comment=(
        "phases of the connection it opened: NULL when re-used")))
    op.add_column("requests", sa.Column("tcp_ms", sa.Float()))
    op.add_column("requests", sa.Column("tls_ms", sa.Float()))
    op.add_column("requests", sa.Column("http_version", sa.String(10),
                                        comment="of the response: 1.1 or 1.0"))
    op.add_column("requests", sa.Column("connection_id", Id, comment=(
        "connections.id of the connection it went over")))


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        for column in ("connection_id", "http_version", "tls_ms", "tcp_ms", "dns_ms"):
            batch.drop_column(column)
    op.drop_table("connections")
