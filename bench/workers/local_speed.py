"""Local model speed: ``Client(provider='local')`` vs ``llama_cpp.Llama`` called directly on
the same GGUF file, same prompts, greedy (temperature 0), same seed and repeat penalty.

    python local_speed.py '<json spec>'    -> one JSON line on stdout

spec: questions, rounds, max_tokens, seed. Both contestants live in this one process and
take turns question by question (the order rotates every question), so a burst of load from
elsewhere on the machine hits both alike.
"""
from __future__ import annotations

import json
import os
import sys
import time


def main():
    spec = json.loads(sys.argv[1])
    from xedullm import Client
    from xedullm.engines.local import N_CTX, REPEAT_PENALTY, resolve_model_path
    import llama_cpp

    params = dict(temperature=0, seed=spec["seed"], max_tokens=spec["max_tokens"],
                  repeat_penalty=REPEAT_PENALTY)
    path = str(resolve_model_path(None))

    start = time.perf_counter()
    ours = Client(provider="local", verbose=False)
    ours.inference("Hi", **dict(params, max_tokens=1))   # loads the model
    load_ours = time.perf_counter() - start
    start = time.perf_counter()
    # llama-cpp-python's own defaults, as its README shows it; the context size is ours.
    raw = llama_cpp.Llama(model_path=path, n_ctx=N_CTX, verbose=False)
    load_raw = time.perf_counter() - start
    # ... and with the thread counts ours picks, which isolates what our wrapper costs.
    threads = max(1, (os.cpu_count() or 1) // 2)
    start = time.perf_counter()
    tuned = llama_cpp.Llama(model_path=path, n_ctx=N_CTX, n_threads=threads,
                            n_threads_batch=threads, verbose=False)
    load_tuned = time.perf_counter() - start

    def run_ours(question):
        t0 = time.perf_counter()
        first, parts = None, []
        for piece in ours.inference(question, stream=True, **params):
            if first is None and piece:
                first = time.perf_counter() - t0
            parts.append(piece)
        return first, time.perf_counter() - t0, "".join(parts), ours.last_usage.completion_tokens

    def run_raw(question, llm):
        t0 = time.perf_counter()
        first, parts = None, []
        for chunk in llm.create_chat_completion(
                messages=[{"role": "user", "content": question}], stream=True, **params):
            piece = chunk["choices"][0]["delta"].get("content")
            if piece:
                if first is None:
                    first = time.perf_counter() - t0
                parts.append(piece)
        # One streamed piece per sampled token (pieces wait only for split UTF-8 characters).
        return first, time.perf_counter() - t0, "".join(parts), len(parts)

    contestants = {"xedullm": run_ours, "llama_cpp": lambda q: run_raw(q, raw),
                   "llama_cpp_threads": lambda q: run_raw(q, tuned)}
    for fn in contestants.values():
        fn("Hello!")   # warm-up: first-call allocations are not what a class waits for
    samples = {name: [] for name in contestants}
    order = list(contestants)
    for _ in range(spec["rounds"]):
        for question in spec["questions"]:
            order = order[1:] + order[:1]
            texts = {}
            for name in order:
                first, total, text, tokens = contestants[name](question)
                texts[name] = (text, tokens)
                samples[name].append({"first": first, "total": total, "text_chars": len(text)})
            same = all(t[0] == texts["xedullm"][0] for t in texts.values())
            for name in contestants:
                # Same text means the same tokens: count them once, the way ours reports usage.
                tokens = texts["xedullm"][1] if same else texts[name][1]
                samples[name][-1].update(tokens=tokens, same_text=same)
    print(json.dumps({"load": {"xedullm": load_ours, "llama_cpp": load_raw,
                               "llama_cpp_threads": load_tuned},
                      "samples": samples}))


if __name__ == "__main__":
    main()
