"""``/v1/responses``: the openai SDK's ``client.responses.create`` (the form OpenAI's docs teach
first) through the classroom server, with the class's access code, limits and ledger."""
from __future__ import annotations

import httpx
import openai
import pytest

from xedullm.server.classroom.ledger import LedgerEntry
from xedullm.testing import Fault

CODE = "class-code-7"


class RecordingLedger:
    def __init__(self):
        self.entries = []

    async def record(self, entry: LedgerEntry) -> None:
        self.entries.append(entry)


def sdk(room, key=CODE):
    return openai.OpenAI(base_url=f"{room.url}/v1", api_key=key, max_retries=0)


def test_a_response_answers_with_the_access_code_and_is_counted(classroom_server, tmp_path):
    ledger = RecordingLedger()
    room = classroom_server(access_code=CODE, data_dir=tmp_path, ledger=ledger)
    answer = sdk(room).responses.create(model="deepseek-chat", input="什么是光合作用？",
                                        instructions="用一句话回答。", max_output_tokens=200, temperature=0.3)
    assert answer.status == "completed" and answer.output_text.endswith("什么是光合作用？")
    assert answer.usage.input_tokens > 0 and answer.usage.output_tokens > 0
    upstream = room.upstream_bodies()[-1]
    assert upstream["messages"][0] == {"role": "system", "content": "用一句话回答。"}
    assert upstream["messages"][-1] == {"role": "user", "content": "什么是光合作用？"}
    assert upstream["max_tokens"] == 200 and upstream["temperature"] == 0.3
    assert room.fake.wait_for(lambda: len(ledger.entries) == 1, 10)
    assert ledger.entries[0].status == 200 and ledger.entries[0].usage.completion_tokens > 0


def test_a_streamed_response_sends_the_documented_events_in_order(classroom_server, tmp_path):
    room = classroom_server(access_code=CODE, data_dir=tmp_path)
    events = list(sdk(room).responses.create(
        model="deepseek-chat", stream=True,
        input=[{"role": "user", "content": [{"type": "input_text", "text": "你好"}]}]))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == events[-4].text == events[-1].response.output_text and text.endswith("你好")
    assert events[-1].response.usage.output_tokens > 0


def test_without_the_access_code_it_is_refused(classroom_server, tmp_path):
    room = classroom_server(access_code=CODE, data_dir=tmp_path)
    with pytest.raises(openai.AuthenticationError):
        sdk(room, key="wrong").responses.create(model="deepseek-chat", input="你好")
    assert room.upstream_bodies() == []


def test_a_field_outside_the_text_subset_is_a_400_naming_it(classroom_server, tmp_path):
    room = classroom_server(access_code=CODE, data_dir=tmp_path)
    reply = httpx.post(f"{room.url}/v1/responses", headers={"Authorization": f"Bearer {CODE}"},
                       json={"model": "deepseek-chat", "input": "你好", "tools": [{"type": "web_search"}]})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "tools"
    assert "/v1/chat/completions" in reply.json()["error"]["message"]
    bad = httpx.post(f"{room.url}/v1/responses", headers={"Authorization": f"Bearer {CODE}"},
                     json={"model": "deepseek-chat", "input": [{"role": "user", "content": [{"type": "input_image"}]}]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "input[0].content"
    assert room.upstream_bodies() == []


def test_a_provider_error_mid_stream_ends_in_response_failed(classroom_server, tmp_path):
    room = classroom_server(access_code=CODE, data_dir=tmp_path)
    room.fake.faults.append(Fault.disconnect_after(2))
    events = list(sdk(room).responses.create(model="deepseek-chat", input="讲个故事", stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.failed"
    assert "response.completed" not in kinds and "error" in kinds
