"""A watchdog for the event loop itself: a thread that notices when the loop has not
run for longer than ``threshold`` (100 ms) and logs it once per stall, with the stack
of what the loop's thread was running when the stall was noticed.

The loop beats every ``BEAT`` seconds (a ``call_later`` that notes the time); the
thread looks every ``BEAT`` seconds. A stall is logged as ``loop.stalled`` when it
ends, with its length; one still going after ``long`` seconds is logged then too
(``ongoing=true``), so that a loop stuck for good is seen. Nothing in the daemon should
stall it: this is how a regression shows in the log.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback

from gatewayd.logging import get_logger

log = get_logger("gatewayd.loop")

BEAT = 0.02
STACK_FRAMES = 12


class LoopWatchdog:
    def __init__(self, threshold: float = 0.1, long: float = 5.0) -> None:
        self.threshold = threshold
        self.long = long
        self.stalls = 0
        self.longest = 0.0
        self._beat = time.monotonic()
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching the running loop (call from the loop's thread)."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._tick()
        self._thread = threading.Thread(target=self._watch, name="loop-watchdog", daemon=True)
        self._thread.start()

    def _tick(self) -> None:
        assert self._loop is not None
        self._beat = time.monotonic()
        self._handle = self._loop.call_later(BEAT, self._tick)

    def stop(self) -> None:
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()
        if self._thread is not None:
            self._thread.join(timeout=1)

    def _stack(self) -> list[str]:
        frame = sys._current_frames().get(self._loop_thread)
        if frame is None:
            return []
        lines = traceback.format_stack(frame, limit=STACK_FRAMES)
        return [line.rstrip() for line in lines]

    def _watch(self) -> None:
        stalled_since: float | None = None  # the last beat before the stall
        stack: list[str] = []
        told_ongoing = False
        while not self._stop.wait(BEAT):
            beat, now = self._beat, time.monotonic()
            if stalled_since is None:
                if now - beat - BEAT > self.threshold:
                    stalled_since, stack, told_ongoing = beat, self._stack(), False
                continue
            if beat > stalled_since:  # the loop ran again
                seconds = beat - stalled_since - BEAT
                self.stalls += 1
                self.longest = max(self.longest, seconds)
                log.warning("loop.stalled", seconds=round(seconds, 3), stack=stack)
                stalled_since = None
            elif not told_ongoing and now - stalled_since > self.long:
                told_ongoing = True
                log.warning(
                    "loop.stalled",
                    seconds=round(now - stalled_since, 3),
                    ongoing=True,
                    stack=self._stack(),
                )
