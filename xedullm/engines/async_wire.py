"""The asynchronous wire: an aiohttp session per event loop (keep-alive, redirects, proxies from
the environment, certifi's CA bundle), bytes in and out, nothing about what they mean.

A session belongs to the loop it was made in, and ``asyncio.run`` makes a new loop each time,
so the wire keeps one session for the current loop and lets the old one go. aiohttp reports a
session nobody closed as an error on the console; a student's script that simply ends, or drops
its Client, did nothing wrong, so sessions left behind are detached and their connections
closed quietly (:func:`_let_go`), also when the wire itself is garbage-collected or the
interpreter exits.
"""
from __future__ import annotations

import asyncio
import contextlib
import ssl
import weakref
from typing import Any, AsyncIterator, List, Optional
from urllib.request import getproxies, proxy_bypass

import aiohttp
import certifi
from yarl import URL

from ..types import HTTPRequest
from .wire import CONNECT_TIMEOUT, Answer, ReplyHead, WireError, encode

_NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
_ssl_context: Optional[ssl.SSLContext] = None


def _ssl() -> ssl.SSLContext:
    global _ssl_context
    if _ssl_context is None:   # loading the CA bundle takes ~10 ms: once per process
        _ssl_context = ssl.create_default_context(cafile=certifi.where())
    return _ssl_context


class AsyncReply(ReplyHead):
    """An answer whose body is read as it arrives."""

    def __init__(self, response: aiohttp.ClientResponse, host: str) -> None:
        super().__init__(response, response.status, response.headers, host)

    async def pieces(self) -> AsyncIterator[bytes]:
        """The body, as the bytes arrive (whatever has come, not fixed-size blocks)."""
        content = self._response.content
        try:
            while True:
                data = await content.readany()
                if not data:
                    self.ended = True
                    return
                yield data
        except _NETWORK_ERRORS as exc:
            raise _wire_error(exc, self._host) from None

    async def read(self) -> bytes:
        parts = [data async for data in self.pieces()]
        return b"".join(parts)


class AsyncWire:
    def __init__(self, timeout: float) -> None:
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(CONNECT_TIMEOUT, timeout),
                                              sock_read=timeout)
        # The session and its loop, in a list the finalizer can reach without holding the wire.
        self._held: List[Any] = [None, None]
        self._proxies = getproxies()   # read once, as the sync wire does
        # Answers handed out and not yet given back (the tests check every path gives them back).
        self.open_replies = 0
        weakref.finalize(self, _let_go, self._held)

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session, owner = self._held
        if session is None or owner is not loop:
            if session is not None:
                _let_go(self._held)
            connector = aiohttp.TCPConnector(limit=1000, limit_per_host=0, ssl=_ssl(), ttl_dns_cache=300)
            session = aiohttp.ClientSession(connector=connector, timeout=self._timeout,
                                            cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=True)
            self._held[:] = [session, loop]
        return session

    def _proxy(self, url: URL) -> Optional[str]:
        proxy = self._proxies.get(url.scheme or "http") or self._proxies.get("all")
        if proxy and proxy_bypass(url.host or ""):
            return None
        return proxy

    @contextlib.asynccontextmanager
    async def open(self, request: HTTPRequest) -> AsyncIterator[AsyncReply]:
        raw_url, headers, body = encode(request)
        url = URL(raw_url)
        host = url.host or raw_url
        try:
            response = await self._session().request(request.method, url, data=body, headers=headers,
                                                     proxy=self._proxy(url), allow_redirects=True,
                                                     max_redirects=5)
        except _NETWORK_ERRORS as exc:
            raise _wire_error(exc, host) from None
        reply = AsyncReply(response, host)
        self.open_replies += 1
        try:
            yield reply
        finally:
            self.open_replies -= 1
            # Read to the end, the connection goes back to the pool; else it is closed.
            if reply.ended:
                response.release()
            else:
                response.close()

    async def request(self, request: HTTPRequest) -> Answer:
        """One exchange, the whole body read."""
        async with self.open(request) as reply:
            return Answer(reply.status, reply.headers, await reply.read())

    async def aclose(self) -> None:
        session, owner = self._held
        self._held[:] = [None, None]
        if session is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if owner is running:
            await session.close()
        else:
            _let_go([session, owner])


def _let_go(held: List[Any]) -> None:
    """Forget a session without awaiting: detached, it no longer counts as unclosed, and its
    connector closes its sockets (aiohttp's synchronous close, which is also safe, and does
    nothing, once the loop has closed)."""
    session = held[0]
    held[:] = [None, None]
    if session is None or session.closed:
        return
    connector = session.connector
    session.detach()
    if connector is not None:
        try:
            connector._close()
        except RuntimeError:   # the loop is gone mid-close: the sockets go with the process
            pass


def _wire_error(exc: BaseException, host: str) -> WireError:
    timed_out = isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError))
    return WireError(type(exc).__name__, host, timed_out=timed_out)
