"""The contract between the Client facade and whatever answers: the HTTP engine (a provider
or a classroom server, through a protocol adapter) or the local model. Only ``client.py``
holds an engine; every other layer goes through the Client's public API."""
from __future__ import annotations

from typing import AsyncIterator, Iterator, List

try:
    from typing import Protocol
except ImportError:  # pragma: no cover - Python < 3.8 is not supported anyway
    Protocol = object  # type: ignore

from ..types import ChatChunk, ChatRequest, ChatResult, EmbeddingResult


class Engine(Protocol):
    """``req.stream`` was decided by the Client; an engine never changes the request."""

    def chat(self, req: ChatRequest) -> ChatResult: ...

    def stream(self, req: ChatRequest) -> Iterator[ChatChunk]: ...

    async def achat(self, req: ChatRequest) -> ChatResult: ...

    def astream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]: ...

    def models(self) -> List[str]: ...

    async def amodels(self) -> List[str]: ...

    # Vectors for ``texts`` (already checked, at most the provider's batch) made by ``model``;
    # an engine without embeddings raises a BadRequestError saying which models have them.
    def embed(self, texts: List[str], model: str) -> EmbeddingResult: ...

    async def aembed(self, texts: List[str], model: str) -> EmbeddingResult: ...

    def close(self) -> None: ...

    async def aclose(self) -> None: ...
