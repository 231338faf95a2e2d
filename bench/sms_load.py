"""The load side of bench/sms_vs_kannel.py: clients that send SMS in, and the sink that
takes Kannel's dlr-url callbacks.

Each runs in a process of its own (started with the ``spawn`` method by the bench), so
its processor time is counted apart from the gateways'. The protocol with the bench:

1. the process prepares everything it will send (request bytes, mails), opens its
   connections, then puts ``"ready"`` on its ``ready`` queue;
2. it waits for ``go``; the bench reads every process's CPU counters in between;
3. it sends message 0..N-1 (each number once, over CLIENTS connections taking the next
   number as they become free), noting the wall-clock time of the first request and of
   the last answer and its own processor time from ``go`` to the end (it exits before
   the bench's meter reads the gateways), and puts a result dict on ``out``.

Message n goes to ``destination(n)`` with the text ``text(n)`` (one GSM-7 part), so the
SMSC peer can count submits per destination. Every address is on loopback.

- ``http_clients``: HTTP/1.1 keep-alive connections over asyncio streams (Kannel's
  ``GET /cgi-bin/sendsms`` or gatewayd's ``POST .../sms``), a connection re-opened
  only when the server closes it (counted).
- ``smtp_clients``: smtplib clients in threads, one mail per transaction.
- ``dlr_sink``: an asyncio HTTP/1.1 server answering 200 to ``GET /dlr?n=N&t=TYPE``; it
  publishes the count of messages with a final DLR (types 1, 2, 16) and the time of
  the last one in shared memory, and its tallies on ``out`` when ``stop`` is set.
"""

from __future__ import annotations

import asyncio
import json
import smtplib
import statistics
import threading
import time
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from typing import Any
from urllib.parse import parse_qs, quote, quote_plus, urlsplit

SENDER = "+4930123456"
SENDER_EMAIL = "alice@example.com"
SMS_DOMAIN = "sms.example.com"
API_PATH = "/restapi/v1.0/account/~/extension/~/sms"
KANNEL_USER = "bench"
FINAL_DLR_TYPES = frozenset({1, 2, 16})  # delivered, not delivered, rejected by the SMSC


def destination(n: int) -> str:
    """A German mobile number (+49 151 and eight digits), one per message."""
    return f"+49151{20_000_000 + n:08d}"


def text(n: int) -> str:
    return f"Your code is {n:06d}"


@dataclass(frozen=True)
class HttpLoad:
    kind: str  # "kannel" or "api"
    port: int
    messages: int
    clients: int
    token: str = ""  # the API's bearer token
    sink_port: int = 0  # where Kannel's dlr-url points


@dataclass(frozen=True)
class SmtpLoad:
    port: int
    messages: int
    clients: int


def kannel_request(load: HttpLoad, n: int) -> bytes:
    dlr_url = f"http://127.0.0.1:{load.sink_port}/dlr?n={n}&t=%d"
    query = (
        f"username={KANNEL_USER}&password={KANNEL_USER}&from={quote(SENDER, safe='')}"
        f"&to={quote(destination(n), safe='')}&text={quote_plus(text(n))}"
        f"&dlr-mask=31&dlr-url={quote(dlr_url, safe='')}"
    )
    return f"GET /cgi-bin/sendsms?{query} HTTP/1.1\r\nHost: 127.0.0.1:{load.port}\r\n\r\n".encode()


def api_request(load: HttpLoad, n: int) -> bytes:
    body = json.dumps(
        {
            "from": {"phoneNumber": SENDER},
            "to": [{"phoneNumber": destination(n)}],
            "text": text(n),
        }
    ).encode()
    head = (
        f"POST {API_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{load.port}\r\n"
        f"Authorization: Bearer {load.token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def latency_summary(latencies: list[float]) -> dict[str, float | None]:
    if not latencies:
        return {"p50_ms": None, "p99_ms": None}
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(p99 * 1000, 2),
    }


# -- HTTP clients ------------------------------------------------------------------------


class HttpTally:
    def __init__(self) -> None:
        self.accepted = 0
        self.failures: list[str] = []
        self.reconnects = 0
        self.latencies: list[float] = []
        self.last_answer = 0.0


