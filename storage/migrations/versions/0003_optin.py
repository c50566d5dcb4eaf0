"""Confirmed opt-in bookkeeping on consent records.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table("consent") as batch:
        batch.add_column(sa.Column("user_agent", sa.String(), nullable=False, server_default=""))
        batch.add_column(sa.Column("confirm_sent_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("confirm_sends", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("consent") as batch:
        batch.drop_column("confirm_sends")
        batch.drop_column("confirm_sent_at")
        batch.drop_column("user_agent")
