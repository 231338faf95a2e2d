"""Logs on journald: when stdout is the journal's stream (``JOURNAL_STREAM`` names its
device and inode, as systemd sets it), every line starts with its syslog priority, so
``journalctl -p warning`` shows warnings and errors; on any other stdout, nothing
changes. The stream is a real pipe, as journald's is a real socket."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator

import pytest

from gatewayd.config.settings import LogSettings
from gatewayd.logging import configure_logging, get_logger, writes_to_journal


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
        handler.close()


@pytest.fixture
def pipe() -> Iterator[tuple[io.TextIOWrapper, int]]:
    """A pipe's writing end as a text stream, and its reading end."""
    read, write = os.pipe()
    stream = os.fdopen(write, "w", buffering=1, encoding="utf-8")
    try:
        yield stream, read
    finally:
        stream.close()
        os.close(read)


def identity(stream: io.TextIOWrapper) -> str:
    found = os.fstat(stream.fileno())
    return f"{found.st_dev}:{found.st_ino}"


def read_lines(stream: io.TextIOWrapper, read: int) -> list[str]:
    stream.flush()
    os.set_blocking(read, False)
    return os.read(read, 1 << 20).decode().splitlines()


def log_some() -> None:
    log = get_logger("gatewayd.test")
    log.debug("sms.pdu", pdu="enquire_link")
    log.info("message.created", message_id=1)
    log.warning("message.status", message_id=1, status="DeliveryFailed")
    log.error("sms.link_lost", link="simulator")
    log.critical("daemon.task_failed", task="x")


def test_every_line_carries_its_priority_on_the_journal(
    pipe: tuple[io.TextIOWrapper, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    stream, read = pipe
    monkeypatch.setenv("JOURNAL_STREAM", identity(stream))
    assert writes_to_journal(stream)
    configure_logging(LogSettings(level="debug", format="json", file=None), stream=stream)
    log_some()
    lines = read_lines(stream, read)
    assert [line[:3] for line in lines] == ["<7>", "<6>", "<4>", "<3>", "<2>"]
    events = [json.loads(line[3:])["event"] for line in lines]  # journald strips the prefix
    assert events[2:] == ["message.status", "sms.link_lost", "daemon.task_failed"]


def test_a_traceback_in_console_format_has_the_prefix_on_every_line(
    pipe: tuple[io.TextIOWrapper, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    stream, read = pipe
    monkeypatch.setenv("JOURNAL_STREAM", identity(stream))
    configure_logging(LogSettings(format="console", file=None), stream=stream)
    try:
        raise ValueError("boom")
    except ValueError:
        get_logger("gatewayd.test").exception("api.internal_error")
    lines = [line for line in read_lines(stream, read) if line]
    assert len(lines) > 3  # the event and its traceback
    assert all(line.startswith("<3>") for line in lines), lines


def test_no_prefix_when_stdout_is_not_the_journal(
    pipe: tuple[io.TextIOWrapper, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    stream, read = pipe
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")  # another stream (the unit's stderr, say)
    assert not writes_to_journal(stream)
    assert not writes_to_journal(io.StringIO(), {"JOURNAL_STREAM": identity(stream)})
    monkeypatch.delenv("JOURNAL_STREAM")
    assert not writes_to_journal(stream)
    configure_logging(LogSettings(format="json", file=None), stream=stream)
    get_logger("gatewayd.test").warning("message.status")
    (line,) = read_lines(stream, read)
    assert line.startswith('{"timestamp"')
