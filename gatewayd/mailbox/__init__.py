"""The unified mailbox: messages, attachments, SMS parts, events, and the queue."""

from gatewayd.mailbox.lifecycle import SweepReport
from gatewayd.mailbox.queries import MessagePage, MessageQuery
from gatewayd.mailbox.records import (
    Attachment,
    Event,
    Message,
    NewAttachment,
    NewMessage,
    Part,
    Party,
)
from gatewayd.mailbox.store import Mailbox, conversation_id_for

__all__ = [
    "Attachment",
    "Event",
    "Mailbox",
    "Message",
    "MessagePage",
    "MessageQuery",
    "NewAttachment",
    "NewMessage",
    "Part",
    "Party",
    "SweepReport",
    "conversation_id_for",
]
