"""The Store contract (server/store/contract.py), one suite run against every store: SQLite in
a temporary folder and PostgreSQL in a throwaway cluster (scripts/postgres-for-tests.sh), each
test on an empty schema. "Two servers" are two store objects on the same data.
"""
from __future__ import annotations

import dataclasses

import threading
import time
import uuid

import pytest

from xedullm.server.store import open_store
from xedullm.server.store.contract import Claim, LedgerRow, LoginFailures, TokenLimits

DAY = "2026-03-05"
NEXT_DAY = "2026-03-06"
NOW = 1_772_700_000.0   # some moment on DAY; the stores only compare times, never read a clock


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}"
    return request.getfixturevalue("postgres").new_schema_url()


@pytest.fixture
def stores(store_url):
    """Factory: ``stores()`` opens one more store on the same data (another 'server')."""
    opened = []

    def another():
        opened.append(open_store(store_url))
        return opened[-1]

    yield another
    for s in opened:
        s.close()


@pytest.fixture
def store(stores):
    return stores()


def claim(who="小明", estimate=100, now=NOW, day=DAY, class_budget=None, who_budget=None, rpm=None,
          concurrent=None, hold_for=900.0, id=None):
    return Claim(id=id or uuid.uuid4().hex, who=who, now=now, day=day, estimate=estimate,
                 class_budget=class_budget, who_budget=who_budget, rpm=rpm, concurrent=concurrent,
                 hold_for=hold_for)


def row(who="小明", charged=10, started=NOW, day=DAY, outcome="ok", admitted=True, conversation=None, name=None,
        flagged=False, provider=None, fallback_reason=None):
    return LedgerRow(started=started, day=day, latency=0.5, who=who, model="deepseek-chat", stream=True,
                     status=200 if outcome == "ok" else 502, outcome=outcome, admitted=admitted,
                     prompt_tokens=charged // 2 if outcome == "ok" else None,
                     completion_tokens=charged - charged // 2 if outcome == "ok" else None,
                     total_tokens=charged if outcome == "ok" else None, charged=charged,
                     conversation=conversation, name=name, flagged=flagged, provider=provider,
                     fallback_reason=fallback_reason)


# -- claim and record ------------------------------------------------------------------------------
def test_a_claim_holds_its_estimate_clipped_to_what_is_left(store):
    first = store.claim(claim(estimate=700, class_budget=1000))
    assert first.granted and first.held == 700
    second = store.claim(claim(who="小红", estimate=700, class_budget=1000))
    assert second.granted and second.held == 300
    third = store.claim(claim(who="小刚", class_budget=1000))
    assert (third.granted, third.refusal, third.retry_after) == (False, "class_held", 5)


def test_record_releases_the_hold_and_counts_the_charge(store):
    c = claim(estimate=600, class_budget=1000)
    assert store.claim(c).granted
    store.record(row(charged=250), c.id)
    assert store.used(DAY) == 250 and store.used(DAY, "小明") == 250 and store.used(DAY, "小红") == 0
    # the hold is gone: 750 is left for the next one
    assert store.claim(claim(estimate=5000, class_budget=1000)).held == 750


def test_rows_written_together_are_all_or_none(store):
    # The server writes the rows of answers that ended together in one go (record_many), and
    # falls back to one at a time when that fails, so a partial batch must never be left.
    c = claim(estimate=600, class_budget=1000)
    assert store.claim(c).granted
    bad = dataclasses.replace(row(who="小红", charged=7), started=None)   # NOT NULL: the store refuses it
    with pytest.raises(Exception):
        store.record_many([(row(charged=250), c.id), (bad, None)])
    assert store.used(DAY) == 0 and list(store.rows()) == []
    assert store.claim(claim(estimate=5000, class_budget=1000)).held == 400   # the hold is still there
    store.record_many([(row(charged=250), c.id), (row(who="小红", charged=7), None)])
    assert store.used(DAY) == 257 and store.used(DAY, "小红") == 7 and len(list(store.rows())) == 2


