"""The listing index carries conversation_id too, so that distinctConversations finds
the newest message of each conversation in a window from the index alone.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BEFORE = ["extension_id", "availability", "creation_time", "type", "direction", "read_status"]


def upgrade() -> None:
    op.drop_index("ix_messages_mailbox", table_name="messages")
    op.create_index("ix_messages_mailbox", "messages", [*BEFORE, "conversation_id"])
    _restore_statistics()


def _restore_statistics() -> None:
    """SQLite forgets a dropped index's statistics. Where the table had some (someone
    ran ANALYZE), leaving the new index without would make the planner take it for
    the most selective one, also for the phoneNumber filter: analyse the table again.
    PostgreSQL keeps statistics by column, not by index."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    analysed = bind.execute(
        sa.text("SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'")
    ).scalar_one()
    if analysed:
        op.execute("ANALYZE messages")


def downgrade() -> None:
    op.drop_index("ix_messages_mailbox", table_name="messages")
    op.create_index("ix_messages_mailbox", "messages", BEFORE)
