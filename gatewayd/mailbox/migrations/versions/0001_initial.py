"""The initial mailbox: messages, their SMS parts, attachments and events.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Times are microseconds since the epoch; keys are INTEGER PRIMARY KEY (the rowid) on
# SQLite (see mailbox/_schema.py).
TIME = sa.BigInteger
KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
QUEUED_ONLY = sa.text("message_status = 'Queued'")


def _message_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["message_id"], ["messages.id"], name=f"fk_{table}_message_id_messages", ondelete="CASCADE"
    )


def upgrade() -> None:
    op.create_table(
        "messages",
        sa.Column("id", KEY, autoincrement=False, nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("extension_id", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("from_party", sa.JSON(), nullable=False),
        sa.Column("to_parties", sa.JSON(), nullable=False),
        sa.Column("from_number", sa.String(32)),
        sa.Column("to_number", sa.String(32)),
        sa.Column("creation_time", TIME(), nullable=False),
        sa.Column("last_modified_time", TIME(), nullable=False),
        sa.Column("read_status", sa.String(8), nullable=False),
        sa.Column("priority", sa.String(8), nullable=False),
        sa.Column("availability", sa.String(8), nullable=False),
        sa.Column("availability_changed_at", TIME(), nullable=False),
        sa.Column("message_status", sa.String(16), nullable=False),
        sa.Column("subject", sa.Text()),
        sa.Column("conversation_id", sa.BigInteger()),
        sa.Column("fax_resolution", sa.String(8)),
        sa.Column("fax_page_count", sa.Integer()),
        sa.Column("cover_index", sa.Integer()),
        sa.Column("cover_page_text", sa.Text()),
        sa.Column("sms_delivery_time", TIME()),
        sa.Column("delivery_error_code", sa.String(32)),
        sa.Column("fax_error_code", sa.String(40)),
        sa.Column("vm_transcription_status", sa.String(24)),
        sa.Column("pg_to_department", sa.Boolean()),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", TIME()),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("send_time", TIME()),
        sa.Column("carrier", sa.String(32)),
        sa.Column("carrier_ref", sa.String(128)),
        sa.Column("failure_reason", sa.Text()),
        sa.Column("sender_email", sa.String(320)),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
    )
    op.create_index(
        "ix_messages_mailbox",
        "messages",
        ["extension_id", "availability", "creation_time", "type", "direction", "read_status"],
    )
    op.create_index(
        "ix_messages_conversation",
        "messages",
        ["extension_id", "conversation_id", "creation_time"],
    )
    for column in ("from_number", "to_number"):
        op.create_index(
            f"ix_messages_{column}", "messages", ["extension_id", column, "creation_time"]
        )
    op.create_index(
        "ix_messages_queue",
        "messages",
        ["type", "next_attempt_at"],
        sqlite_where=QUEUED_ONLY,
        postgresql_where=QUEUED_ONLY,
    )
    op.create_index(
        "ix_messages_lifecycle", "messages", ["availability", "availability_changed_at"]
    )

    op.create_table(
        "message_parts",
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("part_index", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("link", sa.String(32)),
        sa.Column("carrier_id", sa.String(64)),
        sa.Column("error_code", sa.String(32)),
        sa.Column("submitted_at", TIME()),
        sa.Column("done_at", TIME()),
        _message_fk("message_parts"),
        sa.PrimaryKeyConstraint("message_id", "part_index", name="pk_message_parts"),
    )
    op.create_index("ix_message_parts_carrier", "message_parts", ["link", "carrier_id"])

    op.create_table(
        "attachments",
        sa.Column("id", KEY, autoincrement=False, nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(24), nullable=False),
        sa.Column("content_type", sa.String(128), nullable=False),
        sa.Column("file_name", sa.String(255)),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64)),
        sa.Column("width", sa.Integer()),
        sa.Column("height", sa.Integer()),
        sa.Column("vm_duration", sa.Integer()),
        _message_fk("attachments"),
        sa.PrimaryKeyConstraint("id", name="pk_attachments"),
    )
    op.create_index("ix_attachments_message_id", "attachments", ["message_id"])
    op.create_index("ix_attachments_sha256", "attachments", ["sha256"])

    op.create_table(
        "message_events",
        sa.Column("id", KEY, autoincrement=True, nullable=False),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("at", TIME(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("from_value", sa.String(24)),
        sa.Column("to_value", sa.String(24)),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("detail", sa.JSON()),
        _message_fk("message_events"),
        sa.PrimaryKeyConstraint("id", name="pk_message_events"),
    )
    op.create_index("ix_message_events_message_id", "message_events", ["message_id", "id"])


def downgrade() -> None:
    for table in ("message_events", "attachments", "message_parts", "messages"):
        op.drop_table(table)
