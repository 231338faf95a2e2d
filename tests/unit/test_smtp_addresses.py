"""The fast path for SMTP command addresses answers exactly as aiosmtpd's parser."""

from __future__ import annotations

import asyncio
import weakref

import pytest
from aiosmtpd.smtp import SMTP

from gatewayd.config import parse_config
from gatewayd.ingress.server import GatewaySMTP
from gatewayd.metrics import Metrics

ARGS = [
    "<alice@example.com>",
    "<alice@example.com> SIZE=1234 BODY=8BITMIME",
    " <+4915112345678@sms.example.com>",
    "<first.last+tag@sub.example.co.uk>",
    "<o'brien@example.com>",
    "<fax@example.com> NOTIFY=NEVER",
    '<"quoted local"@example.com>',
    "<jörg@bücher.example> SMTPUTF8",
    "<>",
    "<@relay.example:alice@example.com>",
    "alice@example.com",
    "<alice@example.com",
    "<a..b@example.com>",
    "<alice@example.com> (a comment) SIZE=5",
    "<alice@example.com>\tSIZE=5",
    "",
]


@pytest.mark.parametrize("arg", ARGS)
async def test_fast_path_agrees_with_aiosmtpd(arg: str) -> None:
    settings = parse_config("")
    server = GatewaySMTP(
        object(),
        settings=settings,
        listener=settings.smtp.listen[0],
        connections=weakref.WeakSet(),
        metrics=Metrics(),
        loop=asyncio.get_running_loop(),
    )
    plain = SMTP(object(), loop=asyncio.get_running_loop())
    assert server._getaddr(arg) == plain._getaddr(arg)
