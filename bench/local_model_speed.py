"""Speed of the embedded local model on this machine: load time, first-token latency,
tokens/second, and whether two requests at once are better served by one shared context
(what xedullm does: one context using every core, requests take turns) or a pool of
single-core contexts.

    python bench/local_model_speed.py
"""
from __future__ import annotations

import os
import statistics
import threading
import time

from xedullm.protocols.local import LocalEngine, load_model, resolve_model_path
from xedullm.types import ChatRequest

QUESTIONS = [
    "Explain photosynthesis to a ten-year-old.",
    "Write a short poem about the sea.",
    "What are three tips for learning to program?",
    "Describe how a bicycle works.",
    "Why is the sky blue?",
]


def request(question: str, max_tokens: int = 128) -> ChatRequest:
    # Each question differs from the last, so llama.cpp's prompt prefix cache cannot help.
    return ChatRequest(model="SmolLM2-135M-Instruct", stream=True, temperature=0,
                       max_tokens=max_tokens, messages=[{"role": "user", "content": question}],
                       extra={"seed": 7})


def timed_stream(engine: LocalEngine, question: str):
    start = time.perf_counter()
    first = None
    usage = None
    for chunk in engine.stream(request(question)):
        if first is None and chunk.text:
            first = time.perf_counter() - start
        usage = chunk.usage or usage
    return first, time.perf_counter() - start, usage


def single(engine: LocalEngine) -> None:
    firsts, rates = [], []
    for question in QUESTIONS:
        first, total, usage = timed_stream(engine, question)
        firsts.append(first)
        rates.append(usage.completion_tokens / (total - first))
        print(f"  {usage.prompt_tokens:3d} prompt + {usage.completion_tokens:3d} completion tokens: "
              f"first token {first * 1000:6.1f} ms, {rates[-1]:6.1f} tokens/s")
    print(f"first-token latency (median): {statistics.median(firsts) * 1000:.1f} ms")
    print(f"generation speed   (median): {statistics.median(rates):.1f} tokens/s")


def two_at_once_shared(engine: LocalEngine) -> None:
    results = {}

    def run(i: int) -> None:
        results[i] = timed_stream(engine, QUESTIONS[i])

    start = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    tokens = sum(r[2].completion_tokens for r in results.values())
    firsts = sorted(r[0] for r in results.values())
    print(f"shared context, 2 requests: {tokens / wall:6.1f} tokens/s total, "
          f"first tokens after {firsts[0] * 1000:.0f} / {firsts[1] * 1000:.0f} ms, wall {wall:.2f} s")


def two_at_once_pool() -> None:
    import llama_cpp

    path = str(resolve_model_path(None))
    contexts = [llama_cpp.Llama(model_path=path, n_ctx=2048, n_threads=1, n_threads_batch=1,
                                verbose=False) for _ in range(2)]
    results = {}

    def run(i: int) -> None:
        start = time.perf_counter()
        first, count = None, 0
        for piece in contexts[i].create_chat_completion(
                messages=[{"role": "user", "content": QUESTIONS[i]}], stream=True,
                temperature=0, max_tokens=128, seed=7):
            if first is None and piece["choices"][0]["delta"].get("content"):
                first = time.perf_counter() - start
            count += 1
        results[i] = (first, count)

    start = time.perf_counter()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    tokens = sum(r[1] for r in results.values())
    firsts = sorted(r[0] for r in results.values())
    print(f"pool of 2 one-core contexts: {tokens / wall:6.1f} tokens/s total (stream pieces), "
          f"first tokens after {firsts[0] * 1000:.0f} / {firsts[1] * 1000:.0f} ms, wall {wall:.2f} s")


def main() -> None:
    print(f"CPU cores: {os.cpu_count()}")
    start = time.perf_counter()
    load_model(resolve_model_path(None))
    print(f"model load: {(time.perf_counter() - start) * 1000:.0f} ms")
    engine = LocalEngine()
    timed_stream(engine, "Hello!")  # warm-up
    single(engine)
    two_at_once_shared(engine)
    two_at_once_pool()


if __name__ == "__main__":
    main()
