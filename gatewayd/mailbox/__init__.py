"""The unified mailbox: messages, attachments, SMS parts, events, and the queue.

The rest of gatewayd uses ``Mailbox`` (store.py) and the records it takes and returns
(records.py), all named here. The modules whose names start with an underscore are the
mailbox's own; nothing outside this package imports them.
"""

from gatewayd.mailbox._queries import (
    MAX_PER_PAGE,
    JsonPage,
    MessagePage,
    MessageQuery,
    SyncQuery,
)
from gatewayd.mailbox._schema import EPOCH
from gatewayd.mailbox.records import (
    ApiToken,
    Attachment,
    ConsoleSession,
    Content,
    Event,
    Failure,
    Fragment,
    Message,
    NewAttachment,
    NewMessage,
    Node,
    NotificationDue,
    Outcome,
    Part,
    PartAccepted,
    PartRefused,
    Party,
    RateState,
    ReceiptIn,
    SmsToSend,
    StatusBucket,
    StatusCount,
    StatusEntered,
    StatusEvent,
    StatusTally,
    SweepReport,
    iso,
)
from gatewayd.mailbox.store import Mailbox

__all__ = [
    "EPOCH",
    "MAX_PER_PAGE",
    "ApiToken",
    "Attachment",
    "ConsoleSession",
    "Content",
    "Event",
    "Failure",
    "Fragment",
    "JsonPage",
    "Mailbox",
    "Message",
    "MessagePage",
    "MessageQuery",
    "NewAttachment",
    "NewMessage",
    "Node",
    "NotificationDue",
    "Outcome",
    "Part",
    "PartAccepted",
    "PartRefused",
    "Party",
    "RateState",
    "ReceiptIn",
    "SmsToSend",
    "StatusBucket",
    "StatusCount",
    "StatusEntered",
    "StatusEvent",
    "StatusTally",
    "SweepReport",
    "SyncQuery",
    "iso",
]