def test_a_batch_of_rows_counts_as_the_same_rows_one_by_one(store):
    # record_many sums a student's rows into one daily update: requests, tokens, errors and
    # the last name given must come out as if each row had been written on its own.
    holds = [claim(who="小明"), claim(who="小红")]
    for c in holds:
        assert store.claim(c).granted
    store.record_many([(row(who="小明", charged=5, name="明"), holds[0].id),
                       (row(who="小红", charged=7), holds[1].id),
                       (row(who="小明", charged=3, outcome="upstream_error"), None),
                       (row(who="小明", charged=2, name="小明同学"), None),
                       (row(who="小红", charged=1, day="2026-03-03"), None)])
    totals = {s.who: s for s in store.day_totals(DAY).students}
    assert (totals["小明"].requests, totals["小明"].tokens, totals["小明"].errors, totals["小明"].name) == (
        3, 10, 1, "小明同学")
    assert (totals["小红"].requests, totals["小红"].tokens, totals["小红"].errors) == (1, 7, 0)
    assert store.used(DAY) == 17 and store.used("2026-03-03", "小红") == 1 and len(list(store.rows())) == 5
    store.record_many([(row(who="小明", charged=1), None), (row(who="小明", charged=1), None)])
    again = {s.who: s for s in store.day_totals(DAY).students}["小明"]
    assert (again.requests, again.tokens, again.name) == (5, 12, "小明同学")   # no name given: the old one stays
    assert store.claim(claim(estimate=5000, class_budget=17 + 2 + 100)).held == 100   # both holds were given back


def test_a_used_up_budget_refuses_without_retry(store):
    store.record(row(charged=1000))
    refused = store.claim(claim(class_budget=1000))
    assert (refused.granted, refused.refusal, refused.retry_after) == (False, "class_budget", None)
    store.record(row(who="小红", charged=50))
    assert store.claim(claim(who="小红", who_budget=50, class_budget=None)).refusal == "who_budget"


def test_per_student_budget_and_holds(store):
    assert store.claim(claim(estimate=80, who_budget=100)).held == 80
    assert store.claim(claim(estimate=80, who_budget=100)).held == 20
    assert store.claim(claim(who_budget=100)).refusal == "who_held"
    assert store.claim(claim(who="小红", who_budget=100)).granted   # others are counted apart


def test_requests_per_minute_counts_running_and_recorded_requests(store):
    store.record(row(started=NOW - 30))
    assert store.claim(claim(now=NOW - 10, rpm=3)).granted
    assert store.claim(claim(now=NOW, rpm=3)).granted
    refused = store.claim(claim(now=NOW, rpm=3))
    assert refused.refusal == "rpm" and refused.retry_after == pytest.approx(30)
    store.record(row(who="小明", started=NOW - 61))       # older than a minute: not counted
    assert store.claim(claim(who="小红", now=NOW, rpm=1)).granted


def test_concurrent_counts_live_holds_only(store):
    first = claim(concurrent=2)
    assert store.claim(first).granted and store.claim(claim(concurrent=2)).granted
    assert store.claim(claim(concurrent=2)).refusal == "concurrent"
    store.record(row(), first.id)
    assert store.claim(claim(concurrent=2)).granted


def test_holds_lapse_unless_renewed(store):
    lapsing, renewed = claim(estimate=500, hold_for=30), claim(estimate=400, hold_for=30)
    assert store.claim(lapsing).granted and store.claim(renewed).granted
    assert store.renew([renewed.id, "no-such-claim"], NOW + 60) == 1
    assert store.renew([], NOW + 60) == 0
    # 40 s later the first has lapsed, the renewed one still holds
    later = store.claim(claim(now=NOW + 40, estimate=5000, class_budget=1000))
    assert later.granted and later.held == 600
    # renewing never shortens a hold
    assert store.renew([renewed.id], NOW + 1) == 1
    assert store.claim(claim(now=NOW + 50, estimate=5000, class_budget=1000)).refusal == "class_held"


