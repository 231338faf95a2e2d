"""The message-store JSON of a message, written by the database itself.

A list page is the API's hottest read. Reading 100 rows into records and writing each
record's JSON in Python cost ten times what the SQL did, so the list's SELECT writes
each message's JSON itself: ``document(dialect)`` is that column, built with SQLite's
``json_object`` or PostgreSQL's ``json_build_object``, and ``array`` joins a page of
them into the JSON array the API splices into its answer.

The contract: the document is exactly ``Message.to_json(base)`` (records.py), with the
same keys in the same order and the same keys left out; ``base`` is the bind parameter
``BASE``. The two are written twice on purpose, and change together:
tests/integration/test_message_json.py compares them for every kind of message on
both databases. How each field is made:

- Keys whose value is None are left out, as ``to_json`` leaves them out: the object is
  built with every key and its nulls removed afterwards (``json_patch('{}', ...)`` on
  SQLite, which drops null members of objects but not of arrays, so each attachment
  is stripped by itself; ``json_strip_nulls`` on PostgreSQL). No key that ``to_json``
  always writes can be null: their columns are NOT NULL.
- ``from`` and ``to`` are the stored parties as they are: the mailbox writes them as
  ``Party.to_json`` does. An outbound fax's recipients get its ``messageStatus`` (and
  a non-empty ``faxErrorCode``) appended.
- Times are whole microseconds in the table; they are written as UTC with
  milliseconds cut (not rounded) and a Z, by integer arithmetic (floor division, so
  also before 1970).
- Attachments in ``position`` order: PostgreSQL's ``json_agg(... ORDER BY)``; SQLite
  3.40 has no ORDER BY inside an aggregate, so the rows come from a subquery ordered
  by position (SQLite keeps that order for an aggregate on purpose: its flattener
  never merges an ordered subquery into an aggregate query, since group_concat).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import aggregate_order_by

from gatewayd.mailbox._schema import attachments, messages
from gatewayd.mailbox.records import API_PREFIX

BASE = "base"  # the bind parameter: scheme, host and port, no trailing slash

_MICROS = 1_000_000


def _key(name: str) -> sa.ColumnElement[Any]:
    """A JSON key, inline in the SQL (fixed names; PostgreSQL needs their type)."""
    return sa.literal_column(f"'{name}'")


def _text(value: str) -> sa.ColumnElement[str]:
    return sa.literal_column("'" + value.replace("'", "''") + "'", sa.Text)


def _number(value: int) -> sa.ColumnElement[int]:
    return sa.literal_column(str(value), sa.BigInteger)


def _as_text(column: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
    return sa.cast(column, sa.Text)


class _Json:
    """What differs between the two databases, for one dialect."""

    def __init__(self, dialect_name: str) -> None:
        self.postgresql = dialect_name == "postgresql"

    def object(self, *pairs: tuple[str, Any]) -> sa.ColumnElement[Any]:
        args: list[Any] = []
        for name, value in pairs:
            args += [_key(name), value]
        if self.postgresql:
            return sa.func.json_build_object(*args)
        return sa.func.json_object(*args)

    def without_nulls(self, document: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        if self.postgresql:
            return sa.func.json_strip_nulls(document)
        return sa.func.json_patch(_text("{}"), document)

    def stored(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """A JSON column's value, as JSON (SQLite keeps it as text)."""
        return column if self.postgresql else sa.func.json(column)

    def boolean(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        if self.postgresql:
            return column
        return sa.case(
            (column == sa.true(), sa.func.json(_text("true"))),
            (column == sa.false(), sa.func.json(_text("false"))),
        )

    def iso(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[str]:
        """``2026-11-26T14:14:44.030Z`` from microseconds since the epoch (records.iso)."""
        micros = sa.type_coerce(column, sa.BigInteger)
        if self.postgresql:
            moment: sa.ColumnElement[Any] = sa.literal_column(
                "TIMESTAMP '1970-01-01 00:00:00'"
            ) + micros * (sa.literal_column("INTERVAL '1 microsecond'"))
            return sa.func.to_char(moment, _text('YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))
        second = _number(_MICROS)
        below = (micros % second + second) % second  # the fraction, also before 1970
        seconds = sa.func.strftime(
            _text("%Y-%m-%dT%H:%M:%S"), (micros - below) // second, _text("unixepoch")
        )
        return seconds.op("||")(sa.func.printf(_text(".%03dZ"), below // _number(1000)))

    def attachments(self, message_uri: sa.ColumnElement[str]) -> sa.ColumnElement[Any]:
        a = attachments.c
        ordered = sa.select(attachments).where(a.message_id == messages.c.id)
        if not self.postgresql:
            ordered = ordered.order_by(a.position)
        rows = ordered.correlate(messages).subquery("a")
        r = rows.c
        item = self.object(
            ("id", r.id),
            ("uri", message_uri + _text("/content/") + _as_text(r.id)),
            ("type", r.type),
            ("contentType", r.content_type),
            ("size", r.size),
            ("fileName", r.file_name),
            ("width", r.width),
            ("height", r.height),
            ("vmDuration", r.vm_duration),
        )
        aggregate: sa.ColumnElement[Any]
        if self.postgresql:  # nulls go with the whole document's
            aggregate = sa.func.coalesce(
                sa.func.json_agg(aggregate_order_by(item, r.position)),
                sa.literal_column("'[]'::json"),
            )
        else:
            aggregate = sa.func.json_group_array(self.without_nulls(item))
        return sa.select(aggregate).select_from(rows).scalar_subquery()

    def fax_recipients(self) -> sa.ColumnElement[Any]:
        """An outbound fax's ``to``: each party with the fax's status (and error)."""
        c = messages.c
        error = sa.func.nullif(c.fax_error_code, _text(""))
        if self.postgresql:
            party = (
                sa.func.json_array_elements(c.to_parties)
                .table_valued("value", with_ordinality="n")
                .render_derived("party")
            )
            p = party.c.value
            entry = self.object(
                ("phoneNumber", p.op("->")(_text("phoneNumber"))),
                ("extensionNumber", p.op("->")(_text("extensionNumber"))),
                ("extensionId", p.op("->")(_text("extensionId"))),
                ("name", p.op("->")(_text("name"))),
                ("location", p.op("->")(_text("location"))),
                ("messageStatus", c.message_status),
                ("faxErrorCode", error),
            )
            aggregate = sa.func.coalesce(
                sa.func.json_agg(aggregate_order_by(entry, party.c.n)),
                sa.literal_column("'[]'::json"),
            )
            return sa.select(aggregate).select_from(party).scalar_subquery()
        party = sa.func.json_each(c.to_parties).table_valued("value").alias("party")
        added = self.object(("messageStatus", c.message_status), ("faxErrorCode", error))
        patched = sa.func.json_patch(party.c.value, added)
        return sa.select(sa.func.json_group_array(patched)).select_from(party).scalar_subquery()


def document(dialect_name: str) -> sa.ColumnElement[str]:
    """The JSON text of the ``messages`` row in scope, as ``Message.to_json(base)``."""
    j = _Json(dialect_name)
    c = messages.c
    base = sa.bindparam(BASE, type_=sa.String)
    uri = (
        base
        + _text(f"{API_PREFIX}/account/")
        + _as_text(c.account_id)
        + _text("/extension/")
        + _as_text(c.extension_id)
        + _text("/message-store/")
        + _as_text(c.id)
    )
    sms, fax = c.type == _text("SMS"), c.type == _text("Fax")

    def only(condition: sa.ColumnElement[bool], value: Any) -> sa.ColumnElement[Any]:
        return sa.case((condition, value))

    outbound_fax = sa.and_(fax, c.direction == _text("Outbound"))
    doc = j.object(
        ("uri", uri),
        ("id", c.id),
        ("extensionId", _as_text(c.extension_id)),
        ("type", c.type),
        ("direction", c.direction),
        ("from", j.stored(c.from_party)),
        ("to", sa.case((outbound_fax, j.fax_recipients()), else_=j.stored(c.to_parties))),
        ("creationTime", j.iso(c.creation_time)),
        ("lastModifiedTime", j.iso(c.last_modified_time)),
        ("readStatus", c.read_status),
        ("priority", c.priority),
        ("availability", c.availability),
        ("messageStatus", c.message_status),
        ("attachments", j.attachments(uri)),
        ("subject", c.subject),
        ("conversationId", c.conversation_id),
        (
            "conversation",
            only(
                c.conversation_id.is_not(None),
                j.object(
                    ("id", _as_text(c.conversation_id)),
                    (
                        "uri",
                        base + _text(f"{API_PREFIX}/conversation/") + _as_text(c.conversation_id),
                    ),
                ),
            ),
        ),
        ("smsSendingAttemptsCount", only(sms, c.attempts)),
        ("smsDeliveryTime", only(sms, j.iso(c.sms_delivery_time))),
        ("deliveryErrorCode", only(sms, c.delivery_error_code)),
        ("faxResolution", only(fax, c.fax_resolution)),
        ("faxPageCount", only(fax, c.fax_page_count)),
        ("coverIndex", only(fax, c.cover_index)),
        ("coverPageText", only(fax, c.cover_page_text)),
        ("faxErrorCode", only(fax, c.fax_error_code)),
        ("vmTranscriptionStatus", c.vm_transcription_status),
        ("pgToDepartment", j.boolean(c.pg_to_department)),
    )
    out = j.without_nulls(doc)
    if j.postgresql:
        out = sa.cast(out, sa.Text)
    return sa.type_coerce(out, sa.Text)


def array(
    dialect_name: str, rows: sa.FromClause, newest_first: tuple[sa.ColumnElement[Any], ...]
) -> sa.ColumnElement[bytes]:
    """The JSON array of the ``document``s of ``rows`` (a FROM clause with the messages
    table in it), newest first, as UTF-8 bytes: one value, so the driver hands over one
    row rather than a row per message (on SQLite, each row is a trip through the GIL),
    and nothing is decoded into a str only to be encoded again.

    ``rows`` must be ordered by ``newest_first`` for SQLite (a subquery with that ORDER
    BY: SQLite 3.40 has no ORDER BY inside an aggregate, and keeps a subquery's order
    for an aggregate over it, as for the attachments); PostgreSQL orders the aggregate."""
    if dialect_name == "postgresql":
        # string_agg(document, ',' ORDER BY ...): the order goes with the last argument
        joined = sa.func.string_agg(rows.c.document, aggregate_order_by(_text(","), *newest_first))
    else:
        joined = sa.func.group_concat(rows.c.document, _text(","))
    text = _text("[") + sa.func.coalesce(joined, _text("")) + _text("]")
    if dialect_name == "postgresql":
        return sa.func.convert_to(text, _text("UTF8"))
    return sa.cast(text, sa.LargeBinary)
