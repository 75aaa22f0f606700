"""Section 4: the local model. Installing the `local` extra from an empty cache; tokens/s and
first-token latency for 1, 8 and 30 students at once on the engine we ship (xllamacpp) and
on the engine it replaced (llama-cpp-python contexts, still the fallback), side by side in one
run; and what a 30-student class waits for the first character through ``xedullm serve``."""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
import time
import venv

from . import report
from .envs import ENVS, REPO
from .procs import BENCH, Server, clean_env, free_port, run_json

WORKER = str(BENCH / "workers" / "local_speed.py")
QUESTIONS = [
    "Explain photosynthesis to a ten-year-old.",
    "Write a short poem about the sea.",
    "What are three tips for learning to program?",
    "Describe how a bicycle works.",
    "Why is the sky blue?",
]
RUNTIMES = {"xllamacpp": "xllamacpp (shipped: 1-thread lanes of 8 slots, one per core, opened as needed)",
            "llama_cpp": "llama-cpp-python contexts (the engine before; the fallback now)"}
MODELS_DIR = REPO / ".models"


def _env(**extra: str):
    return clean_env(XEDULLM_MODELS_DIR=os.environ.get("XEDULLM_MODELS_DIR", str(MODELS_DIR)), **extra)


def install_seconds() -> float:
    """`pip install ".[local]"` into a fresh venv with pip's cache off (the wheels come down)."""
    with tempfile.TemporaryDirectory() as folder:
        venv.EnvBuilder(with_pip=True).create(folder)
        start = time.perf_counter()
        subprocess.run([f"{folder}/bin/python", "-m", "pip", "install", "-q", "--no-cache-dir",
                        "--disable-pip-version-check", f"{REPO}[local]"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start


async def _class(url: str, students: int, max_tokens: int):
    import httpx

    async def student(http, i):
        body = {"model": "local", "stream": True, "max_tokens": max_tokens, "temperature": 0,
                "messages": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}]}
        # Each student its own browser id, issued as the page gets one (one may run 4 answers at once).
        issued = (await http.post(f"{url}/api/browser-id")).json()["browser_id"]
        headers = {"X-Xedullm-Session": issued} if issued else {}
        t0 = time.perf_counter()
        async with http.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as answer:
            async for line in answer.aiter_lines():
                if line.startswith("data: {") and '"content":"' in line.replace(" ", ""):
                    if '"content":""' not in line.replace(" ", ""):
                        return time.perf_counter() - t0
        return None

    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=students)) as http:
        return await asyncio.gather(*(student(http, i) for i in range(students)))


def classroom(students: int, max_tokens: int):
    port = free_port()
    cmd = [ENVS["xedullm"].python, "-m", "xedullm", "serve", "-p", "local", "--host", "127.0.0.1",
           "--port", str(port), "--no-browser", "--browser-ids-per-address", "100"]   # 30 on one machine
    home = tempfile.mkdtemp(prefix="bench-home-")
    server = Server("local-serve", cmd, port, "/", _env(XEDULLM_HOME=home))
    try:
        asyncio.run(_class(server.url, 1, 1))                    # loads the model
        firsts = asyncio.run(_class(server.url, students, max_tokens))
    finally:
        server.stop()
    return [f * 1000 for f in firsts if f is not None]


def run(rounds: int, quick: bool, log=print) -> str:
    levels = [1, 8] if quick else [1, 8, 30]
    spec = dict(questions=QUESTIONS, concurrency=levels, max_tokens=32 if quick else 96, seed=7)
    results = {}
    for _ in range(rounds):
        for runtime in RUNTIMES:        # taking turns, so a burst of load elsewhere hits both
            log(f"  local model: {runtime}, {levels} students at once")
            out = run_json([ENVS["xedullm"].python, WORKER, json.dumps(spec)],
                           _env(XEDULLM_LOCAL_RUNTIME=runtime), timeout=3600)
            results.setdefault(runtime, []).append(out)
    rows = []
    rate = {}
    for runtime, outs in results.items():
        for i, n in enumerate(levels):
            bursts = [o["levels"][i] for o in outs]
            rates = [b["tokens"] / b["wall"] for b in bursts]
            firsts = sorted(f * 1000 for b in bursts for f in b["firsts"])
            rate[(runtime, n)] = report.median(rates)
            rows.append([RUNTIMES[runtime], f"{outs[0]['version']}", str(n), report.spread(rates, 1),
                         f"{report.percentile(firsts, 50):.0f}", f"{report.percentile(firsts, 95):.0f}",
                         f"{outs[0]['slots']}"])
    ratios = {n: rate[("xllamacpp", n)] / rate[("llama_cpp", n)] for n in levels}
    log("  install: fresh venv, pip cache off")
    install = install_seconds()
    log("  classroom: 30 students through xedullm serve -p local")
    class_firsts = sorted(classroom(30 if not quick else 8, spec["max_tokens"]))
    eight = ratios.get(8)
    return (f"**Local model** (SmolLM2-135M-Instruct Q4_1, {spec['max_tokens']} tokens max, temperature 0) — "
            f"{rounds} round(s) per engine, engines taking turns in the same run; aggregate tokens/s over "
            f"the whole burst, median (min–max) across rounds; first-token percentiles over every student.\n\n"
            f"`pip install \".[local]\"` into a fresh venv with pip's cache off: **{install:.1f} s**, no compiler. "
            f"8 students at once: xllamacpp makes **{eight:.2f}×** the tokens/s of the engine before "
            f"({'meets' if eight and eight >= 1 else 'MISSES'} the ≥ 1× bar). "
            f"A class of {len(class_firsts)} through `xedullm serve -p local` waited "
            f"p50 **{report.percentile(class_firsts, 50):.0f} ms** / p95 **{report.percentile(class_firsts, 95):.0f} ms** "
            f"for the first character.\n\n"
            + report.table(["engine", "version", "students at once", "tokens/s (all students)",
                            "first token p50 ms", "first token p95 ms", "slots"], rows))
