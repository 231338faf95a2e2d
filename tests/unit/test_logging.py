"""Logging as operators read it: JSON lines, the message id on every line about a
message, stdlib loggers through the same path, secrets and bodies never written."""

from __future__ import annotations

import dataclasses
import enum
import io
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gatewayd.config.settings import LogSettings
from gatewayd.logging import (
    REDACTED,
    bound_message,
    configure_logging,
    get_logger,
    set_node,
)


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    yield
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
        handler.close()


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_with_the_message_id_bound() -> None:
    out = io.StringIO()
    configure_logging(LogSettings(format="json", file=None), stream=out)
    log = get_logger("gatewayd.test")
    with bound_message(73412):
        log.info("sms.submitted", link="simulator", parts=2)
        logging.getLogger("aiosmtpd.test").warning("plain stdlib line %s", "here")
    log.info("daemon.idle")
    first, second, third = lines(out)
    assert first["event"] == "sms.submitted"
    assert first["message_id"] == 73412
    assert first["level"] == "info"
    assert first["parts"] == 2
    assert str(first["timestamp"]).endswith("Z")
    assert second["event"] == "plain stdlib line here"
    assert second["message_id"] == 73412
    assert second["logger"] == "aiosmtpd.test"
    assert "message_id" not in third
    assert list(first)[:3] == ["timestamp", "level", "event"]


def test_secrets_and_bodies_are_never_written() -> None:
    out = io.StringIO()
    configure_logging(LogSettings(format="json", file=None), stream=out)
    get_logger("gatewayd.test").info(
        "smtp.auth",
        user="alice",
        password="hunter2",
        body="Dear Bob, the secret plan",
        text="SMS text",
        token="gwd_abc",
    )
    raw = out.getvalue()
    for secret in ("hunter2", "secret plan", "SMS text", "gwd_abc"):
        assert secret not in raw
    (line,) = lines(out)
    assert line["password"] == REDACTED
    assert line["user"] == "alice"


def test_the_level_filters(tmp_path: Path) -> None:
    out = io.StringIO()
    configure_logging(LogSettings(level="warning", format="json", file=None), stream=out)
    log = get_logger("gatewayd.test")
    log.info("quiet")
    log.warning("loud")
    assert [line["event"] for line in lines(out)] == ["loud"]


def test_the_log_file_gets_json_even_when_the_terminal_gets_console(tmp_path: Path) -> None:
    out = io.StringIO()
    log_file = tmp_path / "logs" / "gatewayd.log"
    configure_logging(LogSettings(format="console", file=log_file), stream=out)
    with bound_message(5):
        get_logger("gatewayd.test").error("fax.failed", reason="busy")
    logging.shutdown()
    assert "fax.failed" in out.getvalue()
    with pytest.raises(json.JSONDecodeError):
        json.loads(out.getvalue().splitlines()[0])
    (entry,) = [json.loads(x) for x in log_file.read_text().splitlines()]
    assert entry["event"] == "fax.failed"
    assert entry["message_id"] == 5


def test_exceptions_are_rendered_into_the_line() -> None:
    out = io.StringIO()
    configure_logging(LogSettings(format="json", file=None), stream=out)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        get_logger("gatewayd.test").exception("task.failed")
    (line,) = lines(out)
    assert "RuntimeError: boom" in str(line["exception"])


def test_the_daemon_writes_lines_from_a_thread_of_their_own() -> None:
    out = io.StringIO()
    stop = configure_logging(LogSettings(format="json", file=None), stream=out, background=True)
    with bound_message(42):
        get_logger("gatewayd.test").info("sms.receipt", stat="DELIVRD")
        logging.getLogger("aiosmtpd.test").warning("stdlib %s", "line")
    stop()  # flushes what is queued
    first, second = lines(out)
    assert (first["event"], first["message_id"], first["stat"]) == ("sms.receipt", 42, "DELIVRD")
    assert (second["event"], second["message_id"]) == ("stdlib line", 42)


def test_aiosmtpd_never_logs_mail_data_even_at_debug() -> None:
    out = io.StringIO()
    configure_logging(LogSettings(level="debug", format="json", file=None), stream=out)
    logging.getLogger("mail.log").debug("DATA readline: %s", b"Dear Bob, the secret plan")
    get_logger("gatewayd.test").debug("visible")
    assert [line["event"] for line in lines(out)] == ["visible"]


class _Colour(enum.Enum):
    RED = 1


@dataclasses.dataclass
class _Point:
    x: int


