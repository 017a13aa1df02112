"""event sources: sources.yaml applied to the database with rules and endpoints

`hub mappings apply` writes each source as an `event_sources` row (name, version, checksum,
definition, active), as it writes endpoints, and counts them in `config_versions.sources`, so
every web host serves the sources of the config version it watches instead of its own copy of
the file. Until the next apply the table is empty: run `hub mappings apply` after this migration.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "event_sources",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("checksum", sa.String(length=64), nullable=False),
        sa.Column("definition", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime()
            .with_variant(mysql.DATETIME(fsp=6), "mariadb")
            .with_variant(mysql.DATETIME(fsp=6), "mysql"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", "version", name="uq_event_sources_name_version"),
    )
    with op.batch_alter_table("config_versions") as batch:
        batch.add_column(sa.Column("sources", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("config_versions") as batch:
        batch.drop_column("sources")
    op.drop_table("event_sources")
