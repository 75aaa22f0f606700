"""LiteLLM against our server as an OpenAI-compatible base: tool calls (whole and streamed)
and JSON mode."""
import json
import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch from the internet

import litellm  # noqa: E402
from common import ACCESS_CODE, BASE_URL, MODEL, QUESTION, WEATHER, join_stream_calls, report  # noqa: E402

litellm.telemetry = False
target = {"model": f"openai/{MODEL}", "api_base": BASE_URL, "api_key": ACCESS_CODE, "max_retries": 0}
ask = [{"role": "user", "content": QUESTION}]
results = {}

whole = litellm.completion(messages=ask, tools=[WEATHER], **target)
choice = whole.choices[0]
results["tool_call"] = {"finish": choice.finish_reason,
                        "calls": [{"name": c.function.name, "arguments": json.loads(c.function.arguments)}
                                  for c in choice.message.tool_calls]}

deltas = []
for chunk in litellm.completion(messages=ask, tools=[WEATHER], stream=True, **target):
    if chunk.choices:
        deltas += chunk.choices[0].delta.tool_calls or []
results["stream_tool_call"] = [{"name": c["name"], "arguments": json.loads(c["arguments"])}
                               for c in join_stream_calls(deltas)]

json_mode = litellm.completion(messages=[{"role": "user", "content": "hi"}],
                               response_format={"type": "json_object"}, **target)
results["json_mode"] = json.loads(json_mode.choices[0].message.content)
report(results)
