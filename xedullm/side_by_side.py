"""Ask several models the same question at once and see the answers side by side.

    from xedullm import Client, compare
    for r in compare('为什么天是蓝的？', [Client('deepseek'), Client('qwen'), Client('local')]):
        print(r.label, r.seconds, r.error or r.answer)

One failing client never stops the others: its result carries the ``LLMError`` in ``error``.
Each client is asked on a thread of its own, so the slowest answer sets the total time.
"""
from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, List, Optional, Sequence

from .errors import ConfigurationError, LLMError
from .types import Usage

if TYPE_CHECKING:
    from .client import Client, Messages


@dataclass
class Comparison:
    """One client's whole answer (or its error)."""

    label: str                      # who was asked: provider id (and model when two share one)
    model: Optional[str]
    answer: str
    error: Optional[LLMError]
    seconds: float
    usage: Optional[Usage]
    provider: Optional[str] = None  # who answered (a fallback's id when one did)


@dataclass
class ComparePiece:
    """One event of :func:`compare_stream`: a piece of text, or (``done``) the end of one answer."""

    index: int                      # position of the client in the list given
    label: str
    text: str = ""
    reasoning: str = ""
    done: bool = False
    error: Optional[LLMError] = None
    seconds: float = 0.0
    usage: Optional[Usage] = None


def labels_for(clients: Sequence["Client"]) -> List[str]:
    """Provider ids, with the model added where two clients share a provider."""
    plain = [c.label for c in clients]
    return [f"{p} · {c.model}" if plain.count(p) > 1 and c.model else p for p, c in zip(plain, clients)]


def _checked(clients: Sequence["Client"]) -> List["Client"]:
    clients = list(clients)
    if not clients:
        raise ConfigurationError("compare() 至少需要一个 Client。/ compare() needs at least one Client.")
    return clients


def compare(question: "Messages", clients: Sequence["Client"], **options: Any) -> List[Comparison]:
    """Every client's answer to ``question``, in the order given; ``options`` go to each chat()."""
    clients = _checked(clients)
    names = labels_for(clients)

    def ask(i: int) -> Comparison:
        client, started = clients[i], time.monotonic()
        try:
            result = client.chat(question, **options)
        except LLMError as err:
            return Comparison(names[i], client.model, "", err, time.monotonic() - started, None)
        return Comparison(names[i], result.model or client.model, result.text, None,
                          time.monotonic() - started, result.usage, result.provider)

    with ThreadPoolExecutor(max_workers=len(clients), thread_name_prefix="xedullm-compare") as pool:
        return list(pool.map(ask, range(len(clients))))


def compare_stream(question: "Messages", clients: Sequence["Client"], **options: Any) -> Iterator[ComparePiece]:
    """Pieces of every answer as they arrive, interleaved; each answer ends with a ``done`` piece.

    Closing the iterator early stops reading every stream (their connections close)."""
    clients = _checked(clients)
    names = labels_for(clients)
    pieces: "queue.Queue[ComparePiece]" = queue.Queue()
    stop = threading.Event()

    def ask(i: int) -> None:
        started, usage, error = time.monotonic(), None, None
        try:
            chunks = clients[i].chat_stream(question, **options)
            try:
                for chunk in chunks:
                    if stop.is_set():
                        break
                    usage = chunk.usage or usage
                    if chunk.text or chunk.reasoning:
                        pieces.put(ComparePiece(i, names[i], chunk.text, chunk.reasoning))
            finally:
                chunks.close()
        except LLMError as err:
            error = err
        finally:
            pieces.put(ComparePiece(i, names[i], done=True, error=error, seconds=time.monotonic() - started,
                                    usage=usage))

    threads = [threading.Thread(target=ask, args=(i,), name="xedullm-compare", daemon=True)
               for i in range(len(clients))]
    for thread in threads:
        thread.start()
    remaining = len(clients)
    try:
        while remaining:
            piece = pieces.get()
            remaining -= piece.done
            yield piece
    finally:
        # Each reader closes its stream at its next piece; nobody waits here for a slow one.
        stop.set()
