"""Every answer names its request (x-request-id), the ledger row keeps the id; counts read right
in English (issue 29)."""
from __future__ import annotations

import httpx
import openai

from xedullm.server.classroom.gate import CallerBusy
from xedullm.server.classroom.ledger import LedgerEntry


class RecordingLedger:
    def __init__(self):
        self.entries = []

    async def record(self, entry: LedgerEntry) -> None:
        self.entries.append(entry)


def test_answers_carry_x_request_id_and_the_ledger_the_same(classroom_server):
    ledger = RecordingLedger()
    room = classroom_server(ledger=ledger)
    sdk = openai.OpenAI(base_url=f"{room.url}/v1", api_key="x", max_retries=0)
    reply = sdk.chat.completions.with_raw_response.create(model="m", messages=[{"role": "user", "content": "你好"}])
    rid = reply.headers["x-request-id"]
    assert rid.startswith("req_") and reply.parse()._request_id == rid
    stream = sdk.chat.completions.with_raw_response.create(model="m", stream=True,
                                                           messages=[{"role": "user", "content": "再来"}])
    list(stream.parse())
    assert room.fake.wait_for(lambda: len(ledger.entries) == 2, 10)
    assert [e.request_id for e in ledger.entries] == [rid, stream.headers["x-request-id"]]
    assert rid != stream.headers["x-request-id"]
    for path in ("/", "/api/info", "/v1/models", "/no-such-path"):
        assert httpx.get(room.url + path, timeout=10).headers["x-request-id"].startswith("req_")


def test_english_counts_are_singular_for_one():
    assert "You already have 1 answer running" in str(CallerBusy(1))
    assert "You already have 2 answers running" in str(CallerBusy(2))


def test_legacy_completions_is_a_404_that_points_to_the_chat(classroom_server):
    room = classroom_server()
    sdk = openai.OpenAI(base_url=f"{room.url}/v1", api_key="x", max_retries=0)
    try:
        sdk.completions.create(model="m", prompt="你好")
    except openai.NotFoundError as err:
        message = err.body["message"]
    else:
        raise AssertionError("expected a 404")
    assert "/v1/chat/completions" in message and "is_chat_model=True" in message and "请用" in message
    assert room.upstream_bodies() == []
