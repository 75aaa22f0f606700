"""Speed of the embedded local model on this machine.

    python bench/local_model_speed.py

Prints the time to start the model's worker process and load the model, first-token latency
and generation speed of single requests through the engine (xedullm's defaults), two requests
at once through the worker's context pool, and 1 vs 2 llama.cpp threads for one request (why
the engine uses half the cores).
The machine's load average is printed first: other programs on the CPU change everything.
"""
from __future__ import annotations

import os
import statistics
import threading
import time

from xedullm.engines.local import DEFAULT_MODEL, LocalEngine, resolve_model_path
from xedullm.types import ChatRequest

QUESTIONS = [
    "Explain photosynthesis to a ten-year-old.",
    "Write a short poem about the sea.",
    "What are three tips for learning to program?",
    "Describe how a bicycle works.",
    "Why is the sky blue?",
]
MAX_TOKENS = 128


def request(question: str) -> ChatRequest:
    # Each question differs from the last, so llama.cpp's prompt prefix cache cannot help.
    return ChatRequest(model=DEFAULT_MODEL, stream=True, temperature=0, max_tokens=MAX_TOKENS,
                       messages=[{"role": "user", "content": question}])


def timed_stream(engine: LocalEngine, question: str):
    """(seconds to the first piece, total seconds, usage)."""
    start = time.perf_counter()
    first, usage = None, None
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
        rates.append((usage.completion_tokens - 1) / (total - first))
        print(f"  {usage.prompt_tokens:3d} prompt + {usage.completion_tokens:3d} completion tokens: "
              f"first token {first * 1000:6.1f} ms, then {rates[-1]:6.1f} tokens/s")
    print(f"first-token latency (median): {statistics.median(firsts) * 1000:.0f} ms")
    print(f"generation speed    (median): {statistics.median(rates):.1f} tokens/s")


def two_at_once(engine: LocalEngine) -> None:
    results = {}
    QUESTIONS.append(QUESTIONS.pop(0))  # fresh prompts each round

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
    print(f"two requests at once (engine pool): {tokens / wall:.1f} tokens/s together, "
          f"first tokens after {firsts[0] * 1000:.0f} and {firsts[1] * 1000:.0f} ms")


def threads_compared() -> None:
    import llama_cpp

    path = str(resolve_model_path(None))
    for n in (1, 2):
        llama = llama_cpp.Llama(model_path=path, n_ctx=2048, n_threads=n, n_threads_batch=n,
                                verbose=False)
        start, count = time.perf_counter(), 0
        for _ in llama.create_completion(prompt=QUESTIONS[3], stream=True, temperature=0,
                                         max_tokens=MAX_TOKENS):
            count += 1
        print(f"one request, context with {n} thread(s): "
              f"{count / (time.perf_counter() - start):.1f} tokens/s")
        llama.close()


def main() -> None:
    print(f"CPU cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
    engine = LocalEngine()
    start = time.perf_counter()
    timed_stream(engine, "Hello!")  # starts the worker and loads the model; also the warm-up
    loaded = engine.status()["model"]
    print(f"worker start + model load + first answer: {(time.perf_counter() - start) * 1000:.0f} ms "
          f"(worker: up to {loaded['max_contexts']} contexts, {loaded['n_threads']} thread(s) per request alone)")
    single(engine)
    two_at_once(engine)  # the first time, the pool also creates its second context
    two_at_once(engine)
    threads_compared()
    print(f"load average now: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
