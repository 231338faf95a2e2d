"""The DATA reader (GatewaySMTP.smtp_DATA) against aiosmtpd's own, over loopback sockets:
the same mail arrives, dots unstuffed, and the same mails are refused, however the
client's bytes are cut into TCP writes; a command pipelined behind the end marker is
still read as a command."""

from __future__ import annotations

import asyncio
import itertools
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gatewayd.config import parse_config
from gatewayd.ingress.server import GatewaySMTP
from gatewayd.metrics import Metrics

LIMIT = 4000  # data_size_limit, small enough to be reached


class _Keep:
    """A handler that keeps each mail's bytes and accepts it."""

    def __init__(self) -> None:
        self.mails: list[bytes] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.mails.append(envelope.original_content or b"")
        return "250 2.0.0 kept"


def _ours(handler: _Keep) -> SMTP:
    config = parse_config("")
    return GatewaySMTP(
        handler,
        settings=config,
        listener=config.smtp.listen[0],
        connections=weakref.WeakSet(),
        metrics=Metrics(),
        data_size_limit=LIMIT,
        enable_SMTPUTF8=True,
        decode_data=False,
    )


def _aiosmtpd(handler: _Keep) -> SMTP:
    return SMTP(handler, data_size_limit=LIMIT, enable_SMTPUTF8=True, decode_data=False)


async def _reply(reader: asyncio.StreamReader) -> str:
    """One reply, its last line (a multiline reply ends with "NNN ")."""
    while True:
        line = (await asyncio.wait_for(reader.readline(), 10)).decode()
        if line[3:4] != "-":
            return line.rstrip("\r\n")


async def _session(
    make: Callable[[_Keep], SMTP], writes: list[bytes]
) -> tuple[str, str, list[bytes]]:
    """The DATA reply, the reply to the QUIT sent with the mail's last bytes (or to what
    follows a lone "." the client did not stuff), and what the handler kept."""
    handler = _Keep()
    server = await asyncio.get_running_loop().create_server(lambda: make(handler), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await _reply(reader)
        for command in (b"EHLO client.example\r\n", b"MAIL FROM:<a@example.com>\r\n",
                        b"RCPT TO:<b@example.com>\r\n", b"DATA\r\n"):  # fmt: skip
            writer.write(command)
            await _reply(reader)
        for data in writes[:-1]:
            writer.write(data)
            await writer.drain()
            await asyncio.sleep(0)
        writer.write(writes[-1] + b"QUIT\r\n")  # pipelined behind the end marker
        data_reply = await _reply(reader)
        quit_reply = await _reply(reader)
    finally:
        writer.close()
        server.close()
        await server.wait_closed()
    return data_reply, quit_reply, handler.mails


_LINES = st.one_of(
    st.sampled_from([b"", b".", b"..", b".x", b"..x", b" .", b"\r", b"x\r", b"a" * 999]),
    st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"")),
    st.integers(990, 1100).map(lambda n: b"b" * n),  # about the line length limit
)


@st.composite
def _streams(draw: Any) -> tuple[bytes, list[bytes]]:
    """A mail's lines, and the bytes after DATA (the lines dot-stuffed, each ending
    CRLF, then the end marker) cut into writes."""
    lines = draw(st.lists(_LINES, max_size=12))
    if draw(st.booleans()):
        lines += [b"c" * 70] * draw(st.integers(40, 70))  # about the size limit
    mail = b"".join(line + b"\r\n" for line in lines)
    stuffed = b"".join((b"." if line[:1] == b"." else b"") + line + b"\r\n" for line in lines)
    stream = stuffed + b".\r\n"
    cuts = sorted(draw(st.lists(st.integers(1, len(stream) - 1), max_size=6, unique=True)))
    bounds = [0, *cuts, len(stream)]
    return mail, [stream[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_streams())
def test_the_mail_read_is_aiosmtpds(case: tuple[bytes, list[bytes]]) -> None:
    mail, writes = case

    async def both() -> tuple[Any, Any]:
        return await _session(_ours, writes), await _session(_aiosmtpd, writes)

    (ours, our_quit, our_mails), (theirs, their_quit, their_mails) = asyncio.run(both())
    assert (our_quit[:3], their_quit[:3]) == ("221", "221")  # QUIT read as a command
    assert our_mails == their_mails
    stuffed = b"".join(writes)[:-3]
    too_big = len(stuffed) > LIMIT
    too_long = any(len(line) + 2 > SMTP.line_length_limit for line in stuffed.split(b"\r\n"))
    if not (too_big or too_long):
        assert (ours[:3], theirs[:3], our_mails) == ("250", "250", [mail])
        return
    # Refused, read to the end all the same; a mail both too big and with too long a
    # line may be told either, as its bytes came.
    assert our_mails == []
    assert ours[:3] == theirs[:3] or (too_big and too_long)
    assert ours[:3] in ({"552"} if too_big else set()) | ({"500"} if too_long else set())


def test_a_lone_dot_the_client_did_not_stuff_ends_the_mail() -> None:
    """What follows is read as commands, as by aiosmtpd."""
    ours = asyncio.run(_session(_ours, [b"first\r\n.\r\nsecond\r\n.\r\n"]))
    theirs = asyncio.run(_session(_aiosmtpd, [b"first\r\n.\r\nsecond\r\n.\r\n"]))
    assert ours[0][:3] == theirs[0][:3] == "250"
    assert ours[2] == theirs[2] == [b"first\r\n"]
    assert ours[1][:3] == theirs[1][:3] == "500"  # "second" is no command


def test_empty_mail_stuffed_dots_and_a_lone_dot_in_a_line() -> None:
    stream = b"\r\n..\r\n.x\r\n..y\r\n .\r\n.\r\n"
    ours = asyncio.run(_session(_ours, [b".\r\n"]))
    assert (ours[0][:3], ours[2]) == ("250", [b""])
    ours = asyncio.run(_session(_ours, [stream[:3], stream[3:]]))
    assert (ours[0][:3], ours[2]) == ("250", [b"\r\n.\r\nx\r\n.y\r\n .\r\n"])


def test_the_mail_is_read_by_our_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not by aiosmtpd's, to which the server falls back without asyncio's reader: the
    comparison above would hold just as well if it always fell back."""
    calls: list[bytes | str] = []
    read = GatewaySMTP._read_data

    async def counted(self: GatewaySMTP) -> bytes | str:
        calls.append(await read(self))
        return calls[-1]

    monkeypatch.setattr(GatewaySMTP, "_read_data", counted)
    ours = asyncio.run(_session(_ours, [b"one\r\n..two\r\n.\r\n"]))
    assert ours[2] == calls == [b"one\r\n.two\r\n"]
