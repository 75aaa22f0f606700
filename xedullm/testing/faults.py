"""Fault switches for the fake provider servers.

Append faults to ``fake.faults``; each valid chat request takes the next one (FIFO), so
"503 twice, then success" is two ``Fault.status(503)``. Requests a fake rejects anyway
(bad key, bad body, unknown model, ERNIE token errors) do not take a fault. Combine
faults with ``+``: ``Fault.crlf() + Fault.no_done()``.

"after=n" counts the data events of a stream (comments and keep-alives do not count).
Error bodies default to the provider's own shape for the status (protocols.md).
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Mapping, Optional, Tuple


@dataclass(frozen=True)
class Fault:
    # Answer with an error instead: 'status' (status_code), 'quota' or 'rate_limited'.
    error: Optional[str] = None
    status_code: Optional[int] = None
    body: Any = None                          # dict -> JSON, str/bytes -> raw body
    headers: Optional[Mapping[str, str]] = None
    stall_seconds: float = 0.0                # before the first byte
    pause: Optional[Tuple[float, int]] = None  # (seconds, after n events)
    keepalive_seconds: float = 0.0
    keepalive_interval: float = 0.1
    disconnect_at: Optional[int] = None
    malformed_at: Optional[int] = None
    error_frame_at: Optional[int] = None
    error_code: Any = None
    error_message: Optional[str] = None
    invalid_utf8_at: Optional[int] = None
    omit_done: bool = False
    blank_lines: int = 0
    huge_chars: Optional[int] = None
    huge_piece_chars: int = 1024
    crlf_lines: bool = False

    def __add__(self, other: "Fault") -> "Fault":
        """Both faults on the same request; where both set a field, ``other`` wins."""
        default = Fault()
        changes = {f.name: getattr(other, f.name) for f in fields(self)
                   if getattr(other, f.name) != getattr(default, f.name)}
        return replace(self, **changes)

    @classmethod
    def none(cls) -> "Fault":
        """A normal answer (lets a later fault hit the second request)."""
        return cls()

    @classmethod
    def status(cls, code: int, body: Any = None,
               headers: Optional[Mapping[str, str]] = None) -> "Fault":
        """HTTP ``code`` with the provider's error body for it (or ``body``)."""
        return cls(error="status", status_code=code, body=body, headers=headers)

    @classmethod
    def rate_limited(cls, retry_after: Optional[float] = 1) -> "Fault":
        """The provider's rate-limit error (429; ERNIE: 200 + error_code 18) + Retry-After."""
        headers = None if retry_after is None else {"Retry-After": _seconds(retry_after)}
        return cls(error="rate_limited", headers=headers)

    @classmethod
    def quota(cls) -> "Fault":
        """Out of balance, the provider's way: DeepSeek/OpenRouter 402; OpenAI 429
        insufficient_quota; Moonshot 429 exceeded_current_quota_error; GLM 429 "1113";
        DashScope (and its compatible mode) 400 Arrearage; ERNIE 200 error_code 17."""
        return cls(error="quota")

    @classmethod
    def disconnect_after(cls, n_chunks: int = 0) -> "Fault":
        """Close the TCP connection after ``n_chunks`` events, without ending the chunked
        body. Non-stream: headers and half the body, then close."""
        return cls(disconnect_at=n_chunks)

    @classmethod
    def malformed_chunk(cls, after: int = 0) -> "Fault":
        """An event whose data is truncated JSON after ``after`` events; the stream then goes
        on normally. Non-stream: the body is cut in half (complete HTTP, broken JSON)."""
        return cls(malformed_at=after)

    @classmethod
    def error_frame(cls, after: int = 0, code: Any = None,
                    message: Optional[str] = None) -> "Fault":
        """The provider's in-stream error on HTTP 200 after ``after`` events, then the stream
        ends. ``code`` is provider-native (GLM "1301", DashScope "DataInspectionFailed",
        OpenRouter 502, ERNIE 336100, OpenAI-style error.code, Moonshot error.type).
        Non-stream: HTTP 200 whose JSON body is that error. ERNIE with after=0: the
        documented ``application/json`` error body instead of SSE."""
        return cls(error_frame_at=after, error_code=code, error_message=message)

    @classmethod
    def stall(cls, seconds: float) -> "Fault":
        """Wait ``seconds`` before the first byte (status line included)."""
        return cls(stall_seconds=seconds)

    @classmethod
    def stall_between(cls, seconds: float, after: int = 1) -> "Fault":
        """Pause ``seconds`` after ``after`` events. Non-stream: after the headers."""
        return cls(pause=(seconds, after))

    @classmethod
    def keepalive_only(cls, seconds: float, interval: float = 0.1) -> "Fault":
        """Send only SSE comments for ``seconds`` (every ``interval``), then answer normally.
        Non-stream: blank lines instead, then the JSON body (DeepSeek under load)."""
        return cls(keepalive_seconds=seconds, keepalive_interval=interval)

    @classmethod
    def no_done(cls) -> "Fault":
        """Omit ``data: [DONE]`` (OpenAI-compatible streams only have one)."""
        return cls(omit_done=True)

    @classmethod
    def leading_blank_lines(cls, n: int = 3) -> "Fault":
        """``n`` newlines before the body (non-stream) or before the first event."""
        return cls(blank_lines=n)

    @classmethod
    def huge(cls, n_chars: int, piece_chars: int = 1024) -> "Fault":
        """A reply of exactly ``n_chars`` characters, streamed ``piece_chars`` at a time."""
        return cls(huge_chars=n_chars, huge_piece_chars=piece_chars)

    @classmethod
    def invalid_utf8(cls, after: int = 1) -> "Fault":
        """An extra content event after ``after`` events whose JSON string holds the bytes
        ``ff fe`` (invalid UTF-8). Non-stream: the content of the body holds them."""
        return cls(invalid_utf8_at=after)

    @classmethod
    def crlf(cls) -> "Fault":
        """Every ``\\n`` on the wire becomes ``\\r\\n``."""
        return cls(crlf_lines=True)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)
