"""Shared fixtures: a mailbox on a real SQLite file in a temp dir, a clock the test
controls, message factories, and a way to run the real ``gatewayd`` command."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from gatewayd.clock import ManualClock
from gatewayd.config.settings import MailboxSettings
from gatewayd.mailbox import Mailbox, NewAttachment, NewMessage, Party
from gatewayd.model import AttachmentType, Direction, MessageType
from tests.postgres import create_database, postgres_server

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = 1
EXTENSION = 101
OTHER_EXTENSION = 102
OUR_NUMBER = "+4930123456"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="session")
def postgres_base() -> Iterator[str | None]:
    """A PostgreSQL server for the session, or None when PostgreSQL is not installed."""
    try:
        with postgres_server() as base:
            yield base
    except FileNotFoundError:
        yield None


@pytest.fixture(params=["sqlite", "postgresql"])
def mailbox_settings(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_base: str | None
) -> MailboxSettings:
    """The mailbox on SQLite (the default) and on PostgreSQL (a fresh database each)."""
    if request.param == "sqlite":
        return MailboxSettings(data_dir=tmp_path / "data")
    if postgres_base is None:
        pytest.skip("PostgreSQL is not installed (Debian package postgresql)")
    name = "t_" + hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:16]
    return MailboxSettings(
        data_dir=tmp_path / "data", database_url=create_database(postgres_base, name)
    )


@pytest.fixture
async def mailbox(mailbox_settings: MailboxSettings, clock: ManualClock) -> AsyncIterator[Mailbox]:
    box = await Mailbox.open(mailbox_settings, clock=clock)
    try:
        yield box
    finally:
        await box.close()


def sms(
    to: str = "+4915112345678",
    text: str = "Hello",
    *,
    extension_id: int = EXTENSION,
    direction: Direction = Direction.OUTBOUND,
    **more: Any,
) -> NewMessage:
    ours, theirs = Party(phone_number=OUR_NUMBER), Party(phone_number=to)
    from_, recipient = (ours, theirs) if direction is Direction.OUTBOUND else (theirs, ours)
    return NewMessage(
        account_id=ACCOUNT,
        extension_id=extension_id,
        type=MessageType.SMS,
        direction=direction,
        from_=from_,
        to=(recipient,),
        origin="test",
        subject=text,
        attachments=(NewAttachment.text_of_message(),),
        **more,
    )


def pager(to: Party | None = None, **more: Any) -> NewMessage:
    """An outbound pager message from extension 101 (to 102 unless ``to`` says)."""
    return NewMessage(
        account_id=ACCOUNT,
        extension_id=EXTENSION,
        type=MessageType.PAGER,
        direction=Direction.OUTBOUND,
        from_=Party(extension_number="101", extension_id=EXTENSION, name="Alice"),
        to=(to or Party(extension_number="102"),),
        origin="test",
        subject="lunch?",
        attachments=(NewAttachment.text_of_message(),),
        **more,
    )


def fax(to: str = "+4940123456", *, document: bytes = b"%PDF-1.4 test", **more: Any) -> NewMessage:
    return NewMessage(
        account_id=ACCOUNT,
        extension_id=more.pop("extension_id", EXTENSION),
        type=MessageType.FAX,
        direction=Direction.OUTBOUND,
        from_=Party(phone_number="+4930123457", name="Alice"),
        to=(Party(phone_number=to),),
        origin="test",
        subject="Contract",
        attachments=(
            NewAttachment(
                AttachmentType.SOURCE_DOCUMENT,
                "application/pdf",
                data=document,
                file_name="contract.pdf",
            ),
        ),
        **more,
    )


def gatewayd(
    *args: str, stdin: str | None = None, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``gatewayd`` command as an operator would."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("GATEWAYD_CONFIG", None)
    env.update(kwargs.pop("env", {}))
    return subprocess.run(
        [sys.executable, "-m", "gatewayd", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=kwargs.pop("timeout", 60),
        env=env,
        check=False,
        **kwargs,
    )