@pytest.mark.parametrize(
    "value",
    [
        "ümlaut €",
        [1, "two", None, 3.5, True],
        (1, 2),
        {"nested": {"n": 1}},
        {7: "a key that is no string"},
        datetime(2026, 12, 1, 15, 0, tzinfo=UTC),
        _Point(3),
        _Colour.RED,
        2**70,
        Path("/var/lib/gatewayd"),
    ],
)
def test_a_line_holds_what_the_stdlib_json_would_write(value: object) -> None:
    """The renderer is orjson's; what a line says is what json.dumps(ensure_ascii=False,
    default=str) said before it, but for a plain Enum (written as its value, not as
    ``Class.NAME``) and the spacing (none)."""
    out = io.StringIO()
    configure_logging(LogSettings(format="json", file=None), stream=out)
    get_logger("gatewayd.test").info("x.value", value=value)
    (line,) = lines(out)
    if isinstance(value, enum.Enum):  # a plain Enum (ours are all str or int ones): its value
        assert line["value"] == value.value
        return
    assert line["value"] == json.loads(json.dumps(value, ensure_ascii=False, default=str))


def test_stdout_and_the_file_render_each_line_once(tmp_path: Path) -> None:
    out = io.StringIO()
    path = tmp_path / "gatewayd.log"
    configure_logging(LogSettings(format="json", file=path), stream=out)
    rendered = []
    formatters = {handler.formatter for handler in logging.getLogger().handlers}
    (shared,) = formatters  # one formatter for both handlers
    assert isinstance(shared, logging.Formatter)
    inner = shared.inner  # type: ignore[attr-defined]
    original = inner.format

    def counted(record: logging.LogRecord) -> str:
        rendered.append(record)
        return original(record)  # type: ignore[no-any-return]

    inner.format = counted
    get_logger("gatewayd.test").info("x.once", n=1)
    assert len(rendered) == 1
    assert out.getvalue() == path.read_text()


def _each_way(log_some: Callable[[], None], **settings: object) -> tuple[list[str], list[str]]:
    """The lines written when logging where they are logged, and through the daemon's
    writer thread."""
    found = []
    for background in (False, True):
        out = io.StringIO()
        stop = configure_logging(
            LogSettings(format="json", file=None, **settings),  # type: ignore[arg-type]
            stream=out,
            background=background,
        )
        log_some()
        stop()
        found.append(out.getvalue().splitlines())
    return found[0], found[1]


def test_the_writer_thread_writes_what_the_logging_thread_would() -> None:
    """A line of ours goes to the writer as its keys and is finished there: the same
    keys, values and order as a line rendered where it was logged (but the time)."""
    set_node("node-a")

    def log_some() -> None:
        log = get_logger("gatewayd.test")
        with bound_message(7, peer="192.0.2.1"):
            log.info(
                "smtp.accepted", sender="a@example.com", ids=[1, 2], raw=b"\xc3\xa4", password="x"
            )
            log.warning("sms.retry %s", "soon", attempt=2)
            log.debug("quiet")
            logging.getLogger("aiosmtpd.test").error("stdlib %s", "line", extra={"status": 3})
            try:
                raise RuntimeError("boom")
            except RuntimeError:
                log.exception("task.failed")
        log.info("daemon.idle")

    here, thread = _each_way(log_some)
    assert len(here) == len(thread) == 5
    for a, b in zip(here, thread, strict=True):
        first, second = json.loads(a), json.loads(b)
        assert first.pop("timestamp") < second.pop("timestamp")
        assert list(first.items()) == list(second.items())
    entry = json.loads(thread[0])
    assert (entry["raw"], entry["password"], entry["node"]) == ("ä", REDACTED, "node-a")
    assert "RuntimeError: boom" in json.loads(thread[3])["exception"]


def test_the_writer_keeps_the_order_of_every_threads_lines() -> None:
    """Lines of ours (queued as keys) and the stdlib's (queued as records) share the
    queue: each thread's lines are written in the order it logged them."""

    def log_some() -> None:
        log = get_logger("gatewayd.test")
        stdlib = logging.getLogger("asyncio")
        worker = threading.Thread(target=lambda: [log.info("other", n=n) for n in range(300)])
        worker.start()
        for n in range(300):
            if n % 2:
                log.info("main", n=n)
            else:
                stdlib.warning("main %d", n)
        worker.join()

    _, thread = _each_way(log_some)
    entries = [json.loads(line) for line in thread]
    mains = [e.get("n") or int(str(e["event"]).split()[1]) for e in entries if "main" in e["event"]]
    others = [e["n"] for e in entries if e["event"] == "other"]
    assert mains == list(range(300))
    assert others == list(range(300))


