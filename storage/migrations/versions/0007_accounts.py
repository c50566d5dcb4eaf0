"""Client accounts: states with their history, volume counters, campaigns and canaries, repeat guard.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-07
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: Union[str, Sequence[str], None] = "0006"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "account_clock",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO account_clock (id, version) VALUES (1, 0)")
    op.create_table(
        "account_state",
        sa.Column("client", sa.String(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("changed_at", _TIME, nullable=False),
        sa.PrimaryKeyConstraint("client"),
    )
    op.create_table(
        "account_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("client", sa.String(), nullable=False),
        sa.Column("old_state", sa.String(), nullable=False),
        sa.Column("new_state", sa.String(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("evidence", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_account_event_client_at", "account_event", ["client", "at"])
    op.create_table(
        "rate_counter",
        sa.Column("client", sa.String(), nullable=False),
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("span", sa.String(), nullable=False),
        sa.Column("bucket", sa.BigInteger(), nullable=False),
        sa.Column("n", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("client", "scope", "span", "bucket"),
    )
    op.create_table(
        "campaign",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("client", sa.String(), nullable=False),
        sa.Column("list_key", sa.String(), nullable=False),
        sa.Column("label", sa.String(), nullable=False),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("declared_size", sa.Integer(), nullable=True),
        sa.Column("seen", sa.Integer(), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("held", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(), nullable=False),
        sa.Column("started_at", _TIME, nullable=False),
        sa.Column("hold_until", _TIME, nullable=True),
        sa.Column("decided_at", _TIME, nullable=True),
        sa.Column("decided_by", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_campaign_client_started", "campaign", ["client", "started_at"])
    op.create_index("ix_campaign_state_hold", "campaign", ["state", "hold_until"])
    op.create_table(
        "canary_recipient",
        sa.Column("campaign_id", sa.String(), nullable=False),
        sa.Column("recipient", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("campaign_id", "recipient"),
    )
    op.create_table(
        "recent_copy",
        sa.Column("client", sa.String(), nullable=False),
        sa.Column("fingerprint", sa.String(), nullable=False),
        sa.Column("recipient", sa.String(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("queue_id", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("client", "fingerprint", "recipient", "day"),
    )
    op.create_index("ix_recent_copy_day", "recent_copy", ["day"])


def downgrade() -> None:
    op.drop_index("ix_recent_copy_day", table_name="recent_copy")
    op.drop_table("recent_copy")
    op.drop_table("canary_recipient")
    op.drop_index("ix_campaign_state_hold", table_name="campaign")
    op.drop_index("ix_campaign_client_started", table_name="campaign")
    op.drop_table("campaign")
    op.drop_table("rate_counter")
    op.drop_index("ix_account_event_client_at", table_name="account_event")
    op.drop_table("account_event")
    op.drop_table("account_state")
    op.drop_table("account_clock")
