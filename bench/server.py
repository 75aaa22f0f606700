"""Section 3: the classroom server. Students' requests go to the fake provider directly, through
the floor (a bare Starlette pass-through with an aiohttp or an httpx client: what forwarding
alone costs), through ``xedullm serve``, or through LiteLLM's proxy; a separate load-generator
process measures what each server adds and how many streams it carries.

Latency is measured against a fake that answers at once (what the server adds is then not
hidden under the provider's pace); load against a fake that streams at a steady pace.
Each server is started fresh for each of the two phases.
"""
from __future__ import annotations

import tempfile

import json
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from . import report
from .envs import ENVS
from .fixture import CHUNKS, KEY, MODEL, QUESTION, REPLY, TOKEN_DELAY, start_fake
from .procs import BENCH, WORK, Server, clean_env, free_port, run_json

MASTER_KEY = "sk-bench-master-8d2e61b0"
LOADGEN = str(BENCH / "workers" / "loadgen.py")
LEVELS = (1, 50, 200)
TARGETS = ("direct", "floor-aiohttp", "floor-httpx", "xedullm", "litellm")
LABELS = {"direct": "direct to the fake (no server)",
          "floor-aiohttp": "floor: bare Starlette + aiohttp pass-through",
          "floor-httpx": "floor: bare Starlette + httpx pass-through",
          "xedullm": "xedullm serve", "litellm": "LiteLLM proxy"}
FLOOR = "floor-aiohttp"
FLOOR_PROXY = str(BENCH / "workers" / "floor_proxy.py")
# The server's upstream gate is set above the highest load level, so the load test measures
# the server rather than its queue (the default, 64, would hold 136 of 200 students waiting).
GATE = 256


def _xedullm_serve(upstream: Server, name: str) -> Server:
    port = free_port()
    cmd = [str(ENVS["xedullm"].bin / "xedullm"), "serve", "--base-url", f"{upstream.url}/v1",
           "-m", MODEL, "--host", "127.0.0.1", "--port", str(port),
           "--max-concurrent", str(GATE),
           # The whole class comes from 127.0.0.1 here, as one caller; in a classroom each
           # student has an address of their own, which these per-address limits are for.
           "--max-connections-per-address", "100000", "--max-per-caller", "100000",
           # A fresh usage ledger per server: measured as teachers run it, with SQLite on.
           "--data-dir", tempfile.mkdtemp(prefix=f"{name}-", dir=WORK)]
    return Server(name, cmd, port, "/v1/models", clean_env(OPENAI_API_KEY=KEY))


def _litellm_proxy(upstream: Server, name: str) -> Server:
    WORK.mkdir(parents=True, exist_ok=True)
    config = WORK / f"{name}.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: {upstream.url}/v1\n"
        f"      api_key: {KEY}\n"
        "general_settings:\n"
        f"  master_key: {MASTER_KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n")
    port = free_port()
    cmd = [str(ENVS["litellm"].bin / "litellm"), "--config", str(config), "--host", "127.0.0.1",
           "--port", str(port)]
    return Server(name, cmd, port, "/v1/models", clean_env(),
                  headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=180)


def _floor(kind: str) -> Callable[[Server, str], Server]:
    def start(upstream: Server, name: str) -> Server:
        port = free_port()
        cmd = [ENVS["xedullm"].python, FLOOR_PROXY, kind, str(port), f"{upstream.url}/v1", KEY]
        return Server(name, cmd, port, "/v1/models", clean_env())
    return start


STARTERS: Dict[str, Callable[[Server, str], Server]] = {
    "floor-aiohttp": _floor("aiohttp"), "floor-httpx": _floor("httpx"),
    "xedullm": _xedullm_serve, "litellm": _litellm_proxy}


