"""Local model speed: ``Client(provider='local')`` (the model in its worker process) vs the same
generation code run in this process (the engine's previous, in-process way) vs
``llama_cpp.Llama`` called directly on the same GGUF file: same prompts, greedy
(temperature 0), same seed and repeat penalty.

    python local_speed.py '<json spec>'    -> one JSON line on stdout

spec: questions, rounds, max_tokens, seed. All contestants live in this one process and take
turns question by question (the order rotates every question), so a burst of load from
elsewhere on the machine hits them alike. Each answer's CPU time is counted too (ours: this
process plus the worker's), which a busy machine does not distort the way it does wall time. Last, the worker is killed with SIGSEGV and the
next answer is timed: what a crash costs the student who asks next.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time


def cpu_seconds(pid=None):
    """CPU time used so far by this process, or by process ``pid`` (read from /proc)."""
    if pid is None:
        return time.process_time()
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    spec = json.loads(sys.argv[1])
    from xedullm import Client
    from xedullm.engines import local_worker
    from xedullm.engines.local import N_CTX, REPEAT_PENALTY, TOP_P, resolve_model_path
    import llama_cpp

    params = dict(temperature=0, seed=spec["seed"], max_tokens=spec["max_tokens"],
                  repeat_penalty=REPEAT_PENALTY)
    path = resolve_model_path(None)
    threads = max(1, (os.cpu_count() or 1) // 2)

    start = time.perf_counter()
    ours = Client(provider="local", verbose=False)
    ours.inference("Hi", **dict(params, max_tokens=1))   # starts the worker, loads the model
    load_ours = time.perf_counter() - start
    start = time.perf_counter()
    # llama-cpp-python's own defaults, as its README shows it; the context size is ours.
    raw = llama_cpp.Llama(model_path=str(path), n_ctx=N_CTX, verbose=False)
    load_raw = time.perf_counter() - start
    # ... and with the thread counts ours picks, which isolates what our wrapper costs.
    start = time.perf_counter()
    tuned = llama_cpp.Llama(model_path=str(path), n_ctx=N_CTX, n_threads=threads,
                            n_threads_batch=threads, verbose=False)
    load_tuned = time.perf_counter() - start
    # The worker's own generation code, run here (after the raw ones loaded with the library's
    # defaults): what the engine did before the model moved into a process of its own.
    local_worker.turn_off_extra_buffers(llama_cpp)
    start = time.perf_counter()
    in_process = local_worker.LoadedModel(llama_cpp, path, N_CTX, threads, os.cpu_count() or 1)
    load_in_process = time.perf_counter() - start

    def run_ours(question):
        t0 = time.perf_counter()
        first, parts = None, []
        for piece in ours.inference(question, stream=True, **params):
            if first is None and piece:
                first = time.perf_counter() - t0
            parts.append(piece)
        return first, time.perf_counter() - t0, "".join(parts), ours.last_usage.completion_tokens

    def run_in_process(question):
        t0 = time.perf_counter()
        first, parts, usage = None, [], {}

        def send(text=None, **end):
            # What the worker would write to its pipe: pieces, then finish reason and usage.
            nonlocal first
            if text:
                if first is None:
                    first = time.perf_counter() - t0
                parts.append(text)
            usage.update(end)

        # A thread of its own, as the engine ran each generation before.
        generation = local_worker.Generation(in_process, [{"role": "user", "content": question}],
                                             dict(params, top_p=TOP_P, stop=[]), threading.Event())
        runner = threading.Thread(target=generation.run, args=(send,))
        runner.start()
        runner.join()
        return first, time.perf_counter() - t0, "".join(parts), usage["usage"][1]

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

    contestants = {"xedullm": run_ours, "in_process": run_in_process,
                   "llama_cpp": lambda q: run_raw(q, raw),
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
                worker = ours._get_engine().worker_pid if name == "xedullm" else None
                cpu = cpu_seconds() + (cpu_seconds(worker) if worker else 0)
                first, total, text, tokens = contestants[name](question)
                cpu = cpu_seconds() + (cpu_seconds(worker) if worker else 0) - cpu
                texts[name] = (text, tokens)
                samples[name].append({"first": first, "total": total, "cpu": cpu, "text_chars": len(text)})
            same = all(t[0] == texts["xedullm"][0] for t in texts.values())
            for name in contestants:
                # Same text means the same tokens: count them once, the way ours reports usage.
                tokens = texts["xedullm"][1] if same else texts[name][1]
                samples[name][-1].update(tokens=tokens, same_text=same)

    # What a crash costs the next student: the supervisor starts a new worker as soon as it
    # sees the old one die; an answer asked right then waits for Python to start, llama_cpp to
    # import and the model to load.
    engine = ours._get_engine()
    crashed = engine.worker_pid
    os.kill(crashed, signal.SIGSEGV)
    while engine.worker_pid in (None, crashed):
        time.sleep(0.001)
    first_after_crash = run_ours(spec["questions"][0])[0]
    print(json.dumps({"load": {"xedullm": load_ours, "in_process": load_in_process,
                               "llama_cpp": load_raw, "llama_cpp_threads": load_tuned},
                      "samples": samples, "first_after_crash": first_after_crash}))


if __name__ == "__main__":
    main()
