"""`xedullm ask` and `xedullm chat` as a user runs them: real subprocesses (pipes, or a real
terminal through pexpect), a private empty key store, the real local model or a fake
provider on 127.0.0.1. Every run's output is searched for the key it was given."""
from __future__ import annotations

import os
import subprocess
import sys

import pexpect
import pytest

from xedullm import Client
from xedullm.catalog import PROVIDERS
from xedullm.keys import provider_with_key
from xedullm.testing import FakeOpenAIServer, Fault

KEY = "sk-test-c0ffee1234567890deadbeef13572468"
ALL_KEY_ENV = {n for p in PROVIDERS for n in (*p.key_env, *p.secret_env)} | {"OPENAI_API_KEY"}
FALLBACK_NOTE = "No API key configured: using the offline local model"
QUESTION = "What is the capital of France?"
LONG_REPLY = "这是一个很长的回答。" * 60


@pytest.fixture
def env(tmp_path):
    """A user with no key anywhere: environment cleaned, key store empty and private."""
    clean = {k: v for k, v in os.environ.items() if k not in ALL_KEY_ENV}
    clean.update(XEDULLM_HOME=str(tmp_path / "home"), XEDULLM_KEYRING="0",
                 PYTHONIOENCODING="utf-8", LANG="en_US.UTF-8", COLUMNS="120")
    clean.pop("LC_ALL", None)
    clean.pop("LC_MESSAGES", None)
    return clean


@pytest.fixture
def fake():
    with FakeOpenAIServer(flavor="deepseek", api_key=KEY) as server:
        yield server


def run(env, *args, stdin="", extra_env=None):
    proc = subprocess.run([sys.executable, "-m", "xedullm", *args], input=stdin,
                          capture_output=True, text=True, encoding="utf-8",
                          env={**env, **(extra_env or {})})
    assert KEY not in proc.stdout + proc.stderr and KEY[5:-4] not in proc.stdout + proc.stderr
    return proc


def online(fake):
    return ["-p", "deepseek", "--base-url", fake.base_url]


def with_key():
    return {"DEEPSEEK_API_KEY": KEY}


def user_contents(request):
    return [m["content"] for m in request["json"]["messages"] if m["role"] == "user"]


# -- ask -----------------------------------------------------------------------------------
@pytest.mark.local_model
def test_ask_with_no_key_uses_the_local_model_and_prints_only_the_answer(env):
    proc = run(env, "ask", "-t", "0", QUESTION)
    expected = Client(provider="local", verbose=False).inference(QUESTION, temperature=0)
    assert proc.returncode == 0
    assert proc.stdout == expected + "\n"
    note = proc.stderr.strip().splitlines()
    assert len(note) == 1 and FALLBACK_NOTE in note[0] and "xedullm key set deepseek" in note[0]


@pytest.mark.local_model
def test_ask_reads_piped_stdin_with_the_local_model(env):
    proc = run(env, "ask", "-p", "local", "-t", "0", stdin=QUESTION + "\n")
    assert proc.returncode == 0 and proc.stdout.strip()
    assert proc.stderr == ""                          # a provider was named: no note


def test_ask_with_a_fake_provider_prints_exactly_the_answer(env, fake):
    proc = run(env, "ask", *online(fake), "--system", "Be brief.", "Hello", "there",
               extra_env=with_key())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "你好！你刚才说：Hello there\n"
    assert proc.stderr == ""
    sent = fake.chat_requests[-1]["json"]
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["stream"] is True


def test_ask_appends_piped_stdin_to_the_question(env, fake):
    proc = run(env, "ask", *online(fake), "Summarize:", stdin="line one\nline two\n",
               extra_env=with_key())
    assert proc.returncode == 0
    assert user_contents(fake.chat_requests[-1]) == ["Summarize:\n\nline one\nline two"]
    assert proc.stdout == "你好！你刚才说：Summarize:\n\nline one\nline two\n"


def test_ask_with_only_piped_stdin(env, fake):
    proc = run(env, "ask", *online(fake), stdin="just this\n", extra_env=with_key())
    assert proc.returncode == 0 and proc.stdout == "你好！你刚才说：just this\n"


