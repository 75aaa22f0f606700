"""Load and soak through the real ``xedullm serve`` process (bench/soak.py does the work).

    python -m pytest tests/test_load.py -q             # CI: one round + a short soak
    XEDULLM_SOAK_MINUTES=10 python -m pytest tests/test_load.py -q -k soak
    python -m tests.test_load --soak-minutes 10        # the same harness without pytest

No clock is asserted: the round is bounded only as a hang detector (bench.soak.HANG_BOUND).
What is asserted: every request answered in full or, where the busy gate is set below the
load, refused with the gate's own 429; the usage ledger equals what the provider reported,
token for token; the teacher's key never appears in anything the server printed; and over
a soak, the server's memory does not grow beyond the documented tolerance.
"""
from __future__ import annotations

import os
import sys

import pytest

from bench import soak

pytestmark = pytest.mark.load


def _assert_sound(report: soak.Report, requests: int) -> None:
    print(report.summary())
    assert report.failures == []
    assert report.completed + report.throttled == requests == report.requests
    assert report.ledger_rows == requests + 1     # a refused request is recorded too; + the warm-up
    assert report.ledger_tokens == report.provider_tokens > 0
    assert soak.KEY not in report.server_output
    assert "Traceback" not in report.server_output


def test_200_streams_and_a_burst_of_1000_all_answered_with_an_exact_ledger():
    report = soak.run(streams=200, burst=1000, max_concurrent=1300)
    _assert_sound(report, 1200)
    assert report.throttled == 0              # the gate is set above the load


def test_a_gate_below_the_load_throttles_cleanly_and_the_ledger_stays_exact():
    report = soak.run(streams=200, burst=1000, max_concurrent=8)
    _assert_sound(report, 1200)
    assert report.throttled > 0               # 8 slots + 256 in line cannot take 1,200 at once
    assert report.completed >= 8 + 256


def test_soak_memory_does_not_grow():
    minutes = float(os.environ.get("XEDULLM_SOAK_MINUTES", "0.25"))
    report = soak.run(streams=100, burst=300, soak_minutes=minutes, max_concurrent=1300)
    _assert_sound(report, report.requests)
    assert len(report.rounds) >= 2 and report.rss_warm_mb is not None
    assert not report.memory_grew(), report.summary()


if __name__ == "__main__":
    sys.exit(soak.main())
