"""Client cost per request: one contestant, run inside its own virtual environment.

    python client_overhead.py '<json spec>'    -> one JSON line on stdout

spec: contestant (xedullm | wire | httpx | openai | litellm | xedu), url (the /v1 root), key,
model, question, reply, stream, concurrency (1 = sequential sync calls; more = that many
asyncio tasks), requests (per round), rounds, warmup.

Each round reports wall seconds and this process's CPU seconds (all threads, so background
workers a library starts are counted too). The fake provider runs in another process.
Every answer is compared with the expected reply.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time


def make_sync(spec):
    """A function question -> answer text, using the contestant the way its docs show."""
    name, url, key, model, stream = (spec["contestant"], spec["url"], spec["key"],
                                     spec["model"], spec["stream"])
    messages = lambda q: [{"role": "user", "content": q}]  # noqa: E731
    if name == "xedullm":
        from xedullm import Client

        client = Client(base_url=url, api_key=key, model=model, verbose=False)
        if stream:
            return lambda q: "".join(client.inference(q, stream=True))
        return client.inference
    if name == "xedu":
        from XEdu.LLM import Client

        client = Client(base_url=url, api_key=key, model=model)
        if stream:
            return lambda q: "".join(client.inference(q, stream=True))
        return client.inference
    if name == "wire":
        # The floor under ours: the libraries xedullm's wires use (urllib3), bare.
        import urllib3

        pool = urllib3.PoolManager()
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

        def ask(q):
            body = json.dumps({"model": model, "messages": messages(q), "stream": stream}).encode()
            response = pool.request("POST", f"{url}/chat/completions", body=body, headers=headers,
                                    preload_content=not stream)
            if not stream:
                return json.loads(response.data)["choices"][0]["message"]["content"]
            return _sse_text(b"".join(response.stream()))
        return ask
    if name == "httpx":
        import httpx

        client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60)

        def ask(q):
            body = {"model": model, "messages": messages(q), "stream": stream}
            if not stream:
                response = client.post("/chat/completions", json=body)
                response.raise_for_status()
                return response.json()["choices"][0]["message"]["content"]
            parts = []
            with client.stream("POST", "/chat/completions", json=body) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    if line.startswith("data:") and line[5:].strip() != "[DONE]":
                        choices = json.loads(line[5:]).get("choices") or [{}]
                        parts.append((choices[0].get("delta") or {}).get("content") or "")
            return "".join(parts)
        return ask
    if name == "openai":
        from openai import OpenAI

        client = OpenAI(base_url=url, api_key=key)

        def ask(q):
            if not stream:
                return client.chat.completions.create(model=model, messages=messages(q)).choices[0].message.content
            chunks = client.chat.completions.create(model=model, messages=messages(q), stream=True)
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        return ask
    if name == "litellm":
        import litellm

        def ask(q):
            kw = dict(model=f"openai/{model}", api_base=url, api_key=key, messages=messages(q))
            if not stream:
                return litellm.completion(**kw).choices[0].message.content
            return "".join(c.choices[0].delta.content or ""
                           for c in litellm.completion(stream=True, **kw) if c.choices)
        return ask
    raise SystemExit(f"unknown contestant {name}")


def make_async(spec):
    """An async function question -> answer text."""
    name, url, key, model, stream = (spec["contestant"], spec["url"], spec["key"],
                                     spec["model"], spec["stream"])
    messages = lambda q: [{"role": "user", "content": q}]  # noqa: E731
    if name == "xedullm":
        from xedullm import Client

        client = Client(base_url=url, api_key=key, model=model, verbose=False)

        async def ask(q):
            if not stream:
                return await client.ainference(q)
            return "".join([p async for p in await client.ainference(q, stream=True)])
        return ask
    if name == "wire":
        import aiohttp

        state = {}
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

        async def ask(q):
            if "session" not in state:   # made inside the loop that uses it
                state["session"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            body = json.dumps({"model": model, "messages": messages(q), "stream": stream}).encode()
            async with state["session"].post(f"{url}/chat/completions", data=body, headers=headers) as response:
                data = await response.read()
            if not stream:
                return json.loads(data)["choices"][0]["message"]["content"]
            return _sse_text(data)
        return ask
    if name == "httpx":
        import httpx

        client = httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"},
                                   timeout=60, limits=httpx.Limits(max_connections=None))

        async def ask(q):
            body = {"model": model, "messages": messages(q), "stream": stream}
            if not stream:
                response = await client.post("/chat/completions", json=body)
                response.raise_for_status()
                return response.json()["choices"][0]["message"]["content"]
            parts = []
            async with client.stream("POST", "/chat/completions", json=body) as response:
                response.raise_for_status()
                async for line in response.aiter_lines():
                    if line.startswith("data:") and line[5:].strip() != "[DONE]":
                        choices = json.loads(line[5:]).get("choices") or [{}]
                        parts.append((choices[0].get("delta") or {}).get("content") or "")
            return "".join(parts)
        return ask
    if name == "openai":
        from openai import AsyncOpenAI

        client = AsyncOpenAI(base_url=url, api_key=key)

        async def ask(q):
            if not stream:
                return (await client.chat.completions.create(model=model, messages=messages(q))).choices[0].message.content
            chunks = await client.chat.completions.create(model=model, messages=messages(q), stream=True)
            return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
        return ask
    if name == "litellm":
        import litellm

        async def ask(q):
            kw = dict(model=f"openai/{model}", api_base=url, api_key=key, messages=messages(q))
            if not stream:
                return (await litellm.acompletion(**kw)).choices[0].message.content
            chunks = await litellm.acompletion(stream=True, **kw)
            return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
        return ask
    return None


def _sse_text(data):
    parts = []
    for line in data.split(b"\n"):
        if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
            choices = json.loads(line[5:]).get("choices") or [{}]
            parts.append((choices[0].get("delta") or {}).get("content") or "")
    return "".join(parts)


def check(answer, reply):
    if answer != reply:
        raise SystemExit(f"wrong answer: {answer!r:.80}")


def run_sync(spec):
    ask = make_sync(spec)
    for _ in range(spec["warmup"]):
        check(ask(spec["question"]), spec["reply"])
    rounds = []
    for _ in range(spec["rounds"]):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(spec["requests"]):
            check(ask(spec["question"]), spec["reply"])
        rounds.append({"wall": time.perf_counter() - wall0, "cpu": time.process_time() - cpu0})
    return rounds


async def run_async(spec):
    ask = make_async(spec)
    if ask is None:
        return None
    tasks, each = spec["concurrency"], max(1, spec["requests"] // spec["concurrency"])

    async def worker(n):
        for _ in range(n):
            check(await ask(spec["question"]), spec["reply"])

    await asyncio.gather(*(worker(max(1, spec["warmup"] // tasks)) for _ in range(tasks)))
    rounds = []
    for _ in range(spec["rounds"]):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(each) for _ in range(tasks)))
        rounds.append({"wall": time.perf_counter() - wall0, "cpu": time.process_time() - cpu0})
    return rounds


def main():
    spec = json.loads(sys.argv[1])
    if spec["concurrency"] == 1:
        rounds = run_sync(spec)
        done = spec["requests"]
    else:
        rounds = asyncio.run(run_async(spec))
        done = max(1, spec["requests"] // spec["concurrency"]) * spec["concurrency"]
    print(json.dumps({"rounds": rounds, "requests": done}))


if __name__ == "__main__":
    main()
