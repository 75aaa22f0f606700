"""The official openai SDK against our server: tool calls (whole and streamed, and the next
turn with the tool's result), JSON mode, and ``.parse()`` structured output."""
import json

from common import ACCESS_CODE, BASE_URL, MODEL, QUESTION, WEATHER, join_stream_calls, report
from openai import OpenAI
from pydantic import BaseModel

client = OpenAI(base_url=BASE_URL, api_key=ACCESS_CODE, max_retries=0)
ask = [{"role": "user", "content": QUESTION}]
results = {}

first = client.chat.completions.create(model=MODEL, messages=ask, tools=[WEATHER])
choice = first.choices[0]
results["tool_call"] = {"finish": choice.finish_reason, "content": choice.message.content,
                        "calls": [{"name": c.function.name, "arguments": json.loads(c.function.arguments)}
                                  for c in choice.message.tool_calls]}

deltas, finish = [], None
for chunk in client.chat.completions.create(model=MODEL, messages=ask, tools=[WEATHER], stream=True):
    if chunk.choices:
        deltas += chunk.choices[0].delta.tool_calls or []
        finish = chunk.choices[0].finish_reason or finish
results["stream_tool_call"] = {"finish": finish, "calls": [
    {"name": c["name"], "arguments": json.loads(c["arguments"]), "has_id": bool(c["id"])}
    for c in join_stream_calls(deltas)]}

call = choice.message.tool_calls[0]
history = ask + [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "晴，25 度"}]
results["after_tool"] = client.chat.completions.create(model=MODEL, messages=history, tools=[WEATHER]) \
    .choices[0].message.content

json_mode = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                           response_format={"type": "json_object"})
results["json_mode"] = json.loads(json_mode.choices[0].message.content)


class Pupil(BaseModel):
    name: str
    grade: int


# .parse() moved out of .beta in later SDKs; either is the SDK's structured output.
parse = getattr(client.chat.completions, "parse", None) or client.beta.chat.completions.parse
parsed = parse(model=MODEL, messages=[{"role": "user", "content": "介绍一个学生"}], response_format=Pupil)
results["parsed"] = parsed.choices[0].message.parsed.model_dump()
report(results)
