"""structlog set up once, explicitly, at start.

- JSON lines (the default when stdout is not a terminal, as under systemd) or console
  output for a person at a terminal.
- stdlib loggers (asyncio, aiosmtpd, uvicorn, alembic) go through the same processors.
- ``message_id`` (and ``peer``, ``carrier``) are bound with contextvars, so every line
  logged while handling a message carries it (``bound_message``).
- ``[log] file`` also writes JSON lines to a file: what ``gatewayd logs`` and
  ``gatewayd trace`` read. It is created 0600 (it names senders and numbers); when it
  cannot be written (a full disk), stderr says so once a minute with a count of the
  lines lost, not with a traceback per line.
- Values under secret-looking keys and message bodies are replaced before rendering.
- In the daemon (``background=True``) lines are rendered and written by a thread of
  their own, so a slow stdout or journald never stalls the event loop. A line of ours
  is handed to it as its event and keys, with the time and the context's variables
  (nothing else need be done where it was logged: no stdlib LogRecord, no rendering);
  the thread finishes it, renders it once, and writes what it found queued in one write
  per handler. A line with a traceback or a stack takes the stdlib's way, rendered
  where it was logged, in the same queue, so lines keep their order.
- When stdout is the journal's stream (systemd sets ``JOURNAL_STREAM`` to its device
  and inode), every line starts with its syslog priority, ``<4>`` for a warning
  (sd-daemon(3)): journald files the line under that priority and strips the prefix,
  so ``journalctl -p warning`` finds warnings and errors.

Levels: failures and retries (a message SendingFailed or DeliveryFailed, a retry, a
failed reconnect) are warnings, a link lost or a part failing is an error.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import logging.handlers
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import orjson
import structlog
from structlog.typing import EventDict, Processor

from gatewayd.config.settings import LogSettings

REDACTED = "[redacted]"
# Keys whose values never reach a log: secrets and message content.
SENSITIVE_KEYS = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "token",
        "api_token",
        "authorization",
        "auth_data",
        "login_data",
        "credentials",
        "body",
        "text",
        "subject",
        "content",
        "short_message",
        "message_payload",
        "data",
    }
)
# aiosmtpd's "mail.log" logs each command line at DEBUG, message data included: never
# below INFO, whatever [log] level says.
_QUIET_LOGGERS = {
    "aiosqlite": logging.WARNING,
    "alembic": logging.WARNING,
    "mail.log": logging.WARNING,
}


def redact(_logger: Any, _name: str, event_dict: EventDict) -> EventDict:
    for key in event_dict.keys() & SENSITIVE_KEYS:
        event_dict[key] = REDACTED
    return event_dict


_FIRST_KEYS = ("timestamp", "level", "event", "logger", "message_id")


def _order_keys(_logger: Any, _name: str, event_dict: EventDict) -> EventDict:
    """Time, level and event first in each JSON line, for people reading them."""
    ordered = {k: event_dict.pop(k) for k in _FIRST_KEYS if k in event_dict}
    ordered.update(event_dict)
    return ordered


_NODE: dict[str, str] = {}


def set_node(name: str) -> None:
    """Name this daemon's node in every line from now on (a cluster's logs interleave)."""
    _NODE["node"] = name


def _add_node(_logger: Any, _name: str, event_dict: EventDict) -> EventDict:
    if _NODE:
        event_dict.setdefault("node", _NODE["node"])
    return event_dict


def _merge_record_context(_logger: Any, _name: str, event_dict: EventDict) -> EventDict:
    """The context of the thread that logged a stdlib record (see _Enqueue)."""
    record = event_dict.get("_record")
    for key, value in getattr(record, "gatewayd_context", {}).items():
        event_dict.setdefault(key, value)
    return event_dict


def _drop_record_context(_logger: Any, _name: str, event_dict: EventDict) -> EventDict:
    """ExtraAdder copies the record's attributes: not that context, merged already."""
    event_dict.pop("gatewayd_context", None)
    return event_dict


_LOGGED_AT = "_gatewayd_logged_at"  # the time a line handed to the writer was logged