def test_ask_without_a_question_is_a_usage_error(env, fake):
    proc = run(env, "ask", *online(fake), extra_env=with_key())
    assert proc.returncode == 2 and proc.stdout == ""
    assert "xedullm ask" in proc.stderr
    assert fake.chat_requests == []


def test_ask_errors_go_to_stderr_with_exit_1(env, fake):
    fake.faults.append(Fault.quota())
    proc = run(env, "ask", *online(fake), "hi", extra_env=with_key())
    assert proc.returncode == 1 and proc.stdout == ""
    assert "top up" in proc.stderr and "Traceback" not in proc.stderr


def test_ask_with_a_wrong_key_never_prints_it(env, fake):
    wrong = "sk-test-0123456789abcdef0123456789abcdef"
    proc = run(env, "ask", *online(fake), "hi", extra_env={"DEEPSEEK_API_KEY": wrong})
    assert proc.returncode == 1 and proc.stdout == ""
    assert wrong not in proc.stderr and wrong[5:-4] not in proc.stderr
    assert "key" in proc.stderr.lower()


def test_provider_with_key_finds_the_environment_key(env, monkeypatch):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ALL_KEY_ENV:
        monkeypatch.delenv(name, raising=False)
    assert provider_with_key() is None
    monkeypatch.setenv("MOONSHOT_API_KEY", KEY)
    assert provider_with_key() == "moonshot"


# -- chat through pipes --------------------------------------------------------------------
def test_chat_keeps_history_and_handles_commands(env, fake):
    script = "\n".join([
        "first question",
        "/system You are a tutor.",
        "second question",
        "/clear",
        "line one \\",
        "line two",
        '"""',
        "block a",
        "",
        "block b",
        '"""',
        "/model deepseek-reasoner",
        "after switch",
        "/exit",
        "never sent",
    ]) + "\n"
    proc = run(env, "chat", *online(fake), stdin=script, extra_env=with_key())
    assert proc.returncode == 0, proc.stderr
    sent = [r["json"] for r in fake.chat_requests]
    assert len(sent) == 5
    assert [m["role"] for m in sent[0]["messages"]] == ["user"]
    # Second turn: the system prompt first, then the whole conversation so far.
    assert sent[1]["messages"] == [
        {"role": "system", "content": "You are a tutor."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "你好！你刚才说：first question"},
        {"role": "user", "content": "second question"},
    ]
    # After /clear: only the system prompt and the new message.
    assert sent[2]["messages"] == [{"role": "system", "content": "You are a tutor."},
                                   {"role": "user", "content": "line one \nline two"}]
    assert user_contents(fake.chat_requests[3])[-1] == "block a\n\nblock b"
    assert sent[4]["model"] == "deepseek-reasoner" and sent[3]["model"] == "deepseek-chat"
    assert sent[4]["messages"][0] == {"role": "system", "content": "You are a tutor."}
    assert "你好！你刚才说：second question" in proc.stdout
    assert "Conversation cleared." in proc.stdout


def test_chat_ends_on_ctrl_d(env, fake):
    proc = run(env, "chat", *online(fake), stdin="hello\n", extra_env=with_key())
    assert proc.returncode == 0
    assert "你好！你刚才说：hello" in proc.stdout and len(fake.chat_requests) == 1


def test_chat_reports_an_error_and_keeps_going(env, fake):
    fake.faults.append(Fault.status(401))
    proc = run(env, "chat", *online(fake), stdin="one\ntwo\n", extra_env=with_key())
    assert proc.returncode == 0
    assert "rejected" in proc.stderr
    # The failed question is not repeated in the next turn's history.
    assert fake.chat_requests[-1]["json"]["messages"] == [{"role": "user", "content": "two"}]
    assert "你好！你刚才说：two" in proc.stdout


