"""The contract every wire-protocol adapter fulfils. Adapters do no I/O.

The transport (``transport.py``) asks an adapter for an :class:`HTTPRequest`, sends it,
and hands the answer back for parsing. Streams are decoded into SSE events by
``sse.SSEDecoder`` first; the adapter only interprets event payloads.
"""
from __future__ import annotations

import codecs
import json
from typing import Any, List, Mapping, Optional, Tuple, Union

from ..catalog import Provider
from ..errors import BadRequestError, LLMError, ServerError
from ..sse import SSEEvent
from ..types import ChatChunk, ChatRequest, ChatResult, Connection, EmbeddingResult, HTTPRequest, Usage


class _StreamEnd:
    """Returned by ``parse_event`` when the payload says the stream is over ([DONE])."""

    def __repr__(self) -> str:
        return "STREAM_END"


STREAM_END = _StreamEnd()
EventResult = Union[ChatChunk, _StreamEnd, None]


class Adapter:
    """Base class: the methods a protocol must provide, and helpers they share."""

    #: whether requests need a token obtained with :meth:`token_request` first (ERNIE)
    uses_token = False

    def __init__(self, provider: Optional[Provider]) -> None:
        self.provider = provider

    @property
    def provider_name(self) -> str:
        return self.provider.id if self.provider else "openai-compatible"

    # -- requests ---------------------------------------------------------------------
    def check_request(self, req: ChatRequest) -> None:
        """Refuse what this protocol cannot carry before anything is sent (a token step
        included); ``chat_request`` refuses it too."""

    def chat_request(self, req: ChatRequest, conn: Connection, token: Optional[str] = None) -> HTTPRequest:
        raise NotImplementedError

    def models_request(self, conn: Connection, token: Optional[str] = None) -> Optional[HTTPRequest]:
        """The request listing models live, or None when the protocol has no such endpoint."""
        return None

    def token_request(self, conn: Connection) -> HTTPRequest:
        raise NotImplementedError

    def embeddings_request(self, texts: List[str], model: str, conn: Connection,
                           token: Optional[str] = None) -> HTTPRequest:
        """The request for one batch of vectors; a protocol without embeddings refuses."""
        from ..embeddings import WITH_EMBEDDINGS_EN, WITH_EMBEDDINGS_ZH

        raise BadRequestError(f"这个接口没有文本向量（embedding）模型：请换用 {WITH_EMBEDDINGS_ZH}。/ "
                              f"This API has no embedding model: use {WITH_EMBEDDINGS_EN}.",
                              provider=self.provider_name, code="no_embedding_model")

    def parse_embeddings(self, body: bytes) -> EmbeddingResult:
        raise NotImplementedError

    # -- responses --------------------------------------------------------------------
    def parse_chat(self, body: bytes) -> ChatResult:
        """A 2xx non-stream body. Raises the right LLMError if the body carries an error."""
        raise NotImplementedError

    def parse_event(self, event: SSEEvent) -> EventResult:
        """One SSE event of a 2xx stream: a chunk, STREAM_END, or None (nothing to yield)."""
        raise NotImplementedError

    def parse_error(self, status: int, headers: Mapping[str, str], body: bytes) -> LLMError:
        """A non-2xx answer turned into the right error class."""
        raise NotImplementedError

    def parse_models(self, body: bytes) -> List[str]:
        data = load_json(body, self)
        return [m["id"] for m in data.get("data", []) if isinstance(m, dict) and "id" in m]

    def parse_token(self, status: int, body: bytes) -> Tuple[str, float]:
        """(token, seconds until it expires)."""
        raise NotImplementedError

    def is_token_expired(self, error: LLMError) -> bool:
        """Whether this error means: refresh the token once and replay the request."""
        return False


def join_url(base: str, path: str) -> str:
    return f"{base.rstrip('/')}/{path}"


def usage_from(raw: Any) -> Optional[Usage]:
    """A usage object in any of our protocols' spellings (OpenAI's ``prompt_tokens``/
    ``completion_tokens``, DashScope's ``input_tokens``/``output_tokens``); None if absent."""
    if not isinstance(raw, dict):
        return None
    prompt = _count(raw.get("prompt_tokens", raw.get("input_tokens")))
    completion = _count(raw.get("completion_tokens", raw.get("output_tokens")))
    return Usage(prompt, completion, _count(raw.get("total_tokens")) or prompt + completion)


def _count(value: Any) -> int:
    # A provider's garbage (a string, a float, a negative number) counts as nothing, not a crash.
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def load_json(body: Union[bytes, str], adapter: Adapter) -> Any:
    """Parse a JSON body; garbage from upstream is a ServerError, never a crash."""
    if isinstance(body, bytes):
        # Invalid UTF-8 is replaced, not fatal: the same text a stream of it gives (sse.py).
        # (The BOM by hand: the "utf-8-sig" codec is written in Python, "utf-8" is not.)
        body = (body[3:] if body[:3] == codecs.BOM_UTF8 else body).decode("utf-8", "replace")
    try:
        return json.loads(body)
    except ValueError:
        snippet = body[:200]
        raise ServerError(
            provider=adapter.provider_name,
            detail=f"服务商返回了无法解析的数据 / unparseable reply from the provider: {snippet!r}",
        ) from None


def retry_after_seconds(headers: Mapping[str, str]) -> Optional[float]:
    """Retry-After (seconds or HTTP date) or retry-after-ms, as seconds."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime
    import time

    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
