"""unique dead letters: at most one open per (delivery or event, stage)

`open_key` is "stage:delivery id" ("stage:event id" for a mapping dead letter) while the letter
is open and NULL once it is replayed or discarded; a unique index on it makes two workers that
give up on the same thing write one row (hub.core.dead_letters folds the second into it).
Existing open duplicates keep the newest open; the older ones are marked discarded.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dead_letter") as batch:
        batch.add_column(sa.Column("open_key", sa.String(length=48), nullable=True))
    letters = sa.table(
        "dead_letter",
        sa.column("id", sa.String),
        sa.column("delivery_id", sa.String),
        sa.column("event_id", sa.String),
        sa.column("stage", sa.String),
        sa.column("status", sa.String),
        sa.column("created_at", sa.DateTime),
        sa.column("resolved_at", sa.DateTime),
        sa.column("open_key", sa.String),
    )
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(letters.c.id, letters.c.delivery_id, letters.c.event_id, letters.c.stage)
        .where(letters.c.status == "open")
        .order_by(letters.c.created_at.desc(), letters.c.id.desc())
    ).all()
    seen: set[str] = set()
    for row in rows:
        key = f"{row.stage}:{row.delivery_id or row.event_id}"
        if key in seen:  # an older duplicate: closed, the newest stays open
            conn.execute(
                letters.update()
                .where(letters.c.id == row.id)
                .values(status="discarded", resolved_at=sa.func.now())
            )
            continue
        seen.add(key)
        conn.execute(letters.update().where(letters.c.id == row.id).values(open_key=key))
    with op.batch_alter_table("dead_letter") as batch:
        batch.create_index("uq_dead_letter_open_key", ["open_key"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("dead_letter") as batch:
        batch.drop_index("uq_dead_letter_open_key")
        batch.drop_column("open_key")