async def http_client(
    port: int, requests: Any, expect: int, tally: HttpTally, ready: asyncio.Event
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await ready.wait()
    for _n, request in requests:
        started = time.perf_counter()
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
        except (OSError, asyncio.IncompleteReadError) as exc:
            tally.failures.append(f"connection: {exc!r}")
            tally.reconnects += 1
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            continue
        lower = head.lower()
        at = lower.find(b"\r\ncontent-length:")
        if at < 0:
            tally.failures.append(f"no Content-Length: {head[:200]!r}")
            break
        end = lower.index(b"\r\n", at + 2)
        body = await reader.readexactly(int(lower[at + 17 : end]))
        status = int(head[9:12])
        if status == expect:
            tally.accepted += 1
            tally.latencies.append(time.perf_counter() - started)
            tally.last_answer = time.time()
        else:
            tally.failures.append(f"{status} {body[:200]!r}")
        if b"\r\nconnection: close" in lower:
            tally.reconnects += 1
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()


def http_clients(load: HttpLoad, ready: Queue[str], go: Event, out: Queue[dict[str, Any]]) -> None:
    """One process: LOAD.clients keep-alive connections sending LOAD.messages requests."""
    build = kannel_request if load.kind == "kannel" else api_request
    expect = 202 if load.kind == "kannel" else 200
    requests = [(n, build(load, n)) for n in range(load.messages)]

    async def main() -> dict[str, Any]:
        tally = HttpTally()
        start = asyncio.Event()
        shared = iter(requests)  # each client takes the next message when it is free
        tasks = [
            asyncio.create_task(http_client(load.port, shared, expect, tally, start))
            for _ in range(load.clients)
        ]
        await asyncio.sleep(0.5)  # connections open
        ready.put("ready")
        await asyncio.to_thread(go.wait)
        first, cpu = time.time(), time.process_time()
        start.set()
        await asyncio.gather(*tasks)
        return {
            "cpu_s": time.process_time() - cpu,
            "first_request": first,
            "last_answer": tally.last_answer,
            "accepted": tally.accepted,
            "failures": len(tally.failures),
            "first_failure": tally.failures[0] if tally.failures else None,
            "reconnects": tally.reconnects,
            **latency_summary(tally.latencies),
        }

    out.put(asyncio.run(main()))


# -- SMTP clients ------------------------------------------------------------------------


def mail(n: int) -> tuple[str, bytes]:
    rcpt = f"{destination(n)}@{SMS_DOMAIN}"
    data = (
        f"From: {SENDER_EMAIL}\r\nTo: {rcpt}\r\nSubject: code\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n\r\n{text(n)}\r\n"
    ).encode()
    return rcpt, data


def smtp_clients(load: SmtpLoad, ready: Queue[str], go: Event, out: Queue[dict[str, Any]]) -> None:
    """One process: LOAD.clients smtplib connections in threads, one mail per transaction."""
    mails = [mail(n) for n in range(load.messages)]
    shared = iter(mails)
    lock = threading.Lock()
    start = threading.Event()
    latencies: list[float] = []
    failures: list[str] = []
    last_answer = [0.0]

    def client(connection: smtplib.SMTP) -> None:
        start.wait()
        while True:
            with lock:
                item = next(shared, None)
            if item is None:
                break
            rcpt, data = item
            started = time.perf_counter()
            try:
                connection.sendmail(SENDER_EMAIL, [rcpt], data)
            except smtplib.SMTPException as exc:
                failures.append(repr(exc))
                continue
            latencies.append(time.perf_counter() - started)
            last_answer[0] = time.time()
        connection.quit()

    connections = []
    for _ in range(load.clients):
        connection = smtplib.SMTP("127.0.0.1", load.port, local_hostname="bench.example")
        connection.ehlo()
        connections.append(connection)
    threads = [threading.Thread(target=client, args=(c,)) for c in connections]
    for thread in threads:
        thread.start()
    ready.put("ready")
    go.wait()
    first, cpu = time.time(), time.process_time()
    start.set()
    for thread in threads:
        thread.join()
    out.put(
        {
            "cpu_s": time.process_time() - cpu,
            "first_request": first,
            "last_answer": last_answer[0],
            "accepted": len(latencies),
            "failures": len(failures),
            "first_failure": failures[0] if failures else None,
            "reconnects": 0,
            **latency_summary(latencies),
        }
    )


# -- the DLR sink ------------------------------------------------------------------------


class DlrTally:
    def __init__(self, messages: int, finals: Synchronized[int], last: Synchronized[float]):
        self.final = bytearray(messages)
        self.finals = finals
        self.last = last
        self.types: dict[int, int] = {}
        self.repeated_finals = 0
        self.not_delivered = 0
        self.bad: list[str] = []

    def take(self, target: bytes) -> None:
        query = parse_qs(urlsplit(target.decode()).query)
        try:
            n, kind = int(query["n"][0]), int(query["t"][0])
        except (KeyError, ValueError):
            self.bad.append(target.decode(errors="replace")[:200])
            return
        self.types[kind] = self.types.get(kind, 0) + 1
        if kind not in FINAL_DLR_TYPES or not 0 <= n < len(self.final):
            return
        if self.final[n]:
            self.repeated_finals += 1
            return
        self.final[n] = 1
        if kind != 1:
            self.not_delivered += 1
        self.finals.value += 1
        self.last.value = time.time()


class DlrServer(asyncio.Protocol):
    """HTTP/1.1 requests without bodies (Kannel's dlr-url GETs), answered in order."""

    def __init__(self, tally: DlrTally) -> None:
        self.tally = tally
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        answers = 0
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            request, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            line = request.split(b"\r\n", 1)[0].split(b" ")
            if len(line) == 3:
                self.tally.take(line[1])
            else:
                self.tally.bad.append(request[:200].decode(errors="replace"))
            answers += 1
        if answers and self.transport is not None:
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" * answers)


def dlr_sink(
    port: int,
    messages: int,
    *,
    finals: Synchronized[int],
    last: Synchronized[float],
    ready: Queue[str],
    stop: Event,
    out: Queue[dict[str, Any]],
) -> None:
    """One process: the dlr-url sink on 127.0.0.1:PORT until ``stop``."""
    tally = DlrTally(messages, finals, last)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: DlrServer(tally), "127.0.0.1", port)
        ready.put("ready")
        await asyncio.to_thread(stop.wait)
        server.close()

    asyncio.run(main())
    out.put(
        {
            "callbacks": sum(tally.types.values()),
            "by_type": {str(k): v for k, v in sorted(tally.types.items())},
            "final": sum(tally.final),
            "not_delivered": tally.not_delivered,
            "repeated_finals": tally.repeated_finals,
            "bad": len(tally.bad),
            "first_bad": tally.bad[0] if tally.bad else None,
        }
    )