def _timestamp(_logger: Any, _name: str, event_dict: EventDict) -> EventDict:
    """When the line was logged, in ISO 8601 UTC (as structlog's TimeStamper writes it):
    the time taken where a line of ours was handed to the writer, a stdlib record's own
    time, or now."""
    at = event_dict.pop(_LOGGED_AT, None)
    if at is None:
        record = event_dict.get("_record")
        at = record.created if record is not None else time.time()
    event_dict["timestamp"] = datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
    return event_dict


def _finishing() -> list[Processor]:
    """What a line gets after the context's variables, wherever it is finished (where
    it was logged, or in the daemon's writer thread)."""
    return [
        _merge_record_context,
        _add_node,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _drop_record_context,
        _timestamp,
        redact,
        structlog.processors.StackInfoRenderer(),
    ]


def _shared_processors() -> list[Processor]:
    return [structlog.contextvars.merge_contextvars, *_finishing()]


# The daemon's log writer while configure_logging(background=True) has one running.
_WRITER: dict[str, _Writer] = {}
# Keys whose line is finished where it was logged: a traceback and a stack are the
# logging thread's, %-arguments are formatted there as the stdlib does.
_FINISHED_HERE = frozenset({"exc_info", "stack_info", "positional_args"})


def _to_writer(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    """In the daemon, our line goes to the writer thread now, as it is, with the time."""
    writer = _WRITER.get("writer")
    if writer is None or not _FINISHED_HERE.isdisjoint(event_dict):
        return event_dict
    event_dict[_LOGGED_AT] = time.time()
    writer.lines.put((logger, method_name, event_dict))
    raise structlog.DropEvent


# orjson as the stdlib's json.dumps(ensure_ascii=False, default=str) writes a line:
# datetimes and dataclasses through str(), keys that are not strings as strings.
_ORJSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS
)


def _render_json(_logger: Any, _name: str, event_dict: EventDict) -> str:
    """The line as JSON, by orjson (a fifth of the stdlib's time); what orjson cannot
    write (an integer past 64 bits) by the stdlib."""
    try:
        return orjson.dumps(event_dict, default=str, option=_ORJSON_OPTIONS).decode()
    except TypeError:
        return json.dumps(event_dict, ensure_ascii=False, default=str)


