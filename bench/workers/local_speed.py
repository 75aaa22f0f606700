"""Local model speed under concurrency, for one runtime of the local engine.

    XEDULLM_LOCAL_RUNTIME=xllamacpp|llama_cpp python local_speed.py '<json spec>'  -> one JSON line

spec: questions, concurrency (a list, e.g. [1, 8, 30]), max_tokens, seed. For each level n,
n students ask at once (threads, streaming, greedy); the answer is the aggregate generated
tokens per second over the wall time of the whole burst, and each student's time to the first
token. The model is loaded (worker started) before anything is timed.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time


def burst(client, questions, n, max_tokens, seed):
    firsts, tokens = [None] * n, [0] * n
    start = threading.Barrier(n + 1)

    def student(i):
        start.wait()
        t0 = time.perf_counter()
        for chunk in client.chat_stream([{"role": "user", "content": questions[i % len(questions)]}],
                                        temperature=0, max_tokens=max_tokens, seed=seed):
            if chunk.text and firsts[i] is None:
                firsts[i] = time.perf_counter() - t0
            if chunk.usage:
                tokens[i] = chunk.usage.completion_tokens

    threads = [threading.Thread(target=student, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"n": n, "wall": wall, "tokens": sum(tokens), "firsts": [f for f in firsts if f is not None]}


def main():
    spec = json.loads(sys.argv[1])
    from xedullm import Client

    client = Client(provider="local", verbose=False)
    t0 = time.perf_counter()
    client.inference("Hi", max_tokens=1)     # starts the worker and loads the model
    load = time.perf_counter() - t0
    from xedullm.engines.local import LocalEngine

    status = LocalEngine().status()   # the same worker, shared by every engine in the process
    levels = [burst(client, spec["questions"], n, spec["max_tokens"], spec["seed"])
              for n in spec["concurrency"]]
    print(json.dumps({"runtime": status["runtime"], "version": status["version"], "load": load,
                      "slots": status["model"]["max_contexts"], "levels": levels,
                      "runtime_env": os.environ.get("XEDULLM_LOCAL_RUNTIME")}))


if __name__ == "__main__":
    main()
