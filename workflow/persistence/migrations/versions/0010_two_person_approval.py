"""An account's two-person approval threshold (R23): its amount and currency.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 18:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("approval_second_above", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("approval_currency", sa.String(length=3), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("approval_currency")
        batch.drop_column("approval_second_above")