class _RenderedOnce(logging.Formatter):
    """A formatter whose text for a record is kept on the record, so that the handlers
    that share it (stdout and the file both write JSON) render each line once."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner
        self._key = f"_gatewayd_rendered_{id(self)}"

    def format(self, record: logging.LogRecord) -> str:
        text: str | None = record.__dict__.get(self._key)
        if text is None:
            text = self.inner.format(record)
            record.__dict__[self._key] = text
        return text


# The last steps of a JSON line, once it is finished (the formatter's and the writer's).
_JSON_RENDERING: list[Processor] = [
    structlog.processors.UnicodeDecoder(),
    _order_keys,
    _render_json,
]


def _json_formatter(shared: list[Processor]) -> logging.Formatter:
    return _RenderedOnce(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                *_JSON_RENDERING,
            ],
        )
    )


def _configure_structlog() -> None:
    """structlog hands everything to stdlib logging, whose handlers render it. Done at
    import, so code that logs before configure_logging (or a library user who never
    calls it) goes to stdlib logging, never to structlog's default stdout printer."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            structlog.contextvars.merge_contextvars,
            _to_writer,
            *_finishing(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            # The traceback is rendered here, in the thread that logged: the writer
            # thread has no exception at hand (``log.exception`` passes only True).
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


_configure_structlog()


class _LogFile(logging.handlers.WatchedFileHandler):
    """The log file, created private; write errors reported once a minute, counted."""

    REPORT_EVERY = 60.0

    def __init__(self, path: Path) -> None:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        super().__init__(path, encoding="utf-8")
        self.lost = 0
        self._reported = -self.REPORT_EVERY

    def handleError(self, record: logging.LogRecord) -> None:
        self.lost += getattr(record, "gatewayd_lines", 1)
        now = time.monotonic()
        if now - self._reported < self.REPORT_EVERY:
            return
        self._reported = now
        error = sys.exc_info()[1]
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(
                f"gatewayd: cannot write the log file {self.baseFilename} ({error}); "
                f"{self.lost} line(s) lost so far\n"
            )


class _Enqueue(logging.handlers.QueueHandler):
    """Hands records to the writer thread as they are: rendering happens there. The
    logging thread's contextvars (message_id, ...) travel with the record."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        record.gatewayd_context = structlog.contextvars.get_contextvars()
        return record


# sd-daemon(3) priorities (syslog's) for the levels of the logging module.
JOURNAL_PRIORITIES = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


def journal_prefix(level_name: str) -> str:
    """``<N>``, the priority journald files a line of this level under (info for any
    other)."""
    return f"<{JOURNAL_PRIORITIES.get(level_name, 6)}>"


class JournalPriority(logging.Formatter):
    """Another formatter's output with ``<N>``, the record's priority, before each of
    its lines (a traceback in console format has several)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = journal_prefix(record.levelname)
        return "\n".join(prefix + line for line in self.inner.format(record).split("\n"))


class _Outlet:
    """A handler as the writer thread uses it: whether it writes our JSON lines (then a
    line of ours is written as text, rendered once for all such handlers), and with the
    journal's priority before each."""

    def __init__(
        self, handler: logging.StreamHandler[Any], *, json_lines: bool, journal: bool
    ) -> None:
        self.handler = handler
        self.json_lines = json_lines
        self.journal = journal
        self.texts: list[str] = []  # lines written at the end of the batch

    def write(self) -> None:
        """The lines gathered, in one write, then one flush (the stdlib's emit, for all)."""
        texts, self.texts = self.texts, []
        if not texts:
            return
        handler = self.handler
        terminator = handler.terminator
        handler.acquire()
        try:
            if isinstance(handler, logging.handlers.WatchedFileHandler):
                handler.reopenIfNeeded()
            handler.stream.write(terminator.join(texts) + terminator)
            handler.flush()
        except RecursionError:  # as the stdlib's emit
            raise
        except Exception:
            handler.handleError(
                logging.makeLogRecord({"msg": texts[-1], "gatewayd_lines": len(texts)})
            )
        finally:
            handler.release()

    def handle(self, record: logging.LogRecord) -> None:
        """A stdlib record, through the handler as it is, after the lines before it."""
        self.write()
        if record.levelno >= self.handler.level:
            self.handler.handle(record)


class _Writer:
    """The daemon's log writer: a thread that finishes, renders and writes the lines
    queued by every thread (ours as (logger, method, event dict with its time), the
    stdlib's as LogRecords). Woken by a line less than LINGER after it last woke, it waits
    LINGER for more and writes them all, up to BATCH: under load it runs ~50 times a
    second, not once a line (each time it takes the GIL from the event loop: at 3,000
    mails a second through SMTP, ~4 % of the door's throughput), and a line is written
    up to LINGER after it was logged; a line after a quiet spell is written at once.
    A line that cannot be rendered is said on stderr and dropped; the thread goes on."""

    BATCH = 1024
    LINGER = 0.02

    def __init__(self, outlets: Sequence[_Outlet]) -> None:
        self.outlets = outlets
        self.lines: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._finishing = _finishing()
        self._thread = threading.Thread(target=self._run, name="log-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Write everything queued so far, end the thread, close the handlers (the file;
        a stream handler leaves its stream open)."""
        if _WRITER.get("writer") is self:
            del _WRITER["writer"]
        if self._thread.is_alive():
            self.lines.put(None)
            self._thread.join()
            for outlet in self.outlets:
                outlet.handler.close()

    def _run(self) -> None:
        lines = self.lines
        woke = -self.LINGER
        while True:
            batch = [lines.get()]
            if time.monotonic() - woke < self.LINGER:  # lines come thick: gather them
                time.sleep(self.LINGER)
            woke = time.monotonic()
            with contextlib.suppress(queue.Empty):
                while len(batch) < self.BATCH:
                    batch.append(lines.get_nowait())
            for item in batch:
                if item is None:
                    self._write_gathered()
                    return
                try:
                    if isinstance(item, logging.LogRecord):
                        for outlet in self.outlets:
                            outlet.handle(item)
                    else:
                        self._ours(*item)
                except Exception as exc:  # (a value whose str() fails, say)
                    with contextlib.suppress(OSError, ValueError):
                        sys.stderr.write(f"gatewayd: a log line could not be written: {exc!r}\n")
            self._write_gathered()

    def _write_gathered(self) -> None:
        for outlet in self.outlets:
            outlet.write()

    def _ours(self, logger: logging.Logger, method: str, event_dict: EventDict) -> None:
        """One of our lines, finished as it would have been where it was logged (with
        the time it was logged), rendered once for every JSON handler."""
        finished: Any = event_dict
        for processor in self._finishing:
            finished = processor(logger, method, finished)
        event_dict = finished
        name = event_dict["level"].upper()
        level = _LEVELS.get(name, logging.INFO)
        text: str | None = None
        for outlet in self.outlets:
            if not outlet.json_lines:
                outlet.handle(_as_record(logger, method, level, event_dict))
                continue
            if level < outlet.handler.level:
                continue
            if text is None:
                rendered: Any = dict(event_dict)
                for processor in _JSON_RENDERING:
                    rendered = processor(logger, method, rendered)
                text = str(rendered)
            if outlet.journal:
                outlet.texts.append(journal_prefix(name) + text)
            else:
                outlet.texts.append(text)


_LEVELS = logging.getLevelNamesMapping()  # "INFO": 20, ...


def _as_record(
    logger: logging.Logger, method: str, level: int, event_dict: EventDict
) -> logging.LogRecord:
    """A finished line of ours as the record the stdlib would have made of it (for a
    handler that does not write JSON: the console's)."""
    return logger.makeRecord(
        logger.name,
        level,
        "(unknown file)",
        0,
        event_dict,
        (),
        None,
        extra={"_logger": logger, "_name": method},
    )


def writes_to_journal(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``stream`` is the journal's stream systemd connected us to: its device
    and inode are those ``JOURNAL_STREAM`` names (systemd.exec(5))."""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        found = os.fstat(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return False
    return (found.st_dev, found.st_ino) == (int(device), int(inode))


def configure_logging(
    settings: LogSettings, *, stream: TextIO | None = None, background: bool = False
) -> Callable[[], None]:
    """Route structlog and stdlib logging to ``stream`` (stdout) and the optional file.
    Returns the function that flushes and stops the writer thread (a no-op without one)."""
    stream = stream if stream is not None else sys.stdout
    shared = _shared_processors()
    json_lines = _json_formatter(shared)
    use_console = settings.format == "console" or (settings.format == "auto" and stream.isatty())
    if use_console:
        console: logging.Formatter = structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.dev.ConsoleRenderer(colors=stream.isatty()),
            ],
        )
    else:
        console = json_lines
    journal = writes_to_journal(stream)
    if journal:
        console = JournalPriority(console)
    out: logging.StreamHandler[TextIO] = logging.StreamHandler(stream)
    out.setFormatter(console)
    handlers: list[logging.Handler] = [out]
    outlets = [_Outlet(out, json_lines=not use_console, journal=journal)]
    if settings.file is not None:
        settings.file.parent.mkdir(parents=True, exist_ok=True)
        # WatchedFileHandler reopens the file after logrotate moves it.
        file_handler = _LogFile(settings.file)
        file_handler.setFormatter(json_lines)  # the same lines as stdout's: rendered once
        handlers.append(file_handler)
        outlets.append(_Outlet(file_handler, json_lines=True, journal=False))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    previous = _WRITER.get("writer")
    if previous is not None:
        previous.stop()
    stop: Callable[[], None] = _nothing
    if background:
        writer = _Writer(outlets)
        writer.start()
        root.addHandler(_Enqueue(writer.lines))
        _WRITER["writer"] = writer
        stop = writer.stop
    else:
        for handler in handlers:
            root.addHandler(handler)
    set_level(settings)
    logging.captureWarnings(True)
    # No line shows where in the source it was logged from: the logging module need
    # not look it up, walking the stack, for every line (its documented switch, in
    # the "Optimization" section of the logging HOWTO).
    logging._srcfile = None
    return stop


def set_level(settings: LogSettings) -> None:
    """The level of every line (at start and on SIGHUP); the chatty libraries' loggers
    never below it."""
    root = logging.getLogger()
    root.setLevel(settings.level.upper())
    for name, level in _QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(max(level, root.level))


def _nothing() -> None:
    return None


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


@contextmanager
def bound_message(message_id: int, **more: Any) -> Iterator[None]:
    """Every log line inside carries ``message_id`` (and the extra keys)."""
    with structlog.contextvars.bound_contextvars(message_id=message_id, **more):
        yield
