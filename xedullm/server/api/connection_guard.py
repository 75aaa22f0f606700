"""Connections one client cannot hoard: uvicorn's HTTP/1.1 protocol with a few more limits.

uvicorn closes idle keep-alive connections, but a client that sends its request one byte at a
time (slowloris), or opens hundreds of sockets and never finishes them, or never reads the
answer it asked for, keeps a file descriptor (and for the last, an upstream call and a gate
slot) for as long as it likes. On a teacher's laptop with 256 open files that is everyone
else turned away. So each connection here also has:

- a **read deadline**: a request (headers and body) must arrive whole within ``read_timeout``
  seconds of its first byte, and the first one within ``read_timeout`` of the connection
  opening. A connection idle between requests is left to uvicorn's keep-alive timeout;
- a **head limit**: at most ``MAX_HEAD_BYTES`` of a request line and headers still incomplete
  are buffered (the httptools parser itself has no limit); past that the answer is a 400;
- a **send deadline**: when the client stops reading and our write buffer stays full for
  ``send_timeout`` seconds, the connection is dropped; the answer sees a disconnect and
  cancels its upstream call;
- a **per-address cap**: at most ``max_per_address`` connections open from one address
  (addresses of a proxy the teacher named are exempt: all students come through it).

The answer to a request is told when its connection is lost (the ``ON_DISCONNECT`` scope
extension), so it need not keep a task waiting for ``http.disconnect``, and may send the
frames of its body past the middleware (``SEND_BODY``).

And an offer to switch protocols (``Upgrade: h2c``, which Java's and JetBrains' HTTP clients
add to ordinary POSTs) is declined as RFC 9110 allows: the request is answered in HTTP/1.1,
body and all. httptools itself stops at such a request's head and drops its body.

A protocol subclass rather than an ASGI middleware because only the transport knows about
bytes that never became a request, or bytes never read; rather than another server because
uvicorn already runs everything else here and these are the only limits it lacks. It
subclasses uvicorn's httptools protocol (a C parser) rather than its h11 one: h11 parses and
frames every byte in Python, which costs more than the rest of a streamed answer's path.
"""
from __future__ import annotations

import asyncio
from typing import Any, Dict, FrozenSet, List, Optional, Tuple

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# What h11 (uvicorn's other protocol) allows an incomplete request head, and browsers stay far below.
MAX_HEAD_BYTES = 16 * 1024
# A scope extension: callbacks run when the connection of a request still being answered is
# lost. An answer learns of its student leaving without a task of its own waiting on
# receive() (api/chat_call.py); under other servers it waits on receive() as ASGI intends.
ON_DISCONNECT = "xedullm.on_disconnect"
# A scope extension: uvicorn's own send for the request. The app's middleware (CORS, error
# pages) acts on a response's start only, yet wraps every message; an answer sends its start
# through them and its frames here (api/chat_call.py).
SEND_BODY = "xedullm.send_body"
# A scope extension: the socket's peer address, before any X-Forwarded-For rewrote
# scope["client"] (admin/key_routes.py takes keys only from this machine).
PEER = "xedullm.peer"


