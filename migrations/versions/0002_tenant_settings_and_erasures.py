"""tenant settings (time zone, locale) and offboarding receipts

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TIMESTAMP = (
    sa.DateTime()
    .with_variant(mysql.DATETIME(fsp=6), "mariadb")
    .with_variant(mysql.DATETIME(fsp=6), "mysql")
)


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.add_column(
            sa.Column(
                "timezone", sa.String(length=64), nullable=False, server_default="America/Sao_Paulo"
            )
        )
        batch.add_column(
            sa.Column("locale", sa.String(length=16), nullable=False, server_default="pt-BR")
        )
    op.create_table(
        "tenant_erasures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_tenant_erasures_tenant_id"), "tenant_erasures", ["tenant_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_tenant_erasures_tenant_id"), table_name="tenant_erasures")
    op.drop_table("tenant_erasures")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("locale")
        batch.drop_column("timezone")
