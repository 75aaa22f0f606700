"""What the two HTTP wires (``sync_wire``: urllib3, ``async_wire``: aiohttp) share: how an
adapter's :class:`HTTPRequest` becomes bytes, the one error they raise, and the masking of
secrets in the libraries' own log lines.

Two libraries rather than one because each is the cheapest of its kind at what a chat call
does most, reading a stream of small chunks: urllib3 reads through http.client's buffered
socket file and aiohttp parses HTTP in C, where a pure-Python HTTP/1.1 state machine costs
more per chunk than everything else in a stream (measured in bench/RESULTS.md).
"""
from __future__ import annotations

import json
import logging
import re
from typing import Any, Dict, Mapping, Optional, Tuple
from urllib.parse import urlencode

from ..types import HTTPRequest

USER_AGENT = "xedullm"
# Servers that wait long before answering (or keep a stream open) must not hit a connect-
# sized limit; reaching the server at all gets at most this long.
CONNECT_TIMEOUT = 10.0


class WireError(Exception):
    """The request never got a complete answer: no connection, a timeout, a dropped stream.
    ``timed_out`` tells a timeout from the rest; the message names the kind and the host
    only (never a URL: ERNIE's carry credentials in the query)."""

    def __init__(self, kind: str, host: str, *, timed_out: bool) -> None:
        super().__init__(f"{kind} ({host})")
        self.timed_out = timed_out


# One encoder, made once (json.dumps with options builds a new one per call).
_compact_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def encode(request: HTTPRequest) -> Tuple[str, Dict[str, str], Optional[bytes]]:
    """(URL with the query, headers, body) for an adapter's request."""
    url = request.url
    if request.params:
        url += ("&" if "?" in url else "?") + urlencode(request.params)
    headers = {"User-Agent": USER_AGENT, "Accept": "*/*"}
    headers.update(request.headers)
    body = None
    if request.json is not None:
        # Compact UTF-8, as providers' own SDKs send it; NaN is not JSON.
        body = _compact_json(request.json).encode()
        headers.setdefault("Content-Type", "application/json")
    return url, headers, body


def is_success(status: int) -> bool:
    return 200 <= status < 300


class ReplyHead:
    """What both wires' answers have before their body is read: status, headers (case-
    insensitive), and whether the body has been read to the end (then the connection is reused)."""

    def __init__(self, response: Any, status: int, headers: Mapping[str, str], host: str) -> None:
        self._response = response
        self._host = host   # for errors: the host only, never the URL
        self.status = status
        self.headers = headers
        self.ended = False

    @property
    def is_success(self) -> bool:
        return is_success(self.status)


class Answer:
    """A whole exchange: status, headers (case-insensitive) and body."""

    def __init__(self, status: int, headers: Mapping[str, str], content: bytes) -> None:
        self.status, self.headers, self.content = status, headers, content

    @property
    def is_success(self) -> bool:
        return is_success(self.status)


def is_stream(headers: Mapping[str, str]) -> bool:
    """Only a JSON body is not a stream (ERNIE answers a failed stream request that way);
    anything else — text/event-stream with any parameters, or a server that labels it
    loosely — is read as SSE."""
    return "json" not in headers.get("content-type", "").lower()


# ERNIE puts its API Key and Secret Key (token step) and its access token (every chat) in the
# URL query, and urllib3 logs each request line at DEBUG: a notebook's
# logging.basicConfig(level=DEBUG) would print them. A logger's filter applies only to records
# logged on it (not its children), so each logger that writes URLs gets one.
_URL_SECRETS = re.compile(r"((?:access_token|client_id|client_secret)=)[^&\s\"']+")
_URL_LOGGERS = ("urllib3.connectionpool", "urllib3.poolmanager", "urllib3.util.retry",
                "aiohttp.client", "aiohttp.internal")


class _MaskURLSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "=" in record.msg:
            record.msg = _URL_SECRETS.sub(r"\1***", record.msg)
        if isinstance(record.args, tuple):
            # Arguments may be URL objects as well as strings: masked ones become strings.
            record.args = tuple(_URL_SECRETS.sub(r"\1***", str(a)) if _URL_SECRETS.search(str(a)) else a
                                for a in record.args)
        return True


_mask = _MaskURLSecrets()
for _name in _URL_LOGGERS:
    logging.getLogger(_name).addFilter(_mask)
