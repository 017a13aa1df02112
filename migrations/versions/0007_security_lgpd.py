"""security and LGPD: tenant secrets, encrypted headers, person index, erasures, audit log

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TIMESTAMP = (
    sa.DateTime()
    .with_variant(mysql.DATETIME(fsp=6), "mariadb")
    .with_variant(mysql.DATETIME(fsp=6), "mysql")
)
BLOB = (
    sa.LargeBinary()
    .with_variant(mysql.LONGBLOB(), "mariadb")
    .with_variant(mysql.LONGBLOB(), "mysql")
)
BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ERASABLE = ("integration_events", "webhook_deliveries", "dead_letter")


def upgrade() -> None:
    with op.batch_alter_table("integration_events") as batch:
        batch.add_column(sa.Column("sealed_headers", BLOB, nullable=True))
    for table in ERASABLE:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("erased_at", TIMESTAMP, nullable=True))
    op.create_table(
        "tenant_secrets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("value", BLOB, nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "name", name="uq_tenant_secrets_tenant_name"),
    )
    op.create_table(
        "person_index",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["event_id"], ["integration_events.id"]),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_person_index_digest", "person_index", ["digest", "tenant_id"])
    op.create_index("ix_person_index_event_id", "person_index", ["event_id"])
    op.create_table(
        "erasures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("kinds", sa.String(length=32), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("dead_letters", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", BIGID, autoincrement=True, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_log_created_at", "audit_log", ["created_at"])
    op.create_index("ix_audit_log_tenant_created", "audit_log", ["tenant_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_tenant_created", table_name="audit_log")
    op.drop_index("ix_audit_log_created_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("erasures")
    op.drop_index("ix_person_index_event_id", table_name="person_index")
    op.drop_index("ix_person_index_digest", table_name="person_index")
    op.drop_table("person_index")
    op.drop_table("tenant_secrets")
    for table in reversed(ERASABLE):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("erased_at")
    with op.batch_alter_table("integration_events") as batch:
        batch.drop_column("sealed_headers")
