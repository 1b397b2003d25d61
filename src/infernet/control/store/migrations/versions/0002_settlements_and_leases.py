"""Two-part receipts (the platform's settlement beside the node's claim) and job leases (the
replica that owns a job, until when, whether its output reached a client, where it came from).

Revision ID: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("receipts") as t:
        # Receipts made before settlements existed keep NULL: their platform signature covers the claim.
        t.add_column(sa.Column("settlement", sa.Text(), nullable=True))
    with op.batch_alter_table("jobs") as t:
        t.add_column(sa.Column("owner", sa.String(length=40), nullable=True))
        t.add_column(sa.Column("lease_until", sa.Float(), nullable=True))
        t.add_column(sa.Column("delivered", sa.Boolean(), nullable=False, server_default=sa.false()))
        t.add_column(sa.Column("origin", sa.String(length=16), nullable=False, server_default="openai"))
    op.create_index("ix_jobs_lease", "jobs", ["status", "lease_until"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_jobs_lease", table_name="jobs")
    with op.batch_alter_table("jobs") as t:
        for column in ("origin", "delivered", "lease_until", "owner"):
            t.drop_column(column)
    with op.batch_alter_table("receipts") as t:
        t.drop_column("settlement")
