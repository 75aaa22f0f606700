"""The benchmark's own instruments: the load generator must count every wrong answer as an
error (or its throughput figures would flatter a broken server), and the report arithmetic
and RESULTS.md merging must be right. Speed itself is never asserted here."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import report
from bench.run import _merge
from xedullm.testing import Fault, FakeOpenAIServer

LOADGEN = Path(__file__).resolve().parent.parent / "bench" / "workers" / "loadgen.py"
KEY = "sk-test-bench-harness-0001"
REPLY = "你好，这是固定的回答。A fixed answer."


def loadgen(fake, *, stream: bool, count: int, concurrency: int = 1, reply: str = REPLY,
            key: str = KEY) -> dict:
    spec = dict(port=fake.port, path="/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                model="gpt-4o-mini", question="hi", reply=reply, stream=stream,
                concurrency=concurrency, count=count)
    done = subprocess.run([sys.executable, str(LOADGEN), json.dumps(spec)], capture_output=True,
                          text=True, timeout=60, check=True)
    return json.loads(done.stdout)


@pytest.fixture
def fake():
    with FakeOpenAIServer(flavor="openai", api_key=KEY, reply=REPLY) as server:
        yield server


@pytest.mark.parametrize("stream", [False, True])
def test_loadgen_counts_right_answers_over_keepalive(fake, stream):
    out = loadgen(fake, stream=stream, count=3, concurrency=2)
    assert out["requests"] == 6 and out["ok"] == 6 and out["errors"] == {}
    assert len(out["first"]) == 6 and all(f > 0 for f in out["first"])
    assert len(fake.chat_requests) == 6


@pytest.mark.parametrize("stream", [False, True])
def test_loadgen_reports_wrong_text_as_error(fake, stream):
    out = loadgen(fake, stream=stream, count=2, reply="something else")
    assert out["ok"] == 0 and out["errors"] == {"wrong answer text": 2}


def test_loadgen_reports_http_errors_and_goes_on(fake):
    fake.faults.append(Fault.status(503))
    out = loadgen(fake, stream=True, count=3)
    assert out["errors"] == {"HTTP 503": 1} and out["ok"] == 2


def test_loadgen_reports_a_stream_cut_short(fake):
    fake.faults.append(Fault.disconnect_after(2))
    out = loadgen(fake, stream=True, count=2)
    assert out["ok"] == 1 and sum(out["errors"].values()) == 1


def test_loadgen_reports_a_stream_without_done(fake):
    fake.faults.append(Fault.no_done())
    out = loadgen(fake, stream=True, count=1)
    assert out["errors"] == {"stream ended without [DONE]": 1}


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert report.percentile(values, 50) == 50
    assert report.percentile(values, 99) == 99
    assert report.percentile(values, 100) == 100
    assert report.percentile([7.0], 99) == 7.0


def test_spread_ratio_and_best_peer():
    assert report.spread([3.0, 1.0, 2.0]) == "2.0 (1.0–3.0)"
    assert report.ratio(50, 200) == "0.25×"
    assert report.ratio(None, 2) == "–"
    rows = {"xedullm": 1.0, "openai": 5.0, "litellm": 9.0}
    assert report.best_peer(rows, lower_is_better=True) == 5.0
    assert report.best_peer(rows, lower_is_better=False) == 9.0


def test_merge_replaces_only_the_sections_run(tmp_path):
    results = tmp_path / "RESULTS.md"
    _merge(results, "<!-- machine -->\nA\n<!-- /machine -->", {"startup": "one", "server": "two"})
    _merge(results, "<!-- machine -->\nB\n<!-- /machine -->", {"server": "three"})
    text = results.read_text()
    assert "A" not in text.split("<!-- /machine -->")[0] and "\nB\n" in text
    assert "<!-- startup -->\none\n<!-- /startup -->" in text
    assert "three" in text and "two" not in text
    assert text.index("<!-- startup -->") < text.index("<!-- server -->")
