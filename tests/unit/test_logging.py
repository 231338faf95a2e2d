"""Logging as operators read it: JSON lines, the message id on every line about a
message, stdlib loggers through the same path, secrets and bodies never written."""

from __future__ import annotations

import dataclasses
import enum
import io
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gatewayd.config.settings import LogSettings
from gatewayd.logging import REDACTED, bound_message, configure_logging, get_logger


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