def test_day_rollover_starts_a_fresh_budget(store):
    store.record(row(charged=1000, day=DAY))
    assert store.claim(claim(day=DAY, class_budget=1000)).refusal == "class_budget"
    tomorrow = store.claim(claim(day=NEXT_DAY, now=NOW + 86400, estimate=100, class_budget=1000))
    assert tomorrow.granted and tomorrow.held == 100
    assert store.used(NEXT_DAY) == 0 and store.used(DAY) == 1000
    # an answer started before midnight and recorded after counts on the day it started
    store.record(row(charged=7, day=DAY, started=NOW + 86000))
    assert store.used(DAY) == 1007 and store.day_totals(NEXT_DAY).requests == 0


# -- reports ---------------------------------------------------------------------------------------
def test_day_totals_series_recent_and_rows(store):
    store.record(row(who="小明", charged=30, started=NOW))
    store.record(row(who="小红", charged=50, started=NOW + 5, conversation='{"answer": "好"}'))
    store.record(row(who="小明", charged=0, started=NOW + 70, outcome="upstream_error"))
    store.record(row(who=None, charged=0, started=NOW + 71, outcome="rate_limit_exceeded", admitted=False))
    totals = store.day_totals(DAY)
    assert (totals.requests, totals.tokens, totals.errors) == (4, 80, 2)
    assert [(s.who, s.requests, s.tokens, s.errors) for s in totals.students] == [
        ("小红", 1, 50, 0), ("小明", 2, 30, 1), ("", 1, 0, 1)]
    assert store.series(NOW, 60) == [(NOW, 80, 2), (NOW + 60, 0, 2)]
    recent = store.recent(2)
    assert [r["outcome"] for r in recent] == ["rate_limit_exceeded", "upstream_error"]
    assert recent[0]["admitted"] is False and recent[0]["stream"] is True and recent[0]["who"] is None
    assert [r["who"] for r in store.recent(10, errors_only=True)] == [None, "小明"]
    rows = list(store.rows())
    assert [r["charged"] for r in rows] == [30, 50, 0, 0]
    assert rows[1]["conversation"] == '{"answer": "好"}' and rows[0]["prompt_tokens"] == 15
    assert set(rows[0]) == {"id", "started", "day", "latency", "who", "model", "stream", "status", "outcome",
                            "admitted", "prompt_tokens", "completion_tokens", "total_tokens", "charged",
                            "conversation", "name", "flagged", "provider", "fallback_reason"}
    assert rows[0]["id"] < rows[1]["id"] and rows[0]["started"] == NOW


def test_names_and_todays_conversations_for_review(store):
    store.record(row(who="browser:a1", name="张三", conversation='{"answer": "一"}'))
    store.record(row(who="browser:b2", name="张三", started=NOW + 1, conversation='{"answer": "二"}'))
    store.record(row(who="browser:a1", started=NOW + 2))                      # no name this time
    store.record(row(who="browser:a1", name="张三丰", started=NOW + 3, conversation='{"answer": "三"}'))
    store.record(row(who="browser:a1", day="2026-03-04", started=NOW - 86400, conversation='{"answer": "昨天"}'))
    names = {s.who: s.name for s in store.day_totals(DAY).students}
    assert names == {"browser:a1": "张三丰", "browser:b2": "张三"}   # two 张三 stay apart by browser id
    today = store.conversations(DAY)
    assert [r["conversation"] for r in today] == ['{"answer": "三"}', '{"answer": "二"}', '{"answer": "一"}']
    assert [r["name"] for r in store.conversations(DAY, who="browser:a1")] == ["张三丰", "张三"]
    assert len(store.conversations(DAY, limit=1)) == 1


