"""Connections one client cannot hoard: uvicorn's HTTP/1.1 protocol with three more limits.

uvicorn closes idle keep-alive connections, but a client that sends its request one byte at a
time (slowloris), or opens hundreds of sockets and never finishes them, or never reads the
answer it asked for, keeps a file descriptor (and for the last, an upstream call and a gate
slot) for as long as it likes. On a teacher's laptop with 256 open files that is everyone
else turned away. So each connection here also has:

- a **read deadline**: the whole request (headers and body) must arrive within
  ``read_timeout`` seconds of the connection opening or of the previous answer ending;
- a **send deadline**: when the client stops reading and our write buffer stays full for
  ``send_timeout`` seconds, the connection is dropped; the answer sees a disconnect and
  cancels its upstream call;
- a **per-address cap**: at most ``max_per_address`` connections open from one address
  (addresses of a proxy the teacher named are exempt: all students come through it).

A protocol subclass rather than an ASGI middleware because only the transport knows about
bytes that never became a request, or bytes never read; rather than another server because
uvicorn already runs everything else here and these are the only three limits it lacks.
"""
from __future__ import annotations

import asyncio
from typing import Any, Dict, FrozenSet, Optional

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol


def guarded_protocol(*, read_timeout: float, send_timeout: float, max_per_address: int,
                     exempt: FrozenSet[str] = frozenset()) -> type:
    """An ``H11Protocol`` class for ``uvicorn.Config(http=...)`` with these limits; the
    per-address counts are shared by the connections of one server."""
    open_from: Dict[str, int] = {}

    class GuardedH11Protocol(H11Protocol):
        _address: Optional[str] = None
        _read_deadline: Optional[asyncio.TimerHandle] = None
        _send_deadline: Optional[asyncio.TimerHandle] = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            peer = transport.get_extra_info("peername")
            address = peer[0] if peer else None
            if address is not None and address not in exempt and "*" not in exempt:
                if open_from.get(address, 0) >= max_per_address:
                    transport.abort()
                    return
                self._address = address
                open_from[address] = open_from.get(address, 0) + 1
            self._arm_read()

        def connection_lost(self, exc: Optional[Exception]) -> None:
            if self._address is not None:
                left = open_from.get(self._address, 1) - 1
                if left > 0:
                    open_from[self._address] = left
                else:
                    open_from.pop(self._address, None)
                self._address = None
            self._read_deadline = _cancel(self._read_deadline)
            self._send_deadline = _cancel(self._send_deadline)
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_read()   # the next request on this connection gets its own deadline

        def _arm_read(self) -> None:
            _cancel(self._read_deadline)
            self._read_deadline = self.loop.call_later(read_timeout, self._read_too_slow)

        def _read_too_slow(self) -> None:
            self._read_deadline = None
            # IDLE: headers not complete yet; SEND_BODY: the body is still trickling in.
            if self.conn.their_state in (h11.IDLE, h11.SEND_BODY) and not self.transport.is_closing():
                self.transport.abort()

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._send_deadline is None:
                self._send_deadline = self.loop.call_later(send_timeout, self._send_too_slow)

        def resume_writing(self) -> None:
            self._send_deadline = _cancel(self._send_deadline)
            super().resume_writing()

        def _send_too_slow(self) -> None:
            self._send_deadline = None
            self.transport.abort()

    return GuardedH11Protocol


def _cancel(timer: Optional[asyncio.TimerHandle]) -> None:
    if timer is not None:
        timer.cancel()
    return None
