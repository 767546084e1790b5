"""checks: a row per check of the job on each response; batches: checks passed and failed

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "checks",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column("batch_id", Id, sa.ForeignKey("batches.id", ondelete="CASCADE",
                                                name="fk_checks_batch_id_batches"),
                  nullable=False),
        sa.Column("request_id", Id, nullable=False,
                  comment="requests.id of the response checked"),
        sa.Column("name", sa.String(100), nullable=False,
                  comment="the check's name in the job"),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("observed", sa.Text(),
                  comment="the value it looked at, shortened (the cut marked)"),
        sa.PrimaryKeyConstraint("id", name="pk_checks"),
        sa.UniqueConstraint("request_id", "name", name="uq_checks_request_id_name"),
    )
    op.create_index("ix_checks_batch_id", "checks", ["batch_id"])
    op.add_column("batches", sa.Column("checks_passed", sa.Integer(), comment=(
        "the job's checks that passed, over its requests")))
    op.add_column("batches", sa.Column("checks_failed", sa.Integer(),
                                       comment="the job's checks that failed"))
    # A batch stored before checks existed had none: 0 and 0, as for a job without any.
    op.execute("UPDATE batches SET checks_passed = 0, checks_failed = 0 "
               "WHERE status NOT IN ('running', 'abandoned')")


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("checks_failed")
        batch.drop_column("checks_passed")
    op.drop_table("checks")
