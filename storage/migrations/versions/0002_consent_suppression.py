"""Consent records with history, and suppressions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "consent",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("client", sa.String(), nullable=False),
        sa.Column("list_key", sa.String(), nullable=False),
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("method", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("signed_up_at", TS, nullable=False),
        sa.Column("ip", sa.String(), nullable=True),
        sa.Column("disclosure", sa.String(), nullable=False),
        sa.Column("confirmed_at", TS, nullable=True),
        sa.Column("last_contact_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("extra", sa.String(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ux_consent_client_list_address", "consent", ["client", "list_key", "address"], unique=True)
    op.create_table(
        "consent_event",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("client", sa.String(), nullable=False),
        sa.Column("list_key", sa.String(), nullable=False),
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("event", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("ip", sa.String(), nullable=True),
        sa.Column("detail", sa.String(), nullable=False),
    )
    op.create_index("ix_consent_event_lookup", "consent_event", ["client", "address"])
    op.create_index("ix_consent_event_client_at", "consent_event", ["client", "at"])
    op.create_table(
        "suppression",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("scope", sa.String(), nullable=False),
        sa.Column("client", sa.String(), nullable=False),
        sa.Column("list_key", sa.String(), nullable=False),
        sa.Column("address", sa.String(), nullable=False),
        sa.Column("domain", sa.String(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ux_suppression_target", "suppression",
                    ["scope", "client", "list_key", "address", "domain"], unique=True)
    op.create_index("ix_suppression_address", "suppression", ["address"])
    op.create_index("ix_suppression_domain", "suppression", ["domain"])
    op.create_index("ix_suppression_client_at", "suppression", ["client", "created_at"])


def downgrade() -> None:
    op.drop_table("suppression")
    op.drop_table("consent_event")
    op.drop_table("consent")