def test_flagged_rows_and_who_answered(store):
    store.record(row(who="browser:a1", name="张三", outcome="flagged", charged=0, flagged=True))
    store.record(row(who="browser:b2", started=NOW + 1, provider="qwen", fallback_reason="insufficient_quota"))
    store.record(row(who="browser:b2", name="李四", started=NOW + 2, outcome="content_filter", flagged=True))
    store.record(row(who="browser:a1", day="2026-03-04", started=NOW - 86400, flagged=True))
    flagged = store.flagged(DAY)
    assert [(r["who"], r["name"], r["outcome"]) for r in flagged] == [
        ("browser:b2", "李四", "content_filter"), ("browser:a1", "张三", "flagged")]
    assert all(r["flagged"] is True for r in flagged) and len(store.flagged(DAY, limit=1)) == 1
    recent = store.recent(10)
    assert [r["provider"] for r in recent] == [None, None, "qwen", None]
    assert [r["fallback_reason"] for r in recent] == [None, None, "insufficient_quota", None]
    assert [r["flagged"] for r in recent] == [True, True, False, True]
    assert [bool(r["flagged"]) for r in store.rows()] == [True, False, True, True]


# -- tokens, settings, logins ----------------------------------------------------------------------
def test_tokens_add_find_update_revoke_and_reuse_a_name(store):
    limits = TokenLimits(daily_tokens=500, rpm=5, concurrent=2, models=("a", "b"), expires=NOW + 3600)
    store.add_token("小明", "d1", limits, NOW)
    with pytest.raises(ValueError):
        store.add_token("小明", "d2", TokenLimits(), NOW)
    found = store.token_by_digest("d1")
    assert found.name == "小明" and found.limits == limits and found.created == NOW and found.revoked is None
    assert store.token_by_digest("nope") is None
    assert store.update_token("小明", TokenLimits(rpm=9)) and store.token_by_digest("d1").limits == TokenLimits(rpm=9)
    assert not store.update_token("nobody", TokenLimits())
    assert store.revoke_token("小明", NOW + 1) and not store.revoke_token("小明", NOW + 2)
    assert store.token_by_digest("d1").revoked == NOW + 1
    assert not store.update_token("小明", TokenLimits(rpm=1))
    store.add_token("小明", "d3", TokenLimits(), NOW + 3)      # a revoked name may be given again
    store.add_token("小红", "d4", TokenLimits(), NOW + 4)
    assert [(t.name, t.revoked) for t in store.tokens()] == [("小明", None), ("小红", None)]
    assert store.token_by_digest("d1") is None


def test_settings_and_login_failures(store):
    assert store.get_setting("system_prompt") is None
    store.set_setting("system_prompt", '"你是数学老师"')
    store.set_setting("system_prompt", '"你是语文老师"')
    assert store.get_setting("system_prompt") == '"你是语文老师"'
    store.set_setting("system_prompt", None)
    assert store.get_setting("system_prompt") is None
    assert store.login_failures("10.0.0.7") == LoginFailures()
    assert store.note_login_failure("10.0.0.7", NOW) == LoginFailures(1, NOW)
    assert store.note_login_failure("10.0.0.7", NOW + 1) == LoginFailures(2, NOW + 1)
    assert store.login_failures("10.0.0.7") == LoginFailures(2, NOW + 1)
    store.clear_login_failures("10.0.0.7")
    assert store.login_failures("10.0.0.7") == LoginFailures()


def test_admin_sessions_start_end_and_expire_for_every_server(stores):
    first, second = stores(), stores()
    first.add_session("a" * 64, NOW + 100)
    first.add_session("b" * 64, NOW + 100)
    assert second.session_valid("a" * 64, NOW) and not second.session_valid("a" * 64, NOW + 100)
    assert not second.session_valid("c" * 64, NOW)
    second.end_session("a" * 64)
    second.end_session("c" * 64)   # unknown: no error
    assert not first.session_valid("a" * 64, NOW) and first.session_valid("b" * 64, NOW)
    first.end_sessions()
    assert not second.session_valid("b" * 64, NOW)


