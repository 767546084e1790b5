"""captures: a row per value a job's captures found; bodies: each kept body once;
requests: content_sha256 (with existing 200s filled in), etag, last_modified

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTCDateTime = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "captures",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("batch_id", Id, sa.ForeignKey("batches.id", ondelete="CASCADE",
                                                name="fk_captures_batch_id_batches"),
                  nullable=False),
        sa.Column("request_id", Id, nullable=False, comment="requests.id of the response"),
        sa.Column("name", sa.String(100), nullable=False,
                  comment="the capture's name in the job"),
        sa.Column("value", sa.Text(), nullable=False,
                  comment="what it found, shortened (the cut marked)"),
        sa.Column("number", sa.Float(), comment="the value as a number, when it is one"),
        sa.PrimaryKeyConstraint("id", name="pk_captures"),
        sa.UniqueConstraint("request_id", "name", name="uq_captures_request_id_name"),
    )
    op.create_index("ix_captures_batch_id", "captures", ["batch_id"])
    op.create_table(
        "bodies",
        sa.Column("sha256", sa.String(64), comment="of the body as delivered"),
        sa.Column("codec", sa.String(10), nullable=False, comment="identity or zstd"),
        sa.Column("raw_length", sa.BigInteger(), nullable=False),
        sa.Column("stored_length", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("stored_at", UTCDateTime, nullable=False),
        sa.Column("last_used_at", UTCDateTime, nullable=False, comment=(
            "the start of the latest batch of a job keeping bodies that got it")),
        sa.PrimaryKeyConstraint("sha256", name="pk_bodies"),
    )
    op.create_index("ix_bodies_last_used_at", "bodies", ["last_used_at"])
    op.add_column("requests", sa.Column("content_sha256", sa.String(64), comment=(
        "the content it stands for: the body of a 200, the body a 304 confirmed")))
    op.add_column("requests", sa.Column("etag", sa.Text(),
                                        comment="the content's ETag (conditional jobs)"))
    op.add_column("requests", sa.Column("last_modified", sa.Text(), comment=(
        "the content's Last-Modified (conditional jobs)")))
    # A 200 stored before stands for its body, as one stored from now on does: history's
    # "when did it change" needs no special case for the rows before this revision.
    op.execute("UPDATE requests SET content_sha256 = body_sha256 "
               "WHERE status = 200 AND body_sha256 IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("requests") as batch:
        for column in ("last_modified", "etag", "content_sha256"):
            batch.drop_column(column)
    op.drop_table("bodies")
    op.drop_table("captures")
