"""A bounded number of upstream calls at once, with a bounded, timed waiting line.

A class pressing Enter together should queue for a few seconds, not fail: providers limit
concurrent calls per key, and one key serves the whole class. Only when the line is full,
or a request has waited longer than the timeout, does the student hear "busy".

One caller (a token, a browser, an address) may have at most ``max_per_caller`` answers
running or waiting at once: beyond that they hear "one at a time" straight away, so one
student's script cannot fill the line and turn the whole class away.
"""
from __future__ import annotations

import asyncio
import math
from typing import Callable, Dict, Optional

import anyio

from ...errors import RateLimitError
from ...english import counted


class ServerBusy(RateLimitError):
    student_facing = True

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            "服务器繁忙，请稍后再试。/ The server is busy; please try again in a moment.",
            code="server_busy",
            retry_after=retry_after,
        )


class CallerBusy(RateLimitError):
    student_facing = True

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"你已经有 {limit} 个回答在进行，请等其中一个结束再发。/ "
            f"You already have {counted(limit, 'answer')} running; wait for one to finish, then send again.",
            retry_after=1,
        )


class Gate:
    def __init__(self, max_concurrent: int, max_waiting: int, wait_timeout: float,
                 max_per_caller: Callable[[], Optional[int]] = lambda: None) -> None:
        if max_concurrent < 1 or max_waiting < 0 or wait_timeout < 0:
            raise ValueError("max_concurrent >= 1, max_waiting >= 0, wait_timeout >= 0")
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self.wait_timeout = wait_timeout
        self._max_per_caller = max_per_caller   # read each time: the teacher may change it live
        self._slots: Optional[asyncio.Semaphore] = None
        self.active = 0
        self.waiting = 0
        self._per_caller: Dict[str, int] = {}

    def _semaphore(self) -> asyncio.Semaphore:
        # Created on first use so it belongs to the server's event loop (Python 3.9 binds
        # asyncio primitives to the loop current at construction).
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrent)
        return self._slots

    def _busy(self) -> ServerBusy:
        # Tell clients to come back after about one wait period, at least a second.
        return ServerBusy(retry_after=max(1, math.ceil(min(self.wait_timeout, 10))))

    async def acquire(self, caller: Optional[str] = None) -> None:
        """Take a slot, waiting in line if needed; raise ServerBusy when the line is full or slow,
        CallerBusy when ``caller`` already has its share. Pair with ``release(caller)``."""
        limit = self._max_per_caller() if caller is not None else None
        if caller is not None:
            if limit is not None and self._per_caller.get(caller, 0) >= limit:
                raise CallerBusy(limit)
            self._per_caller[caller] = self._per_caller.get(caller, 0) + 1
        try:
            await self._acquire()
        except BaseException:
            self._forget(caller)
            raise

    def _forget(self, caller: Optional[str]) -> None:
        if caller is None:
            return
        left = self._per_caller.get(caller, 1) - 1
        if left > 0:
            self._per_caller[caller] = left
        else:
            self._per_caller.pop(caller, None)   # the map never grows with callers gone

    async def _acquire(self) -> None:
        slots = self._semaphore()
        if self.active < self.max_concurrent and not self.waiting:
            await slots.acquire()
            self.active += 1
            return
        if self.waiting >= self.max_waiting:
            raise self._busy()
        self.waiting += 1
        try:
            # A cancel scope, not asyncio.wait_for: wait_for runs the acquire in another task
            # and can lose a slot that is granted just as the timeout fires.
            with anyio.move_on_after(self.wait_timeout) as line:
                await slots.acquire()
        finally:
            self.waiting -= 1
        if line.cancelled_caught:
            raise self._busy()
        self.active += 1

    def release(self, caller: Optional[str] = None) -> None:
        self.active -= 1
        self._semaphore().release()
        self._forget(caller)
