"""The status machine and the availability life cycle as pure functions: every allowed
and every refused change, for every message type."""

from __future__ import annotations

import itertools

import pytest

from gatewayd.model import (
    Availability,
    AvailabilityAction,
    Direction,
    MessageStatus,
    MessageType,
    PartStatus,
    TransitionRefused,
    check_part_transition,
    check_transition,
    derive_sms_status,
    initial_status,
    next_availability,
    status_path,
)

S = MessageStatus
ALLOWED = {
    MessageType.SMS: {
        (S.QUEUED, S.SENT),
        (S.SENT, S.DELIVERED),
        (S.SENT, S.DELIVERY_FAILED),
        (S.QUEUED, S.SENDING_FAILED),
    },
    MessageType.FAX: {(S.QUEUED, S.SENT), (S.QUEUED, S.SENDING_FAILED)},
    MessageType.PAGER: set(),
    MessageType.TEXT: set(),
    MessageType.VOICEMAIL: set(),
}
EVERY_CHANGE = [
    (kind, current, wanted)
    for kind in MessageType
    for current, wanted in itertools.product(MessageStatus, repeat=2)
]


@pytest.mark.parametrize(("kind", "current", "wanted"), EVERY_CHANGE)
def test_every_status_change_is_allowed_or_refused_as_designed(
    kind: MessageType, current: MessageStatus, wanted: MessageStatus
) -> None:
    if (current, wanted) in ALLOWED[kind]:
        check_transition(kind, current, wanted)
    else:
        with pytest.raises(TransitionRefused):
            check_transition(kind, current, wanted)


@pytest.mark.parametrize(
    ("kind", "direction", "status"),
    [
        (MessageType.SMS, Direction.OUTBOUND, S.QUEUED),
        (MessageType.FAX, Direction.OUTBOUND, S.QUEUED),
        (MessageType.PAGER, Direction.OUTBOUND, S.SENT),
        (MessageType.TEXT, Direction.OUTBOUND, S.SENT),
        *[(kind, Direction.INBOUND, S.RECEIVED) for kind in MessageType],
    ],
)
def test_initial_status(kind: MessageType, direction: Direction, status: MessageStatus) -> None:
    assert initial_status(kind, direction) is status


def test_outbound_voicemail_does_not_exist() -> None:
    with pytest.raises(TransitionRefused, match="always Inbound"):
        initial_status(MessageType.VOICEMAIL, Direction.OUTBOUND)


@pytest.mark.parametrize(
    ("kind", "current", "target", "path"),
    [
        (MessageType.SMS, S.QUEUED, S.DELIVERED, [S.SENT, S.DELIVERED]),
        (MessageType.SMS, S.QUEUED, S.DELIVERY_FAILED, [S.SENT, S.DELIVERY_FAILED]),
        (MessageType.SMS, S.SENT, S.SENT, []),
        (MessageType.SMS, S.DELIVERED, S.SENT, None),
        (MessageType.SMS, S.SENDING_FAILED, S.DELIVERED, None),
        (MessageType.FAX, S.QUEUED, S.SENT, [S.SENT]),
        (MessageType.FAX, S.SENT, S.QUEUED, None),
    ],
)
def test_status_path(
    kind: MessageType, current: MessageStatus, target: MessageStatus, path: list[S] | None
) -> None:
    assert status_path(kind, current, target) == path


P = PartStatus


@pytest.mark.parametrize(
    ("parts", "status"),
    [
        ([], S.QUEUED),
        ([P.QUEUED], S.QUEUED),
        ([P.SENT, P.QUEUED], S.QUEUED),
        ([P.SENT, P.SENT], S.SENT),
        ([P.DELIVERED, P.SENT], S.SENT),
        ([P.DELIVERED, P.DELIVERED], S.DELIVERED),
        ([P.DELIVERED, P.DELIVERY_FAILED], S.DELIVERY_FAILED),
        ([P.SENT, P.DELIVERY_FAILED], S.DELIVERY_FAILED),  # one final failure is enough
        ([P.DELIVERY_FAILED, P.QUEUED], S.QUEUED),  # not all accepted yet
        ([P.SENT, P.SENDING_FAILED], S.SENDING_FAILED),
        ([P.DELIVERED, P.SENDING_FAILED], S.SENDING_FAILED),
    ],
)
def test_sms_status_follows_its_parts(parts: list[PartStatus], status: MessageStatus) -> None:
    assert derive_sms_status(parts) is status


PART_ALLOWED = {
    (P.QUEUED, P.SENT),
    (P.QUEUED, P.SENDING_FAILED),
    (P.SENT, P.DELIVERED),
    (P.SENT, P.DELIVERY_FAILED),
}


@pytest.mark.parametrize(("current", "wanted"), list(itertools.product(PartStatus, repeat=2)))
def test_every_part_change(current: PartStatus, wanted: PartStatus) -> None:
    if (current, wanted) in PART_ALLOWED:
        check_part_transition(current, wanted)
    else:
        with pytest.raises(TransitionRefused):
            check_part_transition(current, wanted)


A = Availability
ACT = AvailabilityAction


@pytest.mark.parametrize(
    ("current", "action", "result"),
    [
        (A.ALIVE, ACT.DELETE, A.DELETED),
        (A.DELETED, ACT.DELETE, A.PURGED),
        (A.PURGED, ACT.DELETE, A.PURGED),
        (A.ALIVE, ACT.PURGE, A.PURGED),
        (A.DELETED, ACT.PURGE, A.PURGED),
        (A.PURGED, ACT.PURGE, A.PURGED),
        (A.DELETED, ACT.RESTORE, A.ALIVE),
        (A.ALIVE, ACT.RESTORE, A.ALIVE),
    ],
)
def test_availability(current: Availability, action: AvailabilityAction, result: A) -> None:
    assert next_availability(current, action) is result


def test_a_purged_message_cannot_be_restored() -> None:
    with pytest.raises(TransitionRefused, match="cannot be restored"):
        next_availability(A.PURGED, ACT.RESTORE)
