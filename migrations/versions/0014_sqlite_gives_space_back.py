"""SQLite gives the space prune frees back: incremental auto-vacuum

No table changes. SQLite can only turn auto-vacuum on for a file with tables by
rewriting it (VACUUM), which cannot run inside the migration's transaction:
``collector db upgrade`` does it right after this revision (Store.upgrade), once
per file; a database created at this revision or later has it from its first
table. PostgreSQL: nothing (its space is VACUUM's to reuse).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass  # the file's rewrite follows the migration (see the docstring)


def downgrade() -> None:
    pass  # a file that gives space back is still a file 0013 reads
