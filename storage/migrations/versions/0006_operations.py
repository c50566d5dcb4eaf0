"""Operations: the upstream's queue id in the audit log, and a hold flag on spooled copies.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-07
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: Union[str, Sequence[str], None] = "0005"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # plain ADD COLUMN (nullable, or with a constant default): no table rebuild on SQLite, no
    # rewrite on PostgreSQL 11+, so a big audit log migrates at once
    op.add_column("audit_log", sa.Column("upstream_queue_id", sa.String(), nullable=True))
    op.add_column("spool", sa.Column("held", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("spool") as batch:
        batch.drop_column("held")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("upstream_queue_id")