def test_chat_with_a_bad_model_switch_keeps_the_old_model(env):
    proc = run(env, "chat", "-p", "local", stdin="/model /no/such/model.gguf\n/model\n")
    assert proc.returncode == 0
    assert "/no/such/model.gguf" in proc.stderr
    assert "Current model: SmolLM2-135M-Instruct" in proc.stdout


# -- chat in a real terminal ---------------------------------------------------------------
def spawn(env, *args, extra_env=None):
    child = pexpect.spawn(sys.executable, ["-m", "xedullm", "chat", *args], encoding="utf-8",
                          env={**env, **(extra_env or {})}, timeout=120, dimensions=(40, 200))
    child.expect("you> ")
    return child


def finish(child):
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


@pytest.mark.local_model
def test_chat_in_a_terminal_with_the_local_model(env):
    expected = Client(provider="local", verbose=False).inference(QUESTION, temperature=0)
    child = spawn(env, "-t", "0")
    assert FALLBACK_NOTE in child.before
    child.sendline(QUESTION)
    child.expect("you> ")
    assert expected.replace("\n", "\r\n") in child.before
    finish(child)


def test_ctrl_c_stops_the_answer_but_not_the_chat(env):
    with FakeOpenAIServer(flavor="deepseek", api_key=KEY, reply=LONG_REPLY, token_delay=0.05) as slow:
        child = spawn(env, "-p", "deepseek", "--base-url", slow.base_url, extra_env=with_key())
        child.sendline("tell me everything")
        child.expect("这是")                            # the answer has started
        child.sendintr()
        child.expect(r"\(stopped\)")
        child.expect("you> ")
        assert slow.wait_for(lambda: slow.streams_cancelled == 1)
        assert slow.streams_completed == 0
        slow.reply = "short"
        child.sendline("and now?")
        child.expect("short")
        child.expect("you> ")
        # The stopped answer stays in the history as far as it got.
        history = slow.chat_requests[-1]["json"]["messages"]
        assert [m["role"] for m in history] == ["user", "assistant", "user"]
        assert LONG_REPLY.startswith(history[1]["content"]) and history[1]["content"]
        finish(child)


@pytest.mark.local_model
def test_ctrl_c_stops_a_local_answer(env):
    child = spawn(env, "-p", "local", "-t", "0")
    child.sendline("Write a very long story about a dragon.")
    child.expect(r"\w+ \w+ \w+")                       # words are arriving
    child.sendintr()
    child.expect(r"\(stopped\)")
    child.expect("you> ")
    child.sendline("/clear")
    child.expect("you> ")
    child.sendline(QUESTION)
    child.expect("you> ")
    expected = Client(provider="local", verbose=False).inference(QUESTION, temperature=0)
    assert expected.replace("\n", "\r\n") in child.before
    finish(child)


def test_spinner_shows_in_a_terminal_until_the_answer(env, fake):
    fake.faults.append(Fault.stall(1.0))
    child = spawn(env, *online(fake), extra_env=with_key())
    child.sendline("hello")
    child.expect("Thinking")
    child.expect("你好！你刚才说：hello")
    child.expect("you> ")
    finish(child)


def test_a_reasoning_models_thinking_is_shown_dimmed_and_kept_out_of_the_history(env, fake):
    child = spawn(env, *online(fake), "-m", "deepseek-reasoner", extra_env=with_key())
    child.sendline("why")
    child.expect("you> ")
    shown = child.before
    thinking = shown.index("\x1b[2m（思考）用户说：why")
    assert shown.index("\x1b[22m") > thinking and shown.index("你好！你刚才说：why") > shown.index("\x1b[22m")
    child.sendline("again")
    child.expect("you> ")
    finish(child)
    assert fake.chat_requests[-1]["json"]["messages"][1] == {"role": "assistant", "content": "你好！你刚才说：why"}


def test_thinking_stays_out_of_piped_output(env, fake):
    proc = run(env, "chat", *online(fake), "-m", "deepseek-reasoner", stdin="why\n", extra_env=with_key())
    assert proc.returncode == 0 and "你好！你刚才说：why" in proc.stdout
    assert "思考" not in proc.stdout and "\x1b[" not in proc.stdout