def test_the_writer_writes_a_batch_at_once_and_counts_the_lines_a_file_lost(
    tmp_path: Path,
) -> None:
    out = _Writes()
    path = tmp_path / "gatewayd.log"
    stop = configure_logging(LogSettings(format="json", file=path), stream=out, background=True)
    log = get_logger("gatewayd.test")
    for n in range(500):
        log.info("x.many", n=n)
    deadline = time.monotonic() + 10
    while path.read_text().count("x.many") < 500 and time.monotonic() < deadline:
        time.sleep(0.01)
    (log_file,) = [h for h in _writer_handlers() if isinstance(h, logging.FileHandler)]
    log_file.stream.close()
    log_file.stream = _Full()  # the next write fails
    for n in range(3):
        log.info("x.lost", n=n)
    stop()
    entries = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["n"] for e in entries] == [*range(500), *range(3)]
    assert out.writes < 100  # lines queued together went out in one write
    assert path.read_text().count("x.many") == 500
    assert log_file.lost == 3  # type: ignore[attr-defined]


def test_the_writer_gives_the_console_its_own_lines_and_the_journal_its_priorities(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    read, write = os.pipe()
    with os.fdopen(write, "w", encoding="utf-8") as stream:
        found = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{found.st_dev}:{found.st_ino}")
        path = tmp_path / "gatewayd.log"
        stop = configure_logging(
            LogSettings(format="console", file=path), stream=stream, background=True
        )
        get_logger("gatewayd.test").warning("fax.busy", attempt=2)
        logging.getLogger("asyncio").error("stdlib line")
        stop()
    with os.fdopen(read, encoding="utf-8") as pipe:
        console = pipe.read().splitlines()
    assert [line[:3] for line in console] == ["<4>", "<3>"]
    assert "fax.busy" in console[0]
    assert "attempt=2" in console[0]
    with pytest.raises(json.JSONDecodeError):
        json.loads(console[0][3:])
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(e["event"], e["level"]) for e in entries] == [
        ("fax.busy", "warning"),
        ("stdlib line", "error"),
    ]


def test_configuring_again_ends_the_last_writer_with_its_lines_written() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(LogSettings(format="json", file=None), stream=first, background=True)
    get_logger("gatewayd.test").info("x.first")
    stop = configure_logging(LogSettings(format="json", file=None), stream=second, background=True)
    get_logger("gatewayd.test").info("x.second")
    stop()
    assert [line["event"] for line in lines(first)] == ["x.first"]
    assert [line["event"] for line in lines(second)] == ["x.second"]
    assert not [t for t in threading.enumerate() if t.name == "log-writer"]


class _Full(io.StringIO):
    """A file on a full disk."""

    def write(self, text: str) -> int:
        raise OSError(28, "No space left on device")


class _Writes(io.StringIO):
    """A stream that counts its writes."""

    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def _writer_handlers() -> list[logging.Handler]:
    from gatewayd import logging as gatewayd_logging

    writer = gatewayd_logging._WRITER["writer"]
    return [outlet.handler for outlet in writer.outlets]


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no words for it")

    __repr__ = __str__


def test_a_line_that_cannot_be_rendered_does_not_end_the_writer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = io.StringIO()
    stop = configure_logging(LogSettings(format="json", file=None), stream=out, background=True)
    log = get_logger("gatewayd.test")
    log.info("x.bad", value=_Unprintable())
    log.info("x.after")
    stop()
    assert [line["event"] for line in lines(out)] == ["x.after"]
    assert "a log line could not be written" in capsys.readouterr().err


def test_lines_that_come_thick_are_gathered_into_few_writes() -> None:
    """Lines a few milliseconds apart (a busy daemon) are written together: the writer,
    woken again soon after it last woke, waits for more instead of waking for each."""
    out = _Writes()
    stop = configure_logging(LogSettings(format="json", file=None), stream=out, background=True)
    log = get_logger("gatewayd.test")
    for n in range(40):
        log.info("x.thick", n=n)
        time.sleep(0.002)
    stop()
    assert [line["n"] for line in lines(out)] == list(range(40))
    assert out.writes <= 20  # one a line without the wait


@pytest.mark.parametrize("background", [False, True])
def test_a_stdlib_line_carries_the_time_it_was_logged(background: bool) -> None:
    out = io.StringIO()
    stop = configure_logging(
        LogSettings(format="json", file=None), stream=out, background=background
    )
    record = logging.makeLogRecord({"name": "asyncio", "levelno": 30, "levelname": "WARNING",
                                    "msg": "late"})  # fmt: skip
    record.created = datetime(2026, 12, 1, 15, 0, 0, 250000, tzinfo=UTC).timestamp()
    logging.getLogger("asyncio").handle(record)
    stop()
    (line,) = lines(out)
    assert line["timestamp"] == "2026-12-01T15:00:00.250000Z"
