"""API tokens in the database (``gatewayd token create``), and status events found
by the status they entered and when (``gatewayd status``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
STATUS_ONLY = sa.text("kind = 'status'")


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(80), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("extension_id", sa.BigInteger(), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=True),
        sa.Column("revoked_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_index(
        "ix_message_events_status",
        "message_events",
        ["to_value", "at"],
        sqlite_where=STATUS_ONLY,
        postgresql_where=STATUS_ONLY,
    )


def downgrade() -> None:
    op.drop_index("ix_message_events_status", table_name="message_events")
    op.drop_table("api_tokens")
