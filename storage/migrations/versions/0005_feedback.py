"""Per-client delivery and feedback counters (client_counter), read by the reputation rules.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: Union[str, Sequence[str], None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "client_counter",
        sa.Column("client", sa.String(), nullable=False),
        sa.Column("list_name", sa.String(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False, server_default="0")
          for name in ("delivered", "hard_bounces", "soft_bounces", "complaints", "sender_faults", "unsubscribes")),
        sa.PrimaryKeyConstraint("client", "list_name", "day"),
    )


def downgrade() -> None:
    op.drop_table("client_counter")
