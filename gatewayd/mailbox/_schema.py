"""The mailbox tables (SQLAlchemy Core). Alembic migrations create and upgrade them;
a test checks that the migrations and this module describe the same schema.

Times are stored as whole microseconds since the Unix epoch (UTC) in BIGINT columns:
compact, exactly ordered, and the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: mailbox times must carry a time zone")
    return (moment - EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    # A float holds every microsecond count below 2**53 (year 2255) exactly enough for
    # fromtimestamp's rounding to land on the right microsecond, and is 3x faster
    # than adding a timedelta (this runs for every time column of every row read).
    if 0 <= micros < 2**53:
        return datetime.fromtimestamp(micros / 1e6, UTC)
    return EPOCH + timedelta(microseconds=micros)


class UtcTimestamp(sa.types.TypeDecorator[datetime]):
    """An aware datetime stored as microseconds since the epoch."""

    impl = sa.BigInteger
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> int | None:
        return None if value is None else to_micros(value)

    def process_result_value(self, value: Any | None, dialect: Dialect) -> datetime | None:
        return None if value is None else from_micros(int(value))


# 64-bit keys. On SQLite a key declared INTEGER PRIMARY KEY is the rowid itself (64-bit
# there): one B-tree instead of two, and every index entry ends with it, so an index
# on (..., creation_time) also yields creation_time, id order without a sort.
_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", _KEY, primary_key=True, autoincrement=False),
    sa.Column("account_id", sa.BigInteger, nullable=False),
    sa.Column("extension_id", sa.BigInteger, nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("direction", sa.String(8), nullable=False),
    sa.Column("from_party", sa.JSON, nullable=False),
    sa.Column("to_parties", sa.JSON, nullable=False),
    # Searchable copies of from.phoneNumber and to[0].phoneNumber (the phoneNumber filter).
    sa.Column("from_number", sa.String(32)),
    sa.Column("to_number", sa.String(32)),
    sa.Column("creation_time", UtcTimestamp, nullable=False),
    sa.Column("last_modified_time", UtcTimestamp, nullable=False),
    sa.Column("read_status", sa.String(8), nullable=False),
    sa.Column("priority", sa.String(8), nullable=False),
    sa.Column("availability", sa.String(8), nullable=False),
    sa.Column("availability_changed_at", UtcTimestamp, nullable=False),
    sa.Column("message_status", sa.String(16), nullable=False),
    sa.Column("subject", sa.Text),
    sa.Column("conversation_id", sa.BigInteger),
    sa.Column("fax_resolution", sa.String(8)),
    sa.Column("fax_page_count", sa.Integer),
    sa.Column("cover_index", sa.Integer),
    sa.Column("cover_page_text", sa.Text),
    sa.Column("sms_delivery_time", UtcTimestamp),
    sa.Column("delivery_error_code", sa.String(32)),
    sa.Column("fax_error_code", sa.String(40)),
    sa.Column("vm_transcription_status", sa.String(24)),
    sa.Column("pg_to_department", sa.Boolean),
    # Dispatcher state. While a message is leased, next_attempt_at is the lease's expiry:
    # an expired lease makes the message due again without any clean-up.
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UtcTimestamp),
    sa.Column("lease_owner", sa.String(64)),
    sa.Column("send_time", UtcTimestamp),
    sa.Column("carrier", sa.String(32)),
    sa.Column("carrier_ref", sa.String(128)),
    sa.Column("failure_reason", sa.Text),
    sa.Column("sender_email", sa.String(320)),
    sa.Column("origin", sa.String(16), nullable=False),
    # Listing: one mailbox, newest first, within a date window; the common filters and
    # the conversation ride along so that counting a filtered window, and finding the
    # newest message of each conversation in it, read only the index (docs/mailbox.md).
    sa.Index(
        "ix_messages_mailbox",
        "extension_id",
        "availability",
        "creation_time",
        "type",
        "direction",
        "read_status",
        "conversation_id",
    ),
    sa.Index("ix_messages_conversation", "extension_id", "conversation_id", "creation_time"),
    # The phoneNumber filter: messages from or to one number.
    sa.Index("ix_messages_from_number", "extension_id", "from_number", "creation_time"),
    sa.Index("ix_messages_to_number", "extension_id", "to_number", "creation_time"),
    # The queue: only Queued rows are in this index.
    sa.Index(
        "ix_messages_queue",
        "type",
        "next_attempt_at",
        sqlite_where=sa.text("message_status = 'Queued'"),
        postgresql_where=sa.text("message_status = 'Queued'"),
    ),
    # The sweeper: Deleted and Purged rows by the time they got there.
    sa.Index("ix_messages_lifecycle", "availability", "availability_changed_at"),
)

message_parts = sa.Table(
    "message_parts",
    metadata,
    sa.Column(
        "message_id",
        sa.BigInteger,
        sa.ForeignKey("messages.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("part_index", sa.Integer, primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("link", sa.String(32)),
    sa.Column("carrier_id", sa.String(64)),
    sa.Column("error_code", sa.String(32)),
    sa.Column("submitted_at", UtcTimestamp),
    sa.Column("done_at", UtcTimestamp),
    sa.Index("ix_message_parts_carrier", "link", "carrier_id"),
)

attachments = sa.Table(
    "attachments",
    metadata,
    sa.Column("id", _KEY, primary_key=True, autoincrement=False),
    sa.Column(
        "message_id",
        sa.BigInteger,
        sa.ForeignKey("messages.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("type", sa.String(24), nullable=False),
    sa.Column("content_type", sa.String(128), nullable=False),
    sa.Column("file_name", sa.String(255)),
    sa.Column("size", sa.BigInteger, nullable=False),
    # The file holding the bytes; NULL when the content is the message's own text (the
    # Text attachment of an SMS or pager message repeats its subject: stored once).
    sa.Column("sha256", sa.String(64)),
    sa.Column("width", sa.Integer),
    sa.Column("height", sa.Integer),
    sa.Column("vm_duration", sa.Integer),
    sa.Index("ix_attachments_message_id", "message_id"),
    sa.Index("ix_attachments_sha256", "sha256"),
)

message_events = sa.Table(
    "message_events",
    metadata,
    sa.Column("id", _KEY, primary_key=True, autoincrement=True),
    sa.Column(
        "message_id",
        sa.BigInteger,
        sa.ForeignKey("messages.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("at", UtcTimestamp, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("from_value", sa.String(24)),
    sa.Column("to_value", sa.String(24)),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("detail", sa.JSON),
    sa.Index("ix_message_events_message_id", "message_id", "id"),
    # Status changes by the status entered and when (``gatewayd status``: what happened
    # in the last hour, the latest failures); only status events are in it.
    sa.Index(
        "ix_message_events_status",
        "to_value",
        "at",
        sqlite_where=sa.text("kind = 'status'"),
        postgresql_where=sa.text("kind = 'status'"),
    ),
)

# Parts of a concatenated inbound SMS, kept until the last one arrives (or the wait
# ends): each is acknowledged to the SMSC only once it is stored here.
sms_fragments = sa.Table(
    "sms_fragments",
    metadata,
    sa.Column("id", _KEY, primary_key=True, autoincrement=True),
    sa.Column("link", sa.String(32), nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("destination", sa.String(32), nullable=False),
    sa.Column("reference", sa.Integer, nullable=False),
    sa.Column("total", sa.Integer, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("received_at", UtcTimestamp, nullable=False),
    sa.UniqueConstraint("link", "source", "destination", "reference", "total", "seq"),
    sa.Index("ix_sms_fragments_received_at", "received_at"),
)

notifications = sa.Table(
    "notifications",
    metadata,
    sa.Column("id", _KEY, primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # fax_result, sms_failure, inbound_sms
    sa.Column("recipient", sa.String(320), nullable=False),
    sa.Column("state", sa.String(8), nullable=False),  # pending, sent, failed
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("next_attempt_at", UtcTimestamp, nullable=False),
    sa.Column("created_at", UtcTimestamp, nullable=False),
    sa.Column("sent_at", UtcTimestamp),
    sa.Column("last_error", sa.Text),
    sa.UniqueConstraint("message_id", "kind"),
    sa.Index("ix_notifications_due", "state", "next_attempt_at"),
)

notify_cursor = sa.Table(
    "notify_cursor",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),  # always 1
    sa.Column("last_event_id", sa.BigInteger, nullable=False),
)

# The nodes of a cluster (several daemons on one database): one row per node name,
# written at start and by each heartbeat. ``instance`` names one life of the node: a
# second daemon that takes a stale node's name gets a new one, and the old life, if
# it wakes up, sees that it is no longer the node.
nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("instance", sa.String(32), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("started_at", UtcTimestamp, nullable=False),
    sa.Column("heartbeat_at", UtcTimestamp, nullable=False),
    sa.Column("stopped_at", UtcTimestamp),
    sa.Column("info", sa.JSON),
)

# Attachment bytes in the database, for a mailbox every node must read (PostgreSQL):
# content-addressed, in chunks of at most 1 MiB, so nothing holds a whole file.
blobs = sa.Table(
    "blobs",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("stored_at", UtcTimestamp, nullable=False),  # written or re-used
)

blob_chunks = sa.Table(
    "blob_chunks",
    metadata,
    sa.Column(
        "sha256",
        sa.String(64),
        sa.ForeignKey("blobs.sha256", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

# Rate limits counted where every node sees them: a fixed window per key, and the
# end of a penalty.
rate_limits = sa.Table(
    "rate_limits",
    metadata,
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("window_start", UtcTimestamp, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("penalty_until", UtcTimestamp),
)

# Receipts for parts no node had recorded yet (the receipt came first, possibly on
# another node's bind): applied as soon as their part is recorded, given up after a
# while.
parked_receipts = sa.Table(
    "parked_receipts",
    metadata,
    sa.Column("id", _KEY, primary_key=True, autoincrement=True),
    sa.Column("link", sa.String(32), nullable=False),
    sa.Column("carrier_id", sa.String(64), nullable=False),
    sa.Column("receipt", sa.JSON, nullable=False),
    sa.Column("received_at", UtcTimestamp, nullable=False),
    sa.Index("ix_parked_receipts_link", "link", "carrier_id"),
)

# Signed-in web console users: a session is known by the SHA-256 of its cookie (the
# cookie itself is never stored), so every node of a cluster knows it and a restart
# signs no one out.
console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("key_hash", sa.String(64), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("created_at", UtcTimestamp, nullable=False),
    sa.Column("expires_at", UtcTimestamp, nullable=False),
    sa.Index("ix_console_sessions_expires_at", "expires_at"),
)

# API tokens made by ``gatewayd token create``: only the token's SHA-256 is kept (in the
# config's ``sha256$<hex>`` form). A token belongs to the user of the config with its
# extension; ``email`` is the address it was made for (shown by ``token list``).
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", _KEY, primary_key=True, autoincrement=True),
    sa.Column("token_hash", sa.String(80), nullable=False),
    sa.Column("account_id", sa.BigInteger, nullable=False),
    sa.Column("extension_id", sa.BigInteger, nullable=False),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("created_at", UtcTimestamp, nullable=False),
    sa.Column("expires_at", UtcTimestamp),
    sa.Column("revoked_at", UtcTimestamp),
    sa.UniqueConstraint("token_hash"),
)
