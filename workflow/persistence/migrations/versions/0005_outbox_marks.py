"""The outbox written once: the relay's marks replace ``published_at``; the indexes no
query needs go (the unique ``event_id``, the index of unpublished rows), and requests are
indexed by state only while pending (the only state a query asks for by index).

Marking each row published rewrote its whole payload (an UPDATE per event, with new index
entries). Now the relay inserts one row per batch into ``outbox_published``. The upgrade
marks everything up to the oldest unpublished event; events after it that were already
published are published once more (consumers dedupe on ``event_id``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 14:00:00
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    marks = op.create_table(
        "outbox_published",
        sa.Column("upto_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("upto_id", name=op.f("pk_outbox_published")),
    )
    conn = op.get_bind()
    oldest_waiting, newest, last_published = conn.execute(
        sa.text(
            "SELECT (SELECT min(id) FROM outbox WHERE published_at IS NULL), "
            "(SELECT max(id) FROM outbox), (SELECT max(published_at) FROM outbox)"
        )
    ).one()
    upto = newest if oldest_waiting is None else oldest_waiting - 1
    if upto:
        at = last_published or datetime.now(UTC).replace(tzinfo=None)
        if isinstance(at, str):  # SQLite hands the stored text back
            at = datetime.fromisoformat(at)
        op.bulk_insert(marks, [{"upto_id": upto, "at": at}])
    op.drop_index("ix_outbox_unpublished", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_constraint("uq_outbox_event_id", type_="unique")
        batch.drop_column("published_at")
    op.drop_index("ix_requests_state_created", table_name="requests")
    op.create_index(
        "ix_requests_pending_created",
        "requests",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("state = 'pending'"),
        sqlite_where=sa.text("state = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index("ix_requests_pending_created", table_name="requests")
    op.create_index("ix_requests_state_created", "requests", ["state", "created_at"], unique=False)
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("published_at", sa.DateTime(), nullable=True))
        batch.create_unique_constraint("uq_outbox_event_id", ["event_id"])
    op.execute(
        "UPDATE outbox SET published_at = (SELECT min(at) FROM outbox_published "
        "WHERE outbox_published.upto_id >= outbox.id)"
    )
    op.create_index(
        "ix_outbox_unpublished",
        "outbox",
        ["id"],
        unique=False,
        postgresql_where=sa.text("published_at IS NULL"),
        sqlite_where=sa.text("published_at IS NULL"),
    )
    op.drop_table("outbox_published")
