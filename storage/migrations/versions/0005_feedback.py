"""Feedback: events (bounces, complaints, unsubscribes), the webhook outbox and per-client daily counters.

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
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("hard_bounces", sa.Integer(), nullable=False),
        sa.Column("soft_bounces", sa.Integer(), nullable=False),
        sa.Column("complaints", sa.Integer(), nullable=False),
        sa.Column("sender_faults", sa.Integer(), nullable=False),
        sa.Column("unsubscribes", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("client", "list_name", "day"),
    )
    op.create_table(
        "feedback_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client", sa.String(), nullable=False),
        sa.Column("list_key", sa.String(), nullable=False),
        sa.Column("recipient", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("category", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("detail", sa.String(), nullable=False),
        sa.Column("queue_id", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("dedupe", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("dedupe"),
    )
    op.create_index("ix_feedback_event_client_id", "feedback_event", ["client", "id"])
    op.create_index("ix_feedback_event_soft", "feedback_event", ["client", "recipient", "category", "at"])
    op.create_table(
        "webhook_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client", sa.String(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(), nullable=False),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_webhook_outbox_next_attempt_at", "webhook_outbox", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_outbox_next_attempt_at", table_name="webhook_outbox")
    op.drop_table("webhook_outbox")
    op.drop_index("ix_feedback_event_soft", table_name="feedback_event")
    op.drop_index("ix_feedback_event_client_id", table_name="feedback_event")
    op.drop_table("feedback_event")
    op.drop_table("client_counter")
