"""The synchronous wire: urllib3 connection pools (keep-alive, redirects, proxies from the
environment, certifi's CA bundle), bytes in and out, nothing about what they mean."""
from __future__ import annotations

import contextlib
import socket
from typing import Dict, Iterator, Optional
from urllib.request import getproxies, proxy_bypass

import certifi
import urllib3
from urllib3.exceptions import HTTPError as _Urllib3Error
from urllib3.exceptions import NewConnectionError
from urllib3.exceptions import TimeoutError as _Urllib3Timeout

from ..types import HTTPRequest
from .wire import CONNECT_TIMEOUT, Answer, ReplyHead, WireError, encode

# Redirects are followed (a provider moving to https, a gateway's trailing slash); nothing else
# is retried here: HTTPEngine decides retries, knowing which errors and requests allow them.
_RETRIES = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=5,
                         raise_on_redirect=True, raise_on_status=False, respect_retry_after_header=False)
_READ_SIZE = 65536


class SyncReply(ReplyHead):
    """An answer whose body is read as it arrives."""

    def __init__(self, response: urllib3.BaseHTTPResponse, host: str) -> None:
        super().__init__(response, response.status, response.headers, host)

    def pieces(self) -> Iterator[bytes]:
        """The body, as the bytes arrive: chunk by chunk for a chunked body (SSE streams are),
        else whatever the socket has, up to 64 KiB."""
        response = self._response
        try:
            if response.chunked and response.supports_chunked_reads():
                yield from response.read_chunked(_READ_SIZE)
            else:
                read1 = response.read1
                while True:
                    data = read1(_READ_SIZE)
                    if not data:
                        break
                    yield data
        except (_Urllib3Error, OSError) as exc:
            raise _wire_error(exc, self._host) from None
        self.ended = True

    def read(self) -> bytes:
        return b"".join(self.pieces())


class SyncWire:
    def __init__(self, timeout: float) -> None:
        self._timeout = urllib3.Timeout(connect=min(CONNECT_TIMEOUT, timeout), read=timeout)
        self._managers: Dict[Optional[str], urllib3.PoolManager] = {}
        # Read once, like a browser at start: HTTP(S)_PROXY / NO_PROXY, and on Windows the
        # system's proxy settings.
        self._proxies = getproxies()
        # Answers handed out and not yet given back (the tests check every path gives them back).
        self.open_replies = 0

    def _manager(self, url: str) -> urllib3.PoolManager:
        parsed = urllib3.util.parse_url(url)
        proxy = self._proxies.get(parsed.scheme or "http") or self._proxies.get("all")
        if proxy and proxy_bypass(parsed.host or ""):
            proxy = None
        manager = self._managers.get(proxy)
        if manager is None:
            common = dict(num_pools=8, maxsize=8, timeout=self._timeout, retries=_RETRIES,
                          ca_certs=certifi.where())
            manager = urllib3.ProxyManager(proxy, **common) if proxy else urllib3.PoolManager(**common)
            self._managers[proxy] = manager
        return manager

    @contextlib.contextmanager
    def open(self, request: HTTPRequest) -> Iterator[SyncReply]:
        url, headers, body = encode(request)
        host = urllib3.util.parse_url(url).host or url
        try:
            response = self._manager(url).urlopen(request.method, url, body=body, headers=headers,
                                                  preload_content=False, decode_content=True)
        except (_Urllib3Error, OSError) as exc:
            raise _wire_error(exc, host) from None
        reply = SyncReply(response, host)
        self.open_replies += 1
        try:
            yield reply
        finally:
            self.open_replies -= 1
            # Read to the end, the connection goes back to the pool; else it is closed (unread
            # bytes would be the next request's answer).
            if not reply.ended:
                response.close()
            response.release_conn()

    def request(self, request: HTTPRequest) -> Answer:
        """One exchange, the whole body read."""
        with self.open(request) as reply:
            return Answer(reply.status, reply.headers, reply.read())

    def close(self) -> None:
        for manager in self._managers.values():
            manager.clear()
        self._managers.clear()


def _wire_error(exc: BaseException, host: str) -> WireError:
    reason = getattr(exc, "reason", None) or exc   # MaxRetryError wraps the cause
    # urllib3 2 still derives "connection refused" (NewConnectionError) from its connect
    # timeout class, for old callers; it is no timeout.
    timed_out = isinstance(reason, (_Urllib3Timeout, socket.timeout, TimeoutError)) and \
        not isinstance(reason, NewConnectionError)
    return WireError(type(reason).__name__, host, timed_out=timed_out)
