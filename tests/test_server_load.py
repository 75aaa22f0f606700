"""A whole class at once: many streaming students against one classroom server.

Correctness under load only; how many students one server carries is measured in
bench/server_concurrency.py, never asserted against a clock here.
"""
from __future__ import annotations

import asyncio
import json

import httpx
import pytest

pytestmark = pytest.mark.load

STUDENTS = 60


async def _stream_answer(http: httpx.AsyncClient, question: str):
    text, usage, done = [], None, False
    body = {"messages": [{"role": "user", "content": question}], "stream": True,
            "stream_options": {"include_usage": True}}
    async with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if not line:
                continue
            assert line.startswith("data: ")
            if line == "data: [DONE]":
                done = True
                continue
            frame = json.loads(line[len("data: "):])
            assert "error" not in frame, frame
            if frame["choices"]:
                text.append(frame["choices"][0]["delta"].get("content") or "")
            elif frame["usage"]:
                usage = frame["usage"]
    return "".join(text), usage, done


def test_sixty_students_streaming_at_once_all_get_their_own_complete_answer(classroom_server):
    # The whole class comes from 127.0.0.1 here; in a classroom each student has an address
    # of their own, which the per-address connection cap is for.
    room = classroom_server(system="你是课堂助手。", max_connections_per_address=1000)
    room.fake.token_delay = 0.02   # slow enough that the streams overlap

    async def whole_class():
        limits = httpx.Limits(max_connections=STUDENTS)
        async with httpx.AsyncClient(base_url=room.url, timeout=60, limits=limits) as http:
            return await asyncio.gather(*(
                _stream_answer(http, f"第{i}号同学的问题：{i}的平方是多少？") for i in range(STUDENTS)))

    results = asyncio.run(whole_class())
    for i, (text, usage, done) in enumerate(results):
        assert done
        assert text == f"你好！你刚才说：第{i}号同学的问题：{i}的平方是多少？"
        assert usage is not None and usage["completion_tokens"] > 0
    assert len(room.fake.chat_requests) == STUDENTS
    assert room.fake.streams_completed == STUDENTS
    assert room.fake.max_active_streams > 1   # they really were served side by side
    assert room.state.gate.active == 0 and room.state.gate.waiting == 0
    # every student's usage is the one their own request reported upstream
    assert sorted(u["total_tokens"] for _, u, _ in results) == sorted(u["total_tokens"] for u in room.fake.usage_log)