def _spec(target: str, port: int, stream: bool, concurrency: int, **amount) -> dict:
    headers = {"direct": {"Authorization": f"Bearer {KEY}"},
               "litellm": {"Authorization": f"Bearer {MASTER_KEY}"}}.get(target, {})
    return dict(port=port, path="/v1/chat/completions", headers=headers, model=MODEL,
                question=QUESTION, reply=REPLY, stream=stream, concurrency=concurrency, **amount)


def _loadgen(spec: dict) -> dict:
    return run_json([ENVS["xedullm"].python, LOADGEN, json.dumps(spec)], clean_env())


@dataclass
class Numbers:
    start_s: Optional[float] = None
    idle_mib: Optional[float] = None
    latency: Dict[str, List[float]] = field(default_factory=dict)   # p50/p99 per round, ms
    first: Dict[str, List[float]] = field(default_factory=dict)
    load: Dict[int, List[dict]] = field(default_factory=dict)   # per level, one per round
    cpu_s: Optional[float] = None
    peak_mib: Optional[float] = None
    fake_cpu_s: Optional[float] = None


def _start_servers(fake: Server, phase: str, numbers: Dict[str, Numbers]) -> Dict[str, Server]:
    servers: Dict[str, Server] = {}
    try:
        for target in TARGETS:
            if target != "direct":
                servers[target] = STARTERS[target](fake, f"{target}-{phase}")
                numbers[target].start_s = numbers[target].start_s or servers[target].ready_seconds
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return servers


def _rotated(i: int) -> List[str]:
    """Round i's order of the targets: each takes each position in turn, so a slow moment of
    the machine does not always fall on the same one."""
    k = i % len(TARGETS)
    return list(TARGETS[k:] + TARGETS[:k])


def _latency_phase(numbers: Dict[str, Numbers], rounds: int, count: int, log) -> None:
    """All targets up at once behind one fake; every round measures each of them in turn, so
    the rounds pair up in time (the machine's speed drifts over minutes)."""
    with start_fake(0.0, "fake-latency") as fake:
        servers = _start_servers(fake, "latency", numbers)
        try:
            time.sleep(1.0)   # let start-up work (imports, caches, threads) settle
            for target, server in servers.items():
                numbers[target].idle_mib = server.memory_mib("VmRSS")
            for i in range(rounds):
                for target in _rotated(i):
                    log(f"  server latency: {LABELS[target]} round {i + 1}/{rounds}")
                    port = servers[target].port if target in servers else fake.port
                    _loadgen(_spec(target, port, False, 1, count=min(count, 20)))   # warm-up
                    for stream, into in ((False, numbers[target].latency), (True, numbers[target].first)):
                        out = _loadgen(_spec(target, port, stream, 1, count=count))
                        if out["errors"]:
                            raise RuntimeError(f"{target}: errors in the latency phase: {out['errors']}")
                        into.setdefault("p50", []).append(report.percentile(out["first"], 50) * 1000)
                        into.setdefault("p99", []).append(report.percentile(out["first"], 99) * 1000)
        finally:
            for server in servers.values():
                server.stop()


def _load_phase(numbers: Dict[str, Numbers], rounds: int, duration: float, log) -> None:
    """As the latency phase, taking turns; each server's CPU and the fake's are counted over
    that server's own turns."""
    with start_fake(TOKEN_DELAY, "fake-load") as fake:
        servers = _start_servers(fake, "load", numbers)
        try:
            for target in TARGETS:
                numbers[target].cpu_s, numbers[target].fake_cpu_s = 0.0, 0.0
            for i in range(rounds):
                for level in LEVELS:
                    for target in _rotated(i):
                        log(f"  server load: {LABELS[target]} at {level} concurrent streams, "
                            f"round {i + 1}/{rounds}")
                        server = servers.get(target)
                        port = server.port if server else fake.port
                        cpu0, fake0 = (server.cpu_seconds() if server else 0.0), fake.cpu_seconds()
                        out = _loadgen(_spec(target, port, True, level, duration=duration))
                        numbers[target].load.setdefault(level, []).append(out)
                        numbers[target].cpu_s += (server.cpu_seconds() - cpu0) if server else 0.0
                        numbers[target].fake_cpu_s += fake.cpu_seconds() - fake0
            for target, server in servers.items():
                numbers[target].peak_mib = server.memory_mib("VmHWM")
        finally:
            for server in servers.values():
                server.stop()


