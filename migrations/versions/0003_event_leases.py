"""event leases: the mapping step's `processing` has an expiry, as deliveries' `delivering` has

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("integration_events") as batch:
        batch.add_column(
            sa.Column(
                "lease_expires_at",
                sa.DateTime()
                .with_variant(mysql.DATETIME(fsp=6), "mariadb")
                .with_variant(mysql.DATETIME(fsp=6), "mysql"),
                nullable=True,
            )
        )
        batch.create_index("ix_events_status_lease", ["status", "lease_expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("integration_events") as batch:
        batch.drop_index("ix_events_status_lease")
        batch.drop_column("lease_expires_at")
