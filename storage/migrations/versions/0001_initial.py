"""Initial schema: audit log and delivery spool.

Revision ID: 0001
Revises:
Create Date: 2025-11-23
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Plain DateTime(timezone=True) here, not storage.models.UTCDateTime: migrations
# must not change when application code does. The DDL is identical.
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("client", sa.String(), nullable=False),
        sa.Column("list_key", sa.String(), nullable=True),
        sa.Column("recipient", sa.String(), nullable=False),
        sa.Column("stage", sa.String(), nullable=False),
        sa.Column("rule", sa.String(), nullable=False),
        sa.Column("verdict", sa.String(), nullable=False),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(), nullable=True),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("message_id", sa.String(), nullable=True),
        sa.Column("queue_id", sa.String(), nullable=False),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_queue_id", "audit_log", ["queue_id"])
    op.create_index("ix_audit_log_client_at", "audit_log", ["client", "at"])

    op.create_table(
        "spool",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("queue_id", sa.String(), nullable=False),
        sa.Column("client", sa.String(), nullable=False),
        sa.Column("mail_from", sa.String(), nullable=False),
        sa.Column("recipient", sa.String(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(), nullable=False),
        sa.Column("lease_until", TS, nullable=True),
    )
    op.create_index("ix_spool_next_attempt_at", "spool", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_spool_next_attempt_at", table_name="spool")
    op.drop_table("spool")
    op.drop_index("ix_audit_log_client_at", table_name="audit_log")
    op.drop_index("ix_audit_log_queue_id", table_name="audit_log")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