def run(rounds: int, count: int, load_rounds: int, duration: float, log=print) -> str:
    results: Dict[str, Numbers] = {t: Numbers() for t in TARGETS}
    _latency_phase(results, rounds, count, log)
    _load_phase(results, load_rounds, duration, log)
    return _tables(results, rounds, count, load_rounds, duration)


def _added(results: Dict[str, Numbers], target: str, attr: str, key: str) -> List[float]:
    """Per-round differences from going direct (rounds are paired in time order)."""
    mine, base = getattr(results[target], attr)[key], getattr(results["direct"], attr)[key]
    return [m - b for m, b in zip(mine, base)]


def _tables(results: Dict[str, Numbers], rounds: int, count: int, load_rounds: int,
            duration: float) -> str:
    servers = [t for t in TARGETS if t != "direct"]
    lat_rows, meta = [], {}
    for t in TARGETS:
        n = results[t]
        row = [LABELS[t]]
        for attr in ("latency", "first"):
            for key in ("p50", "p99"):
                row.append(report.spread(getattr(n, attr)[key], 2))
        if t != "direct":
            for attr in ("latency", "first"):
                meta[(t, attr)] = report.median(_added(results, t, attr, "p50"))
        lat_rows.append(row)
    add_rows = []
    for t in servers:
        add_rows.append([LABELS[t],
                         report.spread(_added(results, t, "latency", "p50"), 2),
                         report.ratio(meta[(t, "latency")], meta[(FLOOR, "latency")]),
                         report.ratio(meta[(t, "latency")], meta[("litellm", "latency")]),
                         report.spread(_added(results, t, "latency", "p99"), 2),
                         report.spread(_added(results, t, "first", "p50"), 2),
                         report.ratio(meta[(t, "first")], meta[(FLOOR, "first")]),
                         report.ratio(meta[(t, "first")], meta[("litellm", "first")]),
                         report.spread(_added(results, t, "first", "p99"), 2)])
    blocks = [
        f"**Latency, one student at a time** — fake answers at once; {rounds} rounds of "
        f"{count} sequential requests per target, the targets taking turns within each round; "
        f"per-round p50/p99, median (min–max), ms\n\n"
        + report.table(["target", "non-stream p50", "non-stream p99", "first chunk p50",
                        "first chunk p99"], lat_rows),
        "**Added by the server** (target − direct, paired by round), ms; ratios ÷ the floor "
        "(the bare aiohttp pass-through) and ÷ LiteLLM proxy, lower is better\n\n"
        + report.table(["server", "non-stream p50", "÷ floor", "÷ LiteLLM", "non-stream p99",
                        "first chunk p50", "÷ floor", "÷ LiteLLM", "first chunk p99"], add_rows),
    ]
    load_rows = []
    for level in LEVELS:
        rates = {t: [o["ok"] / o["wall"] for o in results[t].load[level]] for t in TARGETS}
        lite, direct = report.median(rates["litellm"]), report.median(rates["direct"])
        for t in TARGETS:
            outs = results[t].load[level]
            errors: Dict[str, int] = {}
            for o in outs:
                for kind, n in o["errors"].items():
                    errors[kind] = errors.get(kind, 0) + n
            kinds = ", ".join(f"{k}: {v}" for k, v in errors.items())
            firsts = [f for o in outs for f in o["first"]] or [float("nan")]
            load_rows.append([
                level, LABELS[t], report.spread(rates[t], 1),
                f"{report.median(rates[t]) / direct * 100:.0f} %" if t != "direct" else "",
                report.ratio(report.median(rates[t]), lite) if t != "direct" else "",
                f"{report.median(rates[t]) * CHUNKS:.0f}",
                f"{sum(errors.values())}" + (f" ({kinds})" if kinds else ""),
                f"{report.percentile(firsts, 50) * 1000:.0f} / {report.percentile(firsts, 99) * 1000:.0f}",
                f"{report.median([o['cpu'] / o['wall'] for o in outs]) * 100:.0f} %"])
    blocks.append(
        f"**Concurrent streaming students** — fake streams {len(REPLY)} characters in {CHUNKS} chunks, "
        f"{TOKEN_DELAY * 1000:.0f} ms apart (≈{CHUNKS * TOKEN_DELAY:.1f} s per answer); each level "
        f"runs {duration:.0f} s, {load_rounds} rounds, the targets taking turns; median (min–max); every "
        f"answer is checked; "
        f"share of the fake's direct answers/s and ratio ÷ LiteLLM proxy, higher is better; load "
        f"generator CPU as a share of one core\n\n"
        + report.table(["students", "target", "answers/s", "of direct", "÷ LiteLLM", "chunks/s", "errors",
                        "first chunk p50 / p99 ms", "load generator CPU"], load_rows))
    res_rows = []
    for t in servers:
        n = results[t]
        lite = results["litellm"]
        res_rows.append([LABELS[t], f"{n.start_s:.2f}", report.ratio(n.start_s, lite.start_s),
                         f"{n.idle_mib:.0f}", report.ratio(n.idle_mib, lite.idle_mib),
                         f"{n.cpu_s:.1f}", report.ratio(n.cpu_s, lite.cpu_s),
                         f"{n.peak_mib:.0f}", report.ratio(n.peak_mib, lite.peak_mib),
                         f"{n.fake_cpu_s:.1f}"])
    res_rows.append([LABELS["direct"], "", "", "", "", "", "", "", "",
                     f"{results['direct'].fake_cpu_s:.1f}"])
    blocks.append(
        "**Server cost** — start = spawn to first answered `GET /v1/models`; idle RSS 1 s after "
        "start; CPU over the server's own turns of the load test above, peak RSS (VmHWM) over all "
        "of it; the fake's CPU over the same turns; ratio ÷ LiteLLM proxy, lower is better\n\n"
        + report.table(["server", "start s", "÷", "idle RSS MiB", "÷", "CPU s under load", "÷",
                        "peak RSS MiB", "÷", "fake's CPU s"], res_rows))
    blocks.append(_against_the_floor(results, meta))
    return report.join(blocks)


