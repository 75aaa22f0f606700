"""langchain-openai against our server: ``bind_tools`` (invoke, stream, and the tool's result
sent back) and ``with_structured_output`` (its default method, function calling, JSON mode)."""
from common import ACCESS_CODE, BASE_URL, MODEL, QUESTION, report
from langchain_core.messages import HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI
from pydantic import BaseModel


class GetWeather(BaseModel):
    """今天的天气"""

    city: str
    days: int


class Pupil(BaseModel):
    name: str
    grade: int


llm = ChatOpenAI(model=MODEL, base_url=BASE_URL, api_key=ACCESS_CODE, max_retries=0)
with_tools = llm.bind_tools([GetWeather])
results = {}

ai = with_tools.invoke(QUESTION)
results["bind_tools"] = [{"name": c["name"], "args": c["args"]} for c in ai.tool_calls]

merged = None
for chunk in with_tools.stream(QUESTION):
    merged = chunk if merged is None else merged + chunk
results["stream_tools"] = [{"name": c["name"], "args": c["args"]} for c in merged.tool_calls]

answer = with_tools.invoke([HumanMessage(QUESTION), ai,
                            ToolMessage("晴，25 度", tool_call_id=ai.tool_calls[0]["id"])])
results["after_tool"] = answer.content

results["structured"] = llm.with_structured_output(Pupil).invoke("介绍一个学生").model_dump()
results["structured_function_calling"] = llm.with_structured_output(
    Pupil, method="function_calling").invoke("介绍一个学生").model_dump()
results["json_mode"] = llm.with_structured_output(
    {"title": "Reply", "type": "object", "properties": {"answer": {"type": "string"}}},
    method="json_mode").invoke("hi")
report(results)