def guarded_protocol(*, read_timeout: float, send_timeout: float, max_per_address: int,
                     exempt: FrozenSet[str] = frozenset()) -> type:
    """An ``HttpToolsProtocol`` class for ``uvicorn.Config(http=...)`` with these limits; the
    per-address counts are shared by the connections of one server."""
    open_from: Dict[str, int] = {}

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        _address: Optional[str] = None
        _read_deadline: Optional[asyncio.TimerHandle] = None
        _send_deadline: Optional[asyncio.TimerHandle] = None
        _in_message = False    # a request has begun and not all of it has arrived
        _in_head = True        # the bytes arriving belong to a request line or headers
        _head_bytes = 0

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
            cycle = self.cycle
            super().connection_lost(exc)
            if cycle is not None and cycle.disconnected:
                for callback in cycle.scope["extensions"][ON_DISCONNECT]:
                    callback()

        def data_received(self, data: bytes) -> None:
            if self._in_head:
                self._head_bytes += len(data)
            self._feed(data)
            if self._in_head and self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
                self.logger.warning("Request head too large.")
                self.send_400_response("Request head too large.")
            elif self._read_deadline is None and (self._in_message or not self._answering()):
                # A request still arriving starts the clock, and so do bytes between requests
                # (stray line ends, say): uvicorn stops its keep-alive timer on any byte, and
                # would otherwise wait for ever. Armed after the parser has seen the bytes, so
                # a request that came whole (most do) never needs a timer at all.
                self._arm_read()

        def _feed(self, data: bytes) -> None:
            # uvicorn's data_received, except for protocol switch offers (it only knows WebSocket).
            self._unset_keepalive_if_required()
            while True:
                try:
                    self.parser.feed_data(data)
                except httptools.HttpParserError:
                    self.logger.warning("Invalid HTTP request received.")
                    self.send_400_response("Invalid HTTP request received.")
                except httptools.HttpParserUpgrade as upgrade:
                    if self.parser.get_method() == b"CONNECT":
                        self.send_400_response("CONNECT is not served here.")
                        return
                    # The parser stopped after the head (the offset says where): parse the
                    # request again without the offer, from a new parser, and go on. Each
                    # round takes one request's offer away, so pipelined offers end too.
                    offset = upgrade.args[0] if upgrade.args else len(data)
                    data = _head_without_upgrade(self.parser, self.url, self.headers) + data[offset:]
                    self.parser = httptools.HttpRequestParser(self)
                    self.parser.set_dangerous_leniencies(lenient_data_after_close=True)   # as uvicorn's
                    continue
                return

        # -- parser callbacks (httptools calls them from inside data_received) ------------
        # A request offering a protocol switch reaches its head's end, then the parser stops
        # (see _feed); nothing of it is acted on until it is parsed again without the offer.
        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.scope["extensions"] = {ON_DISCONNECT: [], PEER: self.client}
            self._in_message = True   # data_received starts the clock if the request stays incomplete

        def on_headers_complete(self) -> None:
            if self.parser.should_upgrade():
                return
            self._in_head, self._head_bytes = False, 0
            super().on_headers_complete()
            if self.cycle is not None and self.cycle.scope is self.scope:
                self.scope["extensions"][SEND_BODY] = self.cycle.send
                self.cycle.transport = _HeadWithBody(self.transport, self.loop)

        def on_body(self, body: bytes) -> None:
            if not self.parser.should_upgrade():
                super().on_body(body)

        def on_message_complete(self) -> None:
            if self.parser.should_upgrade():
                return
            self._in_message, self._in_head = False, True
            self._read_deadline = _cancel(self._read_deadline)
            super().on_message_complete()

        def _answering(self) -> bool:
            return self.cycle is not None and not self.cycle.response_complete

        def _arm_read(self) -> None:
            _cancel(self._read_deadline)
            self._read_deadline = self.loop.call_later(read_timeout, self._read_too_slow)

        def _read_too_slow(self) -> None:
            self._read_deadline = None
            # A request still arriving, or bytes that never became one. Not an answer being
            # sent whose request is in: that connection is waiting on us, not on the client.
            if (self._in_message or not self._answering()) and not self.transport.is_closing():
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

    return GuardedHttpToolsProtocol


class _HeadWithBody:
    """The connection's transport as one response writes to it: its first write (the head,
    which uvicorn writes on its own) waits for the next one, and both leave as one segment,
    or at the end of the event loop's current step if no other comes. An answer's head and
    its body, or a stream's head and first frame, then take one system call and wake the
    client once, not twice. Every later write goes straight through."""

    __slots__ = ("_transport", "_loop", "_held", "write")

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: Optional[bytes] = None
        self.write = self._hold_first   # type: ignore[method-assign]

    def _hold_first(self, data: bytes) -> None:
        self._held = data
        self.write = self._join_held   # type: ignore[method-assign]
        self._loop.call_soon(self._flush)

    def _join_held(self, data: bytes) -> None:
        held, self._held = self._held, None
        self.write = self._transport.write   # type: ignore[method-assign]
        self._transport.write(held + data)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            self.write = self._transport.write   # type: ignore[method-assign]
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:   # is_closing, abort, get_extra_info…
        return getattr(self._transport, name)


_SWITCH_HEADERS = (b"upgrade", b"http2-settings")


def _head_without_upgrade(parser: Any, url: bytes, headers: List[Tuple[bytes, bytes]]) -> bytes:
    """The request head just parsed, minus the protocol switch it offered."""
    lines = [b"%s %s HTTP/%s\r\n" % (parser.get_method(), url, parser.get_http_version().encode("ascii"))]
    for name, value in headers:   # names as uvicorn keeps them: lower case
        if name in _SWITCH_HEADERS:
            continue
        if name == b"connection":
            value = b", ".join(t.strip() for t in value.split(b",") if t.strip() and t.strip().lower() not in _SWITCH_HEADERS)
            if not value:
                continue
        lines.append(b"%s: %s\r\n" % (name, value))
    return b"".join(lines) + b"\r\n"


def _cancel(timer: Optional[asyncio.TimerHandle]) -> None:
    if timer is not None:
        timer.cancel()
    return None