def _against_the_floor(results: Dict[str, Numbers], meta) -> str:
    """One line per bar the server is held to (issue 18), measured in this run."""
    top = max(LEVELS)
    rate = {t: report.median([o["ok"] / o["wall"] for o in results[t].load[top]]) for t in TARGETS}
    errors = sum(sum(o["errors"].values()) for o in results["xedullm"].load[top])
    bars = [
        ("added latency, non-stream p50, ÷ the floor", meta[("xedullm", "latency")] / meta[(FLOOR, "latency")],
         "≤ 1.50×", lambda v: v <= 1.5, "{:.2f}×"),
        ("added latency, first chunk p50, ÷ the floor", meta[("xedullm", "first")] / meta[(FLOOR, "first")],
         "≤ 1.50×", lambda v: v <= 1.5, "{:.2f}×"),
        (f"{top} concurrent streams, answers/s ÷ direct to the fake", rate["xedullm"] / rate["direct"],
         "≥ 90 %", lambda v: v >= 0.9, "{:.0%}"),
        (f"{top} concurrent streams, errors", errors, "0", lambda v: v == 0, "{}"),
    ]
    rows = [[what, fmt.format(value), bar, "met" if ok(value) else "**not met**"]
            for what, value, bar, ok, fmt in bars]
    return ("**xedullm serve against the floor** (the bars of issue 18, this run)\n\n"
            + report.table(["measure", "value", "bar", ""], rows))
