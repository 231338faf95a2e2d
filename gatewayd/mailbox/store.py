"""The unified mailbox: every message of every extension, durable, and the queue.

``Mailbox`` is the one door the rest of gatewayd uses: every read and write it needs
is a method here, with typed arguments and results, and every failure of the database
underneath is a StoreError (gatewayd.errors). Behind the door the work is split by
what it does, and each part is given only the database, clock and blob store it needs:

- _create.py: new messages (bytes first, then rows and a creation event, group-committed)
- _changes.py: one message's status, rendered pages, notes, read state, availability
- _ledger.py: what SMSCs say of SMS parts, written in bulk
- _queue.py: leases of due Queued messages, retries, carrier jobs
- _queries.py: the message-store list and message sync; _message_json.py: the list's
  JSON, written by the database (``find_json``)
- _lifecycle.py: the sweeper and blob erasure
- _fragments.py, _notifications.py: parts of inbound SMS; the notifier's cursor and queue
- _resend.py: cancelling a Queued message, sending a failed one again
- _activity.py, _sessions.py: status changes by time and who is signed in (the web console)
- _overview.py: the queue, recent statuses and failures at a glance
- _tokens.py: API tokens (their hashes)

Every status a message enters is told, once committed, to the watchers given to
``watch_status`` (the daemon's metrics count them there).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from gatewayd.clock import Clock, SystemClock
from gatewayd.config.settings import MailboxSettings
from gatewayd.errors import MessageNotFound, StoreError
from gatewayd.logging import get_logger
from gatewayd.mailbox import (
    _activity,
    _fragments,
    _nodes,
    _notifications,
    _overview,
    _queries,
    _queue,
    _resend,
    _sessions,
    _tokens,
)
from gatewayd.mailbox._blobs import BlobStore, DatabaseBlobStore, FileBlobStore
from gatewayd.mailbox._changes import Changes
from gatewayd.mailbox._create import Creator
from gatewayd.mailbox._database import Database
from gatewayd.mailbox._ids import new_id
from gatewayd.mailbox._ledger import Ledger
from gatewayd.mailbox._lifecycle import Lifecycle
from gatewayd.mailbox._rates import DatabaseRates, MemoryRates, Rates
from gatewayd.mailbox._roles import Roles
from gatewayd.mailbox._rows import (
    event_from_row,
    fetch_message,
    load_messages,
    message_row,
    parts_of,
    select_messages,
)
from gatewayd.mailbox._schema import message_events, messages, parked_receipts
from gatewayd.mailbox._status import StatusFeed, StatusWatcher
from gatewayd.mailbox.records import (
    ApiToken,
    Attachment,
    ConsoleSession,
    Content,
    Event,
    Failure,
    Fragment,
    Message,
    NewMessage,
    Node,
    NotificationDue,
    Outcome,
    Part,
    PartAccepted,
    PartRefused,
    RateState,
    ReceiptIn,
    SmsToSend,
    StatusBucket,
    StatusCount,
    StatusTally,
    SweepReport,
)
from gatewayd.model import (
    AvailabilityAction,
    FaxErrorCode,
    MessageStatus,
    MessageType,
    PartStatus,
    ReadStatus,
)

log = get_logger("gatewayd.mailbox")


class Mailbox:
    def __init__(
        self, settings: MailboxSettings, db: Database, blobs: BlobStore, clock: Clock
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._db = db
        self._blobs = blobs
        self._feed = StatusFeed()
        self._lifecycle = Lifecycle(settings, db, blobs, clock)
        self._creator = Creator(db, blobs, clock, self._lifecycle, self._feed)
        self._changes = Changes(db, blobs, clock, self._lifecycle, self._feed)
        self._ledger = Ledger(db, clock, self._feed)
        self._roles = Roles(db)
        self._rates: Rates = MemoryRates(clock) if db.is_sqlite else DatabaseRates(db, clock)

    @classmethod
    async def open(cls, settings: MailboxSettings, *, clock: Clock | None = None) -> Mailbox:
        """Open (creating if needed) the database and blob store, migrating the schema.
        Attachment bytes are files under data_dir with SQLite, rows in the database
        with PostgreSQL (every node of a cluster reads them)."""
        clock = clock or SystemClock()
        db = Database(settings)
        blobs: FileBlobStore | DatabaseBlobStore
        if settings.is_sqlite:
            blobs = FileBlobStore(settings.blob_dir)
        else:
            blobs = DatabaseBlobStore(db, clock, settings.data_dir / "scratch")
        try:
            await asyncio.to_thread(_private_files, settings)
            await asyncio.to_thread(blobs.prepare)
        except OSError as exc:
            await db.close()
            raise StoreError(
                f"mailbox.data_dir {str(settings.data_dir)!r}: {exc.strerror}"
            ) from exc
        try:
            revision = await db.migrate()
        except BaseException:
            await db.close()
            raise
        log.info(
            "mailbox.opened",
            database=db.describe(),
            revision=revision,
            blobs=str(settings.blob_dir) if settings.is_sqlite else "database",
        )
        return cls(settings, db, blobs, clock)

    async def close(self) -> None:
        await self._creator.close()
        await self._ledger.close()
        await self._roles.release_all()
        await self._db.close()

    @property
    def shared(self) -> bool:
        """Whether several nodes may share this mailbox (PostgreSQL)."""
        return not self._db.is_sqlite

    def describe(self) -> str:
        """Where the mailbox is (its database URL without a password), for people."""
        return self._db.describe()

    def watch_status(self, watcher: StatusWatcher) -> None:
        """Call ``watcher`` with every status a message enters through this Mailbox
        (created, sent, failed, ...), once it is committed."""
        self._feed.watchers.append(watcher)

    async def ping(self) -> None:
        """One round trip to the database; StoreUnavailable when it cannot be reached."""
        await _overview.ping(self._db)

    # -- creating ---------------------------------------------------------------------

    async def create(self, new: NewMessage) -> Message:
        return (await self.create_many([new]))[0]

    async def create_many(self, batch: Sequence[NewMessage]) -> list[Message]:
        """Store several messages atomically: all of them or none (one email with
        several recipients becomes several messages)."""
        return await self._creator.create_many(batch)

    def create_texts(
        self, batch: Sequence[NewMessage], *, eager: bool = True
    ) -> asyncio.Future[list[Message]]:
        """``create_many`` for SMS and pager messages (no attachment bytes), without a
        task: the future of their records (the API's short way, api/sms_route.py, and
        the SMTP door's for a mail of SMS only). Cancelling the future stops nothing:
        the messages are written all the same. ``eager=False`` for a caller that waits
        alone (an SMTP client): its one-message batches go to the writer thread
        (mailbox/_commit.py)."""
        return self._creator.create_texts(batch, eager=eager)

    @staticmethod
    def new_conversation_id() -> int:
        """A fresh id for a new thread (a pager message and its copies share one)."""
        return new_id()

    # -- reading ----------------------------------------------------------------------

    async def get(self, message_id: int, *, extension_id: int | None = None) -> Message:
        async with self._db.read() as conn:
            return await fetch_message(conn, message_id, extension_id=extension_id)

    async def get_many(self, message_ids: Collection[int]) -> dict[int, Message]:
        """The messages of these ids that exist, in one query."""
        if not message_ids:
            return {}
        async with self._db.read() as conn:
            query = select_messages(conn).where(messages.c.id.in_(sorted(message_ids)))
            return {m.id: m for m in await load_messages(conn, query)}

    async def find(self, query: _queries.MessageQuery) -> _queries.MessagePage:
        """A page of a mailbox, with the message store's filters and defaults."""
        return await _queries.list_messages(self._db, self.clock, query)

    async def find_json(self, query: _queries.MessageQuery, base_url: str) -> _queries.JsonPage:
        """The same page as ``find``, its records already the message store's JSON
        (each ``Message.to_json(base_url)``), written by the database: the API's list."""
        return await _queries.list_json(self._db, self.clock, query, base_url)

    async def sync(self, query: _queries.SyncQuery) -> list[Message]:
        """A mailbox's messages for a full or an incremental message sync."""
        return await _queries.sync_messages(self._db, query)

    async def events(self, message_id: int) -> list[Event]:
        async with self._db.read() as conn:
            await message_row(conn, message_id)
            result = await conn.execute(
                sa.select(message_events)
                .where(message_events.c.message_id == message_id)
                .order_by(message_events.c.id)
            )
            return [event_from_row(r) for r in result.mappings()]

    async def parts(self, message_id: int) -> list[Part]:
        async with self._db.read() as conn:
            await message_row(conn, message_id)
            return await parts_of(conn, message_id)

    async def counts(self) -> list[StatusCount]:
        """Messages per type and status, with the creation time of the oldest."""
        c = messages.c
        query = sa.select(
            c.type, c.message_status, sa.func.count(), sa.func.min(c.creation_time)
        ).group_by(c.type, c.message_status)
        async with self._db.read() as conn:
            found = (await conn.execute(query)).all()
        return [
            StatusCount(MessageType(kind), MessageStatus(status), count, oldest)
            for kind, status, count, oldest in found
        ]

    async def queue(self) -> list[StatusCount]:
        """Queued messages per type, with the creation time of the oldest (from the
        queue's index, unlike ``counts``)."""
        return await _overview.queue(self._db)

    async def status_tallies(self, *, since: datetime) -> list[StatusTally]:
        """How many messages of each type and direction entered each status since
        ``since`` (creation counts as entering the first one), from the status events:
        every node's, kept across restarts."""
        return await _overview.tallies(self._db, since)

    async def status_history(
        self,
        *,
        since: datetime,
        bucket: timedelta,
        until: datetime | None = None,
        account_id: int | None = None,
    ) -> list[StatusBucket]:
        """How many messages entered each status in each ``bucket`` from ``since`` to
        ``until`` (default now), from the status events (every node's, kept across
        restarts). Buckets with nothing are left out. ``account_id``: that account's
        messages only."""
        return await _activity.status_history(
            self._db,
            since=since,
            until=until or self.clock.now(),
            bucket=bucket,
            account_id=account_id,
        )

    async def recent_failures(
        self, *, limit: int = 10, account_id: int | None = None
    ) -> list[Failure]:
        """The latest moves to SendingFailed or DeliveryFailed, newest first, with
        their reasons and codes."""
        return await _overview.failures(self._db, limit=limit, account_id=account_id)

    async def attachment(
        self, message_id: int, attachment_id: int, *, extension_id: int | None = None
    ) -> tuple[Attachment, Content]:
        """The attachment record and its content (for the text of an SMS or pager
        message: the message's subject)."""
        message = await self.get(message_id, extension_id=extension_id)
        for item in message.attachments:
            if item.id == attachment_id:
                if item.sha256 is None:
                    return item, Content.of_bytes((message.subject or "").encode())
                return item, await self._content(item.sha256)
        raise MessageNotFound(attachment_id, what="attachment")

    async def _content(self, sha256: str) -> Content:
        blobs = self._blobs
        size = await blobs.size(sha256)

        async def read(offset: int, length: int) -> bytes:
            return await blobs.read(sha256, offset, length)

        return Content(size, read)

    async def has_blob(self, sha256: str) -> bool:
        """Whether an attachment's bytes are still stored."""
        return await self._blobs.exists(sha256)

    @asynccontextmanager
    async def blob_file(self, sha256: str) -> AsyncIterator[Path]:
        """An attachment's bytes as a file this process (and its render workers) can
        read, for as long as the block runs. BlobError when they are gone."""
        async with self._blobs.local_file(sha256) as path:
            yield path

    # -- status -----------------------------------------------------------------------

    async def transition(
        self,
        message_id: int,
        to: MessageStatus,
        *,
        reason: str,
        lease_owner: str | None = None,
        detail: dict[str, Any] | None = None,
        fax_page_count: int | None = None,
        fax_error_code: FaxErrorCode | None = None,
        delivery_error_code: str | None = None,
        carrier: str | None = None,
        carrier_ref: str | None = None,
    ) -> Message:
        """Move a message to ``to`` if the status machine allows it, with an event,
        setting the columns given (None: left as they are). ``lease_owner`` makes it
        conditional on still holding the lease."""
        fields = {
            key: value
            for key, value in (
                ("fax_page_count", fax_page_count),
                ("fax_error_code", fax_error_code and fax_error_code.value),
                ("delivery_error_code", delivery_error_code),
                ("carrier", carrier),
                ("carrier_ref", carrier_ref),
            )
            if value is not None
        }
        return await self._changes.transition(
            message_id, to, reason=reason, lease_owner=lease_owner, detail=detail, fields=fields
        )

    async def add_rendered(
        self, message_id: int, path: Path, pages: int, *, lease_owner: str | None = None
    ) -> Message:
        """Store a Queued fax's rendered pages (a TIFF file) as its RenderedDocument,
        replacing an earlier rendering, and set faxPageCount."""
        return await self._changes.add_rendered(message_id, path, pages, lease_owner=lease_owner)

    async def record_event(
        self, message_id: int, kind: str, reason: str, detail: dict[str, Any] | None = None
    ) -> None:
        """An event that changes nothing: a late receipt, a carrier note, a warning."""
        await self._changes.record_event(message_id, kind, reason, detail)

    async def cancel(
        self, message_id: int, *, reason: str, extension_id: int | None = None
    ) -> Message:
        """A Queued outbound SMS or fax becomes SendingFailed with the reason
        "cancelled: <reason>" (InvalidTransition for anything else); a fax a carrier
        has is then cancelled there by the fax dispatcher."""
        return await _resend.cancel(
            self._db, self.clock, self._feed, message_id, reason=reason, extension_id=extension_id
        )

    async def retry(
        self, message_id: int, *, reason: str, extension_id: int | None = None
    ) -> Message:
        """Send a SendingFailed or DeliveryFailed outbound SMS or fax again: a NEW
        Queued message with the same content, linked to the original by an event on
        each ("retried as N", "a retry of M"). Returns the new message."""
        return await _resend.retry(
            self._db, self.clock, self._feed, message_id, reason=reason, extension_id=extension_id
        )

    # -- SMS parts at the SMSC (_ledger.py) ---------------------------------------------

    async def record_acceptance(self, item: PartAccepted) -> Outcome:
        """The SMSC took a part (and named it): the part is Sent, and the message too
        once every part is."""
        outcome = await self._ledger.record(item)
        assert outcome is not None  # only a receipt finds nothing
        return outcome

    async def record_refusal(self, item: PartRefused) -> Outcome:
        """The SMSC refused a part for good: the SMS is SendingFailed."""
        outcome = await self._ledger.record(item)
        assert outcome is not None
        return outcome

    async def record_receipt(self, item: ReceiptIn) -> Outcome | None:
        """A delivery receipt; None when no part has one of its ids (yet)."""
        return await self._ledger.record(item)

    def recording(
        self, item: PartAccepted | PartRefused | ReceiptIn
    ) -> asyncio.Future[Outcome | None]:
        """``record_acceptance``, ``record_refusal`` or ``record_receipt`` as a future
        of the outcome (None: a receipt for no known part), for the SMS hot path, which
        chains callbacks instead of awaiting in a task per message."""
        return self._ledger.record_nowait(item)

    async def park_receipt(self, item: ReceiptIn) -> None:
        """Keep a receipt no part is known for yet (it came before its part was
        recorded, maybe on another node's bind); ``apply_parked`` tries it again."""
        now = self.clock.now()
        receipt = {
            "carrier_ids": list(item.carrier_ids),
            "outcome": item.outcome.value if item.outcome else None,
            "error_code": item.error_code,
            "done_at": item.done_at.isoformat() if item.done_at else None,
            "detail": item.detail,
        }
        async with self._db.write() as conn:
            await conn.execute(
                parked_receipts.insert().values(
                    link=item.link,
                    carrier_id=item.carrier_ids[0][:64],
                    receipt=receipt,
                    received_at=now,
                )
            )

    async def apply_parked(self, *, expire_after: float) -> tuple[int, list[ReceiptIn]]:
        """Apply the parked receipts whose part is known now; give up on those parked
        longer than ``expire_after``. Returns how many were applied, and the receipts
        given up."""
        c = parked_receipts.c
        async with self._db.read() as conn:
            rows = (
                (await conn.execute(sa.select(parked_receipts).order_by(c.id).limit(1000)))
                .mappings()
                .all()
            )
        if not rows:
            return 0, []
        items = [(row["id"], row["received_at"], _parked_item(row)) for row in rows]
        outcomes = await asyncio.gather(*(self._ledger.record(item) for _, _, item in items))
        cutoff = self.clock.now() - timedelta(seconds=expire_after)
        done = [i for (i, _, _), outcome in zip(items, outcomes, strict=True) if outcome]
        expired = [
            (i, item)
            for (i, at, item), outcome in zip(items, outcomes, strict=True)
            if outcome is None and at < cutoff
        ]
        gone = done + [i for i, _ in expired]
        if gone:
            async with self._db.write() as conn:
                await conn.execute(sa.delete(parked_receipts).where(c.id.in_(gone)))
        return len(done), [item for _, item in expired]

    # -- parts of inbound SMS (_fragments.py) -------------------------------------------

    async def add_fragment(self, fragment: Fragment) -> list[Fragment] | None:
        """Store one part of a concatenated inbound SMS; every part, in order, once
        this one completes the message (they are then no longer stored)."""
        return await _fragments.add(self._db, fragment)

    async def take_stale_fragments(self, older_than: datetime) -> list[list[Fragment]]:
        """The parts of every message whose first part came before ``older_than``, taken
        out of the store, grouped by message."""
        return await _fragments.take_stale(self._db, older_than)

    # -- the queue (_queue.py) ----------------------------------------------------------

    async def lease(
        self,
        owner: str,
        *,
        types: Collection[MessageType],
        limit: int,
        lease_for: float | None = None,
    ) -> list[Message]:
        """Up to ``limit`` due Queued messages of these types, leased to ``owner``."""
        seconds = self.settings.lease_timeout if lease_for is None else lease_for
        return await _queue.lease(
            self._db, self.clock, owner, types=types, limit=limit, lease_for=seconds
        )

    async def lease_sms(self, owner: str, *, limit: int, lease_for: float) -> list[SmsToSend]:
        """``lease`` for SMS, lean: up to ``limit`` due Queued SMS as the dispatcher
        needs them (oldest due first), each counting an attempt."""
        return await _queue.lease_sms(self._db, self.clock, owner, limit=limit, lease_for=lease_for)

    async def retry_later(
        self,
        message_id: int,
        owner: str,
        *,
        delay: float,
        reason: str,
        detail: dict[str, Any] | None = None,
    ) -> Message:
        """Give a leased message back, due again in ``delay`` seconds."""
        return await _queue.retry_later(
            self._db, self.clock, message_id, owner, delay=delay, why=(reason, detail)
        )

    async def renew_lease(self, message_id: int, owner: str, *, lease_for: float) -> None:
        await _queue.renew(self._db, self.clock, message_id, owner, lease_for=lease_for)

    async def set_carrier(
        self,
        message_id: int,
        owner: str,
        *,
        carrier: str | None,
        ref: str | None,
        reason: str,
        detail: dict[str, Any] | None = None,
    ) -> Message:
        """Record (or clear) the carrier job a leased Queued message is with."""
        job = (carrier, ref, reason, detail)
        return await _queue.set_carrier(self._db, self.clock, message_id, owner, job)

    async def leased_by(self, owner: str, *, types: Collection[MessageType]) -> list[Message]:
        """The Queued messages ``owner`` holds (an earlier life of the same worker)."""
        return await _queue.leased_by(self._db, owner, types=types)

    # -- read state and life cycle ----------------------------------------------------

    async def set_read_status(
        self, message_id: int, status: ReadStatus, *, extension_id: int | None = None
    ) -> Message:
        return await self._changes.set_read_status(message_id, status, extension_id=extension_id)

    async def change_availability(
        self,
        message_id: int,
        action: AvailabilityAction,
        *,
        reason: str,
        extension_id: int | None = None,
    ) -> Message:
        """delete (Alive -> Deleted -> Purged), purge (-> Purged) or restore
        (Deleted -> Alive). Purging erases the attachments and the text."""
        return await self._changes.change_availability(message_id, action, reason, extension_id)

    async def sweep(self, *, orphans: bool = False) -> SweepReport:
        """The life-cycle sweep: purge old Deleted, remove old Purged, trim mailboxes
        over max_messages, erase freed attachment files (and, with ``orphans``, files
        no row refers to)."""
        return await self._lifecycle.sweep(orphans=orphans)

    # -- the nodes of a cluster (_nodes.py) -----------------------------------------------

    async def join_cluster(
        self,
        name: str,
        *,
        stale_after: float,
        host: str,
        pid: int,
        version: str,
        alive: Callable[[int], bool] = lambda _pid: True,
    ) -> str:
        """Take the node name ``name`` for this daemon (NodeNameInUse while another
        live node has it; a previous life on this ``host`` whose process is not
        ``alive`` does not count); returns this life's instance id for ``heartbeat``."""
        return await _nodes.join(
            self._db,
            self.clock,
            name,
            stale_after=stale_after,
            host=host,
            pid=pid,
            version=version,
            alive=alive,
        )

    async def heartbeat(self, name: str, instance: str, info: dict[str, Any]) -> bool:
        """Renew this node's heartbeat; False when another daemon has taken the name."""
        return await _nodes.beat(self._db, self.clock, name, instance, info)

    async def leave_cluster(self, name: str, instance: str) -> None:
        await _nodes.leave(self._db, self.clock, name, instance)

    async def nodes(self) -> list[Node]:
        """Every node that ever joined, with its heartbeat and what it holds."""
        return await _nodes.listed(self._db)

    async def gone_nodes(self, *, stale_after: float) -> list[str]:
        """Nodes that stopped or whose heartbeat is older than ``stale_after``."""
        return await _nodes.gone(self._db, self.clock, stale_after=stale_after)

    async def adopt(
        self, from_owner: str, to_owner: str, *, types: Collection[MessageType], reason: str
    ) -> list[Message]:
        """Move the Queued messages ``from_owner`` held to ``to_owner`` (a node took
        over from one that is gone), each with an event; attempts are not counted."""
        return await _nodes.adopt(
            self._db, self.clock, from_owner, to_owner, types=types, reason=reason
        )

    async def hold_role(self, role: str) -> bool:
        """Whether this process plays ``role`` (the sweeper, the notifier) now: at most
        one node of a cluster does; another takes over when it dies."""
        return await self._roles.hold(role)

    # -- rate limits every node sees (_rates.py) ------------------------------------------

    async def rate_add(self, key: str, *, window: float, n: int = 1) -> RateState:
        """Count ``n`` uses of ``key`` in its current ``window``-second window."""
        return await self._rates.add(key, window=window, n=n)

    async def rate_peek(self, key: str, *, window: float) -> RateState:
        return await self._rates.peek(key, window=window)

    async def rate_penalise(self, key: str, until: datetime) -> None:
        await self._rates.penalise(key, until)

    # -- web console sessions (_sessions.py) --------------------------------------------

    async def open_session(self, key_hash: str, email: str, *, lifetime: float) -> ConsoleSession:
        """A new signed-in session, known by ``key_hash`` (the SHA-256 of its cookie),
        for ``lifetime`` seconds. Expired sessions are removed on the way."""
        return await _sessions.open_session(
            self._db, self.clock, key_hash, email, lifetime=lifetime
        )

    async def find_session(self, key_hash: str) -> ConsoleSession | None:
        """The session ``key_hash`` names, unless it is unknown or expired."""
        return await _sessions.find_session(self._db, self.clock, key_hash)

    async def close_session(self, key_hash: str) -> None:
        """Sign out (nothing happens for an unknown session)."""
        await _sessions.close_session(self._db, key_hash)

    # -- API tokens (_tokens.py) ----------------------------------------------------------

    async def create_token(
        self,
        *,
        account_id: int,
        extension_id: int,
        email: str,
        name: str,
        token_hash: str,
        expires_at: datetime | None = None,
    ) -> ApiToken:
        """Keep a new API token's hash for the user of ``extension_id``."""
        owner = (account_id, extension_id, email)
        return await _tokens.create(self._db, self.clock, owner, (token_hash, name, expires_at))

    async def tokens(self, *, extension_id: int | None = None) -> list[ApiToken]:
        """Every token kept (revoked and expired ones too), oldest first."""
        return await _tokens.listed(self._db, extension_id)

    async def token_by_hash(self, token_hash: str) -> ApiToken | None:
        """The token with this hash, whatever its state; None when there is none."""
        return await _tokens.by_hash(self._db, token_hash)

    async def revoke_token(self, token_id: int) -> ApiToken:
        """Revoke a token (again: nothing changes); MessageNotFound for an unknown id."""
        return await _tokens.revoke(self._db, self.clock, token_id)

    # -- result emails (_notifications.py) ----------------------------------------------

    async def collect_notifications(
        self, decide: _notifications.Decide, *, settle: timedelta, batch: int
    ) -> int:
        """Status events since the notifier's cursor that ``decide`` says deserve an
        email become queued notifications (one per message and kind); the cursor
        moves past them in the same transaction. Returns how many were queued."""
        return await _notifications.collect(
            self._db, self.clock, decide, settle=settle, batch=batch
        )

    async def notifications_due(self, *, limit: int) -> list[NotificationDue]:
        return await _notifications.due(self._db, self.clock, limit=limit)

    async def mark_notification(
        self,
        notification_id: int,
        *,
        state: str | None = None,
        attempts: int | None = None,
        last_error: str | None = None,
        next_attempt_at: datetime | None = None,
        sent_at: datetime | None = None,
    ) -> None:
        changes = {
            "state": state,
            "attempts": attempts,
            "last_error": last_error,
            "next_attempt_at": next_attempt_at,
            "sent_at": sent_at,
        }
        await _notifications.mark(
            self._db, notification_id, {k: v for k, v in changes.items() if v is not None}
        )


def _parked_item(row: Any) -> ReceiptIn:
    receipt = row["receipt"]
    outcome = receipt.get("outcome")
    done_at = receipt.get("done_at")
    return ReceiptIn(
        link=row["link"],
        carrier_ids=tuple(receipt["carrier_ids"]),
        outcome=PartStatus(outcome) if outcome else None,
        error_code=receipt.get("error_code"),
        done_at=datetime.fromisoformat(done_at) if done_at else None,
        detail=dict(receipt.get("detail") or {}),
    )


def _private_files(settings: MailboxSettings) -> None:
    """The data directory (0700) and an SQLite database file (0600, which SQLite gives
    its -wal and -shm files too) made private to the daemon, whatever its umask: they
    hold every message's text."""
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    prefix = "sqlite+aiosqlite:///"
    name = settings.url.partition("?")[0]
    if name.startswith(prefix) and name[len(prefix) :] not in ("", ":memory:"):
        path = Path(name[len(prefix) :])
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
