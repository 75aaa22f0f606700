"""Section 2: what each client library costs per request, against the same fake answering
at once (token delay 0), so the client's own work is what remains."""
from __future__ import annotations

import json
from typing import Dict, List, Tuple

from . import report
from .envs import ENVS
from .fixture import KEY, MODEL, QUESTION, REPLY, start_fake
from .procs import BENCH, clean_env, run_json

# (row label, contestant in the worker, venv). The raw libraries are floors, not peers: urllib3
# (sync) and aiohttp (async) are what xedullm's wires use; raw httpx is what it used before.
CONTESTANTS: List[Tuple[str, str, str]] = [
    ("xedullm", "xedullm", "xedullm"),
    ("raw urllib3 / aiohttp (floor: our wires' libraries, bare)", "wire", "xedullm"),
    ("raw httpx", "httpx", "xedullm"),
    ("openai SDK", "openai", "openai"),
    ("LiteLLM `completion()`", "litellm", "litellm"),
    ("XEduLLM 2.0.0", "xedu", "xedu"),
]
NOT_PEERS = ("xedullm", "raw urllib3 / aiohttp (floor: our wires' libraries, bare)", "raw httpx")
CONCURRENCY = 32
WORKER = str(BENCH / "workers" / "client_overhead.py")


def modes(quick: bool) -> List[Tuple[str, bool, int, int]]:
    """(title, stream, concurrency, requests per round)."""
    seq, conc = (30, 64) if quick else (100, 192)
    return [("sequential, non-stream", False, 1, seq), ("sequential, stream", True, 1, seq),
            (f"{CONCURRENCY} concurrent (async), non-stream", False, CONCURRENCY, conc),
            (f"{CONCURRENCY} concurrent (async), stream", True, CONCURRENCY, conc)]


def run(rounds: int, quick: bool, log=print) -> str:
    env = clean_env()
    blocks = []
    with start_fake(0.0, "fake-overhead") as fake:
        for title, stream, concurrency, requests in modes(quick):
            results: Dict[str, Tuple[List[float], List[float]]] = {}
            fake_cpu0 = fake.cpu_seconds()
            for label, contestant, venv in CONTESTANTS:
                if concurrency > 1 and contestant == "xedu":
                    continue   # XEduLLM has no async API
                log(f"  overhead: {title}: {label}")
                spec = dict(contestant=contestant, url=f"{fake.url}/v1", key=KEY, model=MODEL,
                            question=QUESTION, reply=REPLY, stream=stream,
                            concurrency=concurrency, requests=requests, rounds=rounds,
                            warmup=min(requests, 32))
                out = run_json([ENVS[venv].python, WORKER, json.dumps(spec)], env)
                n = out["requests"]
                results[label] = ([n / r["wall"] for r in out["rounds"]],
                                  [r["cpu"] / n * 1e6 for r in out["rounds"]])
            fake_cpu = fake.cpu_seconds() - fake_cpu0
            blocks.append(_table(title, results, rounds, fake_cpu))
    return report.join(blocks)


def _table(title: str, results, rounds: int, fake_cpu: float) -> str:
    rps = {k: report.median(v[0]) for k, v in results.items()}
    cpu = {k: report.median(v[1]) for k, v in results.items()}
    peers = lambda d: {k: v for k, v in d.items() if k not in NOT_PEERS[1:]}  # noqa: E731
    best_rps = report.best_peer(peers(rps), lower_is_better=False)
    best_cpu = report.best_peer(peers(cpu), lower_is_better=True)
    rows = [[label, report.spread(r, 0), report.ratio(rps[label], best_rps),
             report.spread(c, 0), report.ratio(cpu[label], best_cpu)]
            for label, (r, c) in results.items()]
    return (f"**{title}** — {rounds} rounds each, median (min–max); the fake used "
            f"{fake_cpu:.1f} CPU s in another process during this table\n\n"
            + report.table(["client", "requests/s", "÷ best peer (higher is better)",
                            "client CPU µs / request", "÷ best peer (lower is better)"], rows))
