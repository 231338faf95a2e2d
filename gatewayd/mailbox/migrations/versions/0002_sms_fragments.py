"""Parts of concatenated inbound SMS, kept until the message is whole.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sms_fragments",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("link", sa.String(32), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("destination", sa.String(32), nullable=False),
        sa.Column("reference", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sms_fragments"),
        sa.UniqueConstraint(
            "link",
            "source",
            "destination",
            "reference",
            "total",
            "seq",
            name="uq_sms_fragments_link_source_destination_reference_total_seq",
        ),
    )
    op.create_index("ix_sms_fragments_received_at", "sms_fragments", ["received_at"])


def downgrade() -> None:
    op.drop_table("sms_fragments")
