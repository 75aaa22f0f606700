"""Load and soak: a whole school's worth of requests against the real classroom server.

    python -m bench.soak                     # one round: the figures in docs/reliability.md
    python -m bench.soak --soak-minutes 10   # rounds for 10 minutes; checks memory does not grow
    python -m bench.soak --max-concurrent 32 # the default busy gate: some requests are throttled

One round: 200 students stream an answer at once (the fake provider streams ~20 pieces,
20 ms apart) and, while they do, a burst of 1,000 short non-stream requests arrives. The
server is ``xedullm serve`` in its own process (classroom controls on: SQLite ledger in a
temporary folder) in front of the fake DeepSeek in this process; nothing leaves 127.0.0.1.

Reported: completed / failed / throttled (429 from the busy gate), latency percentiles,
the server's CPU time and peak memory, and whether the usage ledger matches what the
provider reported, token for token. tests/test_load.py asserts on the same run.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import httpx

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-soak-teacher-4b7e1d93c0a2SECRET"
PROMPT_BODY = "光合作用把光能转化为化学能，" * 4   # with the fake's echo: about 20 pieces
HANG_BOUND = 600.0    # seconds one round may take before it counts as hung
# Soak: RSS at the end may exceed RSS after warm-up by this much before we call it growth.
# Python keeps freed memory in its arenas and SQLite grows its page cache; a leak of even a
# few KB per request would pass 10,000 requests/round and show far beyond this.
RSS_TOLERANCE_MB = 25.0
RSS_TOLERANCE_RATIO = 0.10


@dataclass
class Round:
    completed: int = 0
    throttled: int = 0
    failures: List[str] = field(default_factory=list)
    stream_first: List[float] = field(default_factory=list)    # time to first text, s
    stream_total: List[float] = field(default_factory=list)
    burst_total: List[float] = field(default_factory=list)
    wall: float = 0.0

    @property
    def failed(self) -> int:
        return len(self.failures)


# -- the server under test ------------------------------------------------------------
class ServeProcess:
    """``xedullm serve`` as a teacher runs it, with its CPU and memory read from /proc."""

    def __init__(self, upstream: str, data_dir: str, max_concurrent: int) -> None:
        home = tempfile.mkdtemp(prefix="xedullm-soak-home-")
        env = dict(os.environ, DEEPSEEK_API_KEY=KEY, HOME=home, PYTHONPATH=str(ROOT),
                   PYTHONUNBUFFERED="1", XDG_CONFIG_HOME=home, XDG_DATA_HOME=home)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xedullm", "serve", "-p", "deepseek", "--base-url", upstream,
             "--host", "127.0.0.1", "--port", "0", "--data-dir", data_dir,
             "--max-concurrent", str(max_concurrent),
             # The whole class comes from 127.0.0.1 here, as one caller: lift the per-address
             # and per-caller caps that keep one real student from holding the server.
             "--max-connections-per-address", "100000", "--max-per-caller", "100000"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        self.banner: List[str] = []
        while not any(line.startswith("用量记录保存在") for line in self.banner):
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("xedullm serve did not start: " + self.proc.stderr.read())
            self.banner.append(line)
        self.url = next(line for line in self.banner
                        if line.startswith("Running on local URL:")).split()[-1]
        self.output = ""

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory_mb(self, field_name: str = "VmRSS") -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(field_name + " not found")

    def stop(self) -> str:
        """Ctrl-C, as the teacher ends the lesson; returns everything it printed."""
        if self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                out, err = self.proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, err = self.proc.communicate()
        else:
            out, err = self.proc.communicate()
        self.output = "".join(self.banner) + out + err
        return self.output


# -- the students -----------------------------------------------------------------------
# Students speak plain HTTP/1.1 over asyncio streams, one connection each: a pooled client
# with 1,200 open connections would spend more time managing its pool than the server does
# answering, and we would be measuring the client.
async def _post(url: str, body: dict, on_line=None):
    """POST ``body`` as JSON; returns (status, raw body). ``on_line(line)`` sees each body
    line as it arrives (streams); the connection closes after the answer."""
    host, port = url.split("//", 1)[1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        data = json.dumps(body, ensure_ascii=False).encode()
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (host.encode(), len(data)) + data)
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        chunked = False
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b""):
                break
            if line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower():
                chunked = True
        raw = bytearray()
        while True:
            if chunked:
                size = int((await reader.readline()).strip() or b"0", 16)
                if size == 0:
                    break
                piece = await reader.readexactly(size)
                await reader.readexactly(2)
            else:
                piece = await reader.read(65536)
                if not piece:
                    break
            if on_line is not None:
                tail = raw.rfind(b"\n") + 1
                for line in (bytes(raw[tail:]) + piece).split(b"\n")[:-1]:
                    on_line(line.decode())
            raw += piece
        return status, bytes(raw)
    finally:
        writer.close()


async def _stream(url: str, i: int, rnd: Round) -> None:
    question = f"学生{i:03d}：" + PROMPT_BODY
    started, first, text, state = time.monotonic(), [], [], {"done": False, "error": None}

    def on_line(line: str) -> None:
        if line == "data: [DONE]":
            state["done"] = True
        elif line.startswith("data: "):
            frame = json.loads(line[6:])
            if "error" in frame:
                state["error"] = frame["error"]
            for choice in frame.get("choices", []):
                piece = choice["delta"].get("content")
                if piece:
                    first.append(time.monotonic())
                    text.append(piece)

    try:
        status, raw = await _post(url, {"messages": [{"role": "user", "content": question}], "stream": True},
                                  on_line)
    except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
        rnd.failures.append(f"stream {i}: {exc!r}")
        return
    if status != 200:
        _refused(rnd, status, raw)
    elif state["error"] or not state["done"] or "".join(text) != "你好！你刚才说：" + question:
        rnd.failures.append(f"stream {i}: {state['error'] or 'incomplete or wrong answer'}")
    else:
        rnd.completed += 1
        rnd.stream_first.append(first[0] - started)
        rnd.stream_total.append(time.monotonic() - started)


async def _short(url: str, i: int, rnd: Round) -> None:
    question = f"短{i}"
    started = time.monotonic()
    try:
        status, raw = await _post(url, {"messages": [{"role": "user", "content": question}]})
    except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
        rnd.failures.append(f"short {i}: {exc!r}")
        return
    if status != 200:
        _refused(rnd, status, raw)
    elif json.loads(raw)["choices"][0]["message"]["content"] != "你好！你刚才说：" + question:
        rnd.failures.append(f"short {i}: wrong answer")
    else:
        rnd.completed += 1
        rnd.burst_total.append(time.monotonic() - started)


def _refused(rnd: Round, status: int, raw: bytes) -> None:
    try:
        code = json.loads(raw)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = None
    if status == 429 and code == "rate_limit_exceeded" and b"server is busy" in raw:  # the busy gate
        rnd.throttled += 1
    else:
        rnd.failures.append(f"HTTP {status}: {raw[:200]!r}")


async def one_round(url: str, streams: int, burst: int) -> Round:
    rnd = Round()
    started = time.monotonic()
    students = [asyncio.ensure_future(_stream(url, i, rnd)) for i in range(streams)]
    await asyncio.sleep(0)  # the streams' requests go out first; the burst lands on top
    shorts = [asyncio.ensure_future(_short(url, i, rnd)) for i in range(burst)]
    await asyncio.wait_for(asyncio.gather(*students, *shorts), HANG_BOUND)
    rnd.wall = time.monotonic() - started
    return rnd


# -- a whole run ------------------------------------------------------------------------
@dataclass
class Report:
    rounds: List[Round]
    requests: int
    cpu_seconds: float
    wall: float
    peak_mb: float
    rss_warm_mb: Optional[float]
    rss_end_mb: float
    ledger_rows: int
    ledger_tokens: int
    provider_tokens: int
    server_output: str = ""

    @property
    def completed(self) -> int:
        return sum(r.completed for r in self.rounds)

    @property
    def throttled(self) -> int:
        return sum(r.throttled for r in self.rounds)

    @property
    def failures(self) -> List[str]:
        return [f for r in self.rounds for f in r.failures]

    def latencies(self, name: str) -> List[float]:
        return sorted(x for r in self.rounds for x in getattr(r, name))

    def summary(self) -> str:
        lines = [f"rounds: {len(self.rounds)}, requests: {self.requests}, "
                 f"completed: {self.completed}, failed: {len(self.failures)}, throttled: {self.throttled}"]
        for name, label in (("stream_first", "stream, first text"), ("stream_total", "stream, whole answer"),
                            ("burst_total", "short non-stream")):
            values = self.latencies(name)
            if values:
                lines.append(f"{label:22s} p50 {pct(values, 50):6.3f} s  p90 {pct(values, 90):6.3f} s  "
                             f"p99 {pct(values, 99):6.3f} s  max {values[-1]:6.3f} s")
        lines.append(f"server CPU: {self.cpu_seconds:.1f} s over {self.wall:.1f} s "
                     f"({100 * self.cpu_seconds / max(self.wall, 1e-9):.0f}% of one core); "
                     f"peak RSS {self.peak_mb:.0f} MB")
        if self.rss_warm_mb is not None:
            lines.append(f"RSS after warm-up {self.rss_warm_mb:.1f} MB, at the end {self.rss_end_mb:.1f} MB")
        lines.append(f"ledger: {self.ledger_rows} rows, {self.ledger_tokens} tokens; "
                     f"provider reported {self.provider_tokens} tokens")
        for failure in self.failures[:10]:
            lines.append("  failure: " + failure)
        return "\n".join(lines)

    def memory_grew(self) -> bool:
        if self.rss_warm_mb is None:
            return False
        allowed = max(RSS_TOLERANCE_MB, self.rss_warm_mb * RSS_TOLERANCE_RATIO)
        return self.rss_end_mb - self.rss_warm_mb > allowed


def pct(sorted_values: List[float], p: float) -> float:
    if len(sorted_values) == 1:
        return sorted_values[0]
    return statistics.quantiles(sorted_values, n=100, method="inclusive")[int(p) - 1]


def run(streams: int = 200, burst: int = 1000, soak_minutes: float = 0.0, token_delay: float = 0.02,
        max_concurrent: int = 1300) -> Report:
    from xedullm.server.store.sqlite import SQLiteStore
    from xedullm.testing import FakeOpenAIServer

    with tempfile.TemporaryDirectory(prefix="xedullm-soak-") as data_dir, \
            FakeOpenAIServer(flavor="deepseek", api_key=KEY, token_delay=token_delay) as fake:
        server = ServeProcess(fake.base_url, data_dir, max_concurrent)
        rounds: List[Round] = []
        rss_warm = None
        try:
            # One question first: the server imports its HTTP stack on first use, and that
            # one-off cost is not what a class waits for.
            httpx.post(server.url + "/v1/chat/completions", timeout=60,
                       json={"messages": [{"role": "user", "content": "warm-up"}]}).raise_for_status()
            cpu0, t0 = server.cpu_seconds(), time.monotonic()
            deadline = t0 + soak_minutes * 60
            while True:
                rounds.append(_round_in_subprocess(server.url, streams, burst))
                if len(rounds) == 1:
                    rss_warm = server.memory_mb()   # the first round warms every cache and pool
                if time.monotonic() >= deadline:
                    break
            wall, cpu = time.monotonic() - t0, server.cpu_seconds() - cpu0
            rss_end, peak = server.memory_mb(), server.memory_mb("VmHWM")
            requests = len(rounds) * (streams + burst)
            # Every request leaves a row, a refused one too (outcome "server_busy"): waiting only for
            # the admitted count returned before the last answers' rows were written.
            store = SQLiteStore(data_dir)
            try:
                rows = _wait_for_rows(store, requests + 1)   # + the warm-up
            finally:
                store.close()
        finally:
            output = server.stop()
        return Report(rounds=rounds, requests=requests, cpu_seconds=cpu, wall=wall, peak_mb=peak,
                      rss_warm_mb=rss_warm if len(rounds) > 1 else None, rss_end_mb=rss_end,
                      ledger_rows=len(rows),
                      ledger_tokens=sum(r["total_tokens"] or 0 for r in rows if r["outcome"] == "ok"),
                      provider_tokens=sum(u["total_tokens"] for u in fake.usage_log),
                      server_output=output)


def _round_in_subprocess(url: str, streams: int, burst: int) -> Round:
    """The students run in a process of their own, so neither the server nor the fake
    provider shares an interpreter (and its GIL) with 1,200 client connections."""
    done = subprocess.run([sys.executable, "-m", "bench.soak", "--students", url, "--streams", str(streams),
                           "--burst", str(burst)], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=HANG_BOUND + 60)
    if done.returncode != 0:
        raise RuntimeError("the students' process failed: " + done.stderr[-2000:])
    return Round(**json.loads(done.stdout))


def _wait_for_rows(store, expected: int, bound: float = 60.0) -> List[Dict]:
    """The ledger is written just after each answer ends: wait (bounded) for the last rows."""
    deadline = time.monotonic() + bound
    while True:
        rows = list(store.rows())
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--soak-minutes", type=float, default=0.0)
    parser.add_argument("--token-delay", type=float, default=0.02)
    parser.add_argument("--max-concurrent", type=int, default=1300)
    parser.add_argument("--students", metavar="URL", help=argparse.SUPPRESS)  # one round, JSON out
    args = parser.parse_args(argv)
    if args.students:
        rnd = asyncio.run(one_round(args.students, args.streams, args.burst))
        print(json.dumps(rnd.__dict__))
        return 0
    report = run(args.streams, args.burst, args.soak_minutes, args.token_delay, args.max_concurrent)
    print(report.summary())
    ok = not report.failures and report.ledger_tokens == report.provider_tokens and not report.memory_grew()
    if report.memory_grew():
        print("memory grew beyond the tolerance")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
