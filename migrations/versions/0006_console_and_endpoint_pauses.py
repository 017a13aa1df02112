"""the console: endpoint pauses and the indexes its searches page on

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "endpoint_pauses",
        sa.Column("endpoint", sa.String(length=128), nullable=False),
        sa.Column("paused_by", sa.String(length=255), nullable=True),
        sa.Column(
            "paused_at",
            sa.DateTime()
            .with_variant(mysql.DATETIME(fsp=6), "mariadb")
            .with_variant(mysql.DATETIME(fsp=6), "mysql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("endpoint"),
    )
    op.create_index("ix_events_external_id", "integration_events", ["external_id"], unique=False)
    op.create_index(
        "ix_events_correlation_id", "integration_events", ["correlation_id"], unique=False
    )
    op.create_index("ix_events_tenant_id_id", "integration_events", ["tenant_id", "id"])
    op.create_index(
        "ix_deliveries_endpoint_name_status", "webhook_deliveries", ["endpoint", "status"]
    )


def downgrade() -> None:
    op.drop_index("ix_deliveries_endpoint_name_status", table_name="webhook_deliveries")
    op.drop_index("ix_events_tenant_id_id", table_name="integration_events")
    op.drop_index("ix_events_correlation_id", table_name="integration_events")
    op.drop_index("ix_events_external_id", table_name="integration_events")
    op.drop_table("endpoint_pauses")