def test_a_second_server_sees_every_change_at_once(stores):
    one, two = stores(), stores()
    one.add_token("小明", "d1", TokenLimits(), NOW)
    assert two.token_by_digest("d1").revoked is None
    two.revoke_token("小明", NOW + 1)
    assert one.token_by_digest("d1").revoked == NOW + 1
    one.set_setting("daily_budget", "5000")
    assert two.get_setting("daily_budget") == "5000"


def test_location_never_shows_a_password_and_only_a_shared_store_leases(store, store_url):
    assert store.location
    # One SQLite server keeps its 15-minute holds; servers sharing PostgreSQL renew 30-second leases.
    assert store.lease == (30.0 if store_url.startswith("postgresql") else None)
    if store_url.startswith("postgresql"):
        password = store_url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
        assert password not in store.location and ":***@" in store.location
        assert password not in repr(store)


# -- concurrency -----------------------------------------------------------------------------------
def test_the_class_budget_is_exact_under_claims_from_many_threads_and_two_servers(stores):
    """8 threads on two stores race 400 claims of 10 for a budget of 1,000: exactly 100 are
    granted, each answer then charged what it held, and the day ends exactly at the budget."""
    servers = [stores(), stores()]
    granted, errors = [], []
    lock = threading.Lock()

    def student(index):
        s = servers[index % 2]
        try:
            for _ in range(50):
                c = claim(who=f"s{index}", estimate=10, class_budget=1000)
                result = s.claim(c)
                if result.granted:
                    with lock:
                        granted.append(result.held)
                    s.record(row(who=f"s{index}", charged=result.held), c.id)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=student, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(granted) == 1000 and len(granted) == 100
    assert servers[0].used(DAY) == 1000 == sum(s.tokens for s in servers[1].day_totals(DAY).students)


def test_concurrent_limit_is_exact_across_servers(stores):
    servers = [stores(), stores()]
    results = []

    def ask(i):
        results.append(servers[i % 2].claim(claim(concurrent=3)).granted)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * 9 + [True] * 3


# -- faults (PostgreSQL) ---------------------------------------------------------------------------
def test_a_database_restart_is_survived_and_errors_never_show_the_password(postgres):
    from xedullm.server.store.postgresql import StoreUnreachable

    store = open_store(postgres.new_schema_url())
    password = postgres.url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    try:
        store.set_setting("k", "before")
        postgres.script("stop")
        try:
            with pytest.raises(StoreUnreachable) as failed:
                store.get_setting("k")
            assert password not in str(failed.value) and password not in repr(failed.value)
        finally:
            postgres.script("restart")   # starts the stopped cluster again
        # the pool reconnects by itself (with backoff); until then calls fail, never hang
        for _ in range(200):
            try:
                assert store.get_setting("k") == "before"
                break
            except StoreUnreachable:
                time.sleep(0.1)
        assert store.get_setting("k") == "before"
        store.set_setting("k", "after")
        assert store.get_setting("k") == "after"
    finally:
        store.close()



def test_the_schema_is_versioned_and_a_newer_one_is_refused(postgres):
    import psycopg

    from xedullm.errors import ConfigurationError

    url = postgres.new_schema_url()
    open_store(url).close()
    open_store(url).close()       # a second start finds it done
    with psycopg.connect(url) as db:
        from xedullm.server.store.postgresql import _MIGRATIONS

        versions = [(n,) for n in range(1, len(_MIGRATIONS) + 1)]
        assert db.execute("SELECT version FROM schema_version ORDER BY version").fetchall() == versions
        db.execute("INSERT INTO schema_version (version) VALUES (99)")
    with pytest.raises(ConfigurationError, match="newer xedullm"):
        open_store(url)
