"""Providers as a teacher meets them today (issue 26): Qianfan v2's one bce-v3/ key, DashScope's
compatible mode, and defaults that survive drift. Real sockets against fakes of each wire."""
import asyncio

import pytest

from xedullm import (AuthenticationError, Client, ContentFilterError, ModelNotFoundError,
                     QuotaExceededError)
from xedullm.testing import FakeDashScopeServer, FakeErnieServer, Fault

V2_KEY = "bce-v3/ALTAK-x/y"
AK, SK = "ak-test-0123456789", "sk-secret-0123456789"
KEY = "sk-test-forms-0123456789abcdef"


@pytest.fixture(scope="module")
def ernie():
    with FakeErnieServer(api_key=AK, secret_key=SK, v2_api_key=V2_KEY) as fake:
        yield fake


def test_a_bce_v3_key_alone_picks_qianfan_v2_at_its_documented_address():
    bot = Client("ernie", api_key=V2_KEY, verbose=False)
    assert bot.base_url == "https://qianfan.baidubce.com/v2"
    assert bot.provider.protocol == "openai" and bot.model == "ernie-speed-8k"
    assert V2_KEY not in repr(bot)


def test_ernie_v2_key_answers_stream_non_stream_and_async(ernie):
    ernie.reset()
    bot = Client("ernie", api_key=V2_KEY, base_url=ernie.v2_base_url, verbose=False)
    assert bot.inference("你好") == "你好！你刚才说：你好"
    request = ernie.chat_requests[-1]
    assert request["path"].endswith("/v2/chat/completions")
    assert request["headers"]["authorization"] == "Bearer " + V2_KEY
    assert request["json"]["model"] == "ernie-speed-8k"
    assert "appid" not in request["headers"]
    assert "".join(bot.inference("流式", stream=True)) == "你好！你刚才说：流式"

    async def both():
        async with Client("ernie", api_key=V2_KEY, base_url=ernie.v2_base_url, verbose=False) as abot:
            one = await abot.ainference("异步")
            pieces = [p async for p in await abot.ainference("异步流", stream=True)]
            return one, "".join(pieces)

    assert asyncio.run(both()) == ("你好！你刚才说：异步", "你好！你刚才说：异步流")
    assert ernie.token_requests == 0          # v2 needs no OAuth token step


@pytest.mark.parametrize("old, v2", [("ERNIE_speed_8k", "ernie-speed-8k"),
                                     ("ERNIE_speed_128k", "ernie-speed-128k"),
                                     ("ERNIE_lite_8k_0308", "ernie-lite-8k"),
                                     ("ernie-4.0-8k", "ernie-4.0-8k")])
def test_xeduLLM_model_names_are_sent_as_v2_names(ernie, old, v2):
    ernie.reset()
    bot = Client("ernie", api_key=V2_KEY, base_url=ernie.v2_base_url, model=old, verbose=False)
    assert bot.inference("hi")
    assert ernie.chat_requests[-1]["json"]["model"] == v2


def test_appid_header_is_optional_and_sent_when_set(ernie, monkeypatch):
    ernie.reset()
    monkeypatch.setenv("QIANFAN_APPID", "app-123")
    Client("ernie", api_key=V2_KEY, base_url=ernie.v2_base_url, verbose=False).inference("hi")
    assert ernie.chat_requests[-1]["headers"]["appid"] == "app-123"


@pytest.mark.parametrize("fault, error", [(lambda: Fault.status(401), AuthenticationError),
                                          (Fault.quota, QuotaExceededError),
                                          (lambda: Fault.status(403), ContentFilterError)])
def test_v2_error_bodies_map_to_our_errors(ernie, fault, error):
    ernie.reset()
    ernie.faults.append(fault())
    bot = Client("ernie", api_key=V2_KEY, base_url=ernie.v2_base_url, verbose=False)
    with pytest.raises(error) as info:
        bot.inference("hi")
    assert V2_KEY not in str(info.value) and "ALTAK" not in str(info.value)


def test_v2_unknown_model_is_model_not_found(ernie):
    ernie.reset()
    bot = Client("ernie", api_key=V2_KEY, base_url=ernie.v2_base_url, model="ernie-no-such", verbose=False)
    with pytest.raises(ModelNotFoundError):
        bot.inference("hi")


def test_ak_sk_pair_still_answers_from_v1(ernie):
    ernie.reset()
    bot = Client("ernie", api_key=AK, secret_key=SK, base_url=ernie.url, verbose=False)
    assert bot.provider.protocol == "ernie"
    assert bot.inference("你好") == "你好！你刚才说：你好"
    assert ernie.token_requests == 1
    assert "/wenxinworkshop/chat/ernie_speed" in ernie.chat_requests[-1]["path"]


# -- DashScope compatible mode -------------------------------------------------------------
@pytest.fixture(scope="module")
def dashscope():
    with FakeDashScopeServer(api_key=KEY) as fake:
        yield fake


def test_qwen_compatible_mode_speaks_openai(dashscope):
    dashscope.reset()
    bot = Client(provider="qwen", base_url=dashscope.compatible_base_url, api_key=KEY,
                 model="qwen-plus", verbose=False)
    assert bot.inference("你好") == "你好！你刚才说：你好"
    assert dashscope.chat_requests[-1]["path"].endswith("/compatible-mode/v1/chat/completions")
    assert "".join(bot.inference("流式", stream=True)) == "你好！你刚才说：流式"
    # the native protocol stays the default
    native = Client(provider="qwen", base_url=dashscope.base_url, api_key=KEY, verbose=False)
    assert native.inference("hi")
    assert dashscope.chat_requests[-1]["path"].endswith("/services/aigc/text-generation/generation")


@pytest.mark.parametrize("url", ["https://dashscope.aliyuncs.com/compatible-mode/v1",
                                 "https://dashscope-intl.aliyuncs.com/compatible-mode/v1/"])
def test_both_compatible_mode_endpoints_pick_openai(url):
    assert Client(provider="qwen", base_url=url, api_key=KEY, verbose=False).provider.protocol == "openai"
    assert Client(provider="qwen", api_key=KEY, verbose=False).provider.protocol == "dashscope"


# -- defaults that survive drift ---------------------------------------------------------------
def _retired_default(fake_models):
    from xedullm.testing import FakeOpenAIServer
    return FakeOpenAIServer(flavor="openrouter", api_key="sk-or-v1-test", models=fake_models)


def test_a_retired_default_models_error_names_the_live_models_and_the_closest():
    with _retired_default(["openrouter/free-v2", "meta-llama/llama-3.3-8b-instruct:free"]) as fake:
        bot = Client("openrouter", base_url=fake.base_url, api_key="sk-or-v1-test", verbose=False)
        for call in (lambda: bot.inference("hi"), lambda: list(bot.inference("hi", stream=True)),
                     lambda: asyncio.run(bot.ainference("hi"))):
            with pytest.raises(ModelNotFoundError) as info:
                call()
            text = str(info.value)
            assert "openrouter/free" in text and "meta-llama/llama-3.3-8b-instruct:free" in text
            assert "Closest: openrouter/free-v2" in text and "最接近的是 openrouter/free-v2" in text
            assert info.value.closest == "openrouter/free-v2"
            assert "sk-or-v1-test" not in text
        assert any(r["path"].endswith("/models") for r in fake.requests)
        # a model the user chose is not the default: the provider's own error, no listing
        with pytest.raises(ModelNotFoundError) as info:
            Client("openrouter", base_url=fake.base_url, api_key="sk-or-v1-test", model="nope/x",
                   verbose=False).inference("hi")
        assert "lists now" not in str(info.value)


def test_a_retired_qwen_default_on_the_native_protocol_names_the_live_models():
    with FakeDashScopeServer(api_key=KEY, models=["qwen-plus-2026-09-11", "qwen-flash"]) as fake:
        bot = Client("qwen", base_url=fake.base_url, api_key=KEY, verbose=False)
        with pytest.raises(ModelNotFoundError) as info:
            bot.inference("hi")
        assert "qwen-flash" in str(info.value) and info.value.closest == "qwen-plus-2026-09-11"


# -- the command line: key set / key check / models ---------------------------------------------
def _cli(tmp_path, *args, stdin=None):
    import os
    import subprocess
    import sys

    from xedullm.catalog import PROVIDERS
    names = {n for p in PROVIDERS for n in (*p.key_env, *p.secret_env)} | {"OPENAI_API_KEY"}
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(XEDULLM_HOME=str(tmp_path / "home"), XEDULLM_KEYRING="0", COLUMNS="200",
               PYTHONIOENCODING="utf-8")
    proc = subprocess.run([sys.executable, "-m", "xedullm", *args], input=stdin, capture_output=True,
                          text=True, encoding="utf-8", env=env, cwd=tmp_path)
    for secret in (V2_KEY, "ALTAK-x", "sk-or-v1-test"):
        assert secret not in proc.stdout + proc.stderr
    return proc


def test_a_bce_v3_key_is_saved_alone_and_checked_against_v2(tmp_path, ernie):
    ernie.reset()
    saved = _cli(tmp_path, "key", "set", "ernie", "--stdin", stdin=V2_KEY + "\n")
    assert saved.returncode == 0, saved.stderr
    listed = _cli(tmp_path, "key", "list")
    assert "missing" not in listed.stdout and "缺少" not in listed.stdout
    checked = _cli(tmp_path, "key", "check", "ernie", "--base-url", ernie.v2_base_url)
    assert checked.returncode == 0, checked.stderr
    assert ernie.chat_requests[-1]["path"].endswith("/v2/chat/completions")


def test_key_check_and_models_name_the_live_models_when_the_default_is_gone(tmp_path):
    with _retired_default(["openrouter/free-v2", "meta-llama/llama-3.3-8b-instruct:free"]) as fake:
        assert _cli(tmp_path, "key", "set", "openrouter", "--stdin", stdin="sk-or-v1-test\n").returncode == 0
        checked = _cli(tmp_path, "key", "check", "openrouter", "--base-url", fake.base_url)
        listed = _cli(tmp_path, "models", "openrouter", "--base-url", fake.base_url)
    assert checked.returncode == 0 and listed.returncode == 0
    assert listed.stdout.splitlines() == ["openrouter/free-v2", "meta-llama/llama-3.3-8b-instruct:free"]
    for run in (checked, listed):
        assert "openrouter/free" in run.stderr and "Closest: openrouter/free-v2" in run.stderr


def test_fallback_and_compare_specs_accept_the_new_forms(tmp_path, ernie, dashscope, monkeypatch):
    import socket
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    sock.close()
    ernie.reset()
    dashscope.reset()
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)
    monkeypatch.setenv("QIANFAN_API_KEY", V2_KEY)
    for spec, fake in ((f"qwen:qwen-plus@{dashscope.compatible_base_url}", dashscope),
                       (f"ernie@{ernie.v2_base_url}", ernie)):
        bot = Client(base_url=dead, api_key="sk-x", model="m", max_retries=0, verbose=False,
                     fallback=[spec])
        assert bot.inference("你好") == "你好！你刚才说：你好"
        assert fake.chat_requests[-1]["path"].endswith("/chat/completions")
    assert _cli_env_compare(tmp_path, dashscope, ernie)


def _cli_env_compare(tmp_path, dashscope, ernie):
    import os
    import subprocess
    import sys
    env = dict(os.environ, XEDULLM_HOME=str(tmp_path / "h"), XEDULLM_KEYRING="0",
               PYTHONIOENCODING="utf-8", COLUMNS="200", DASHSCOPE_API_KEY=KEY, QIANFAN_API_KEY=V2_KEY)
    for name in ("QIANFAN_AK", "ERNIE_API_KEY"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "-m", "xedullm", "compare", "你好",
                           "-p", f"qwen@{dashscope.compatible_base_url}", "-p", f"ernie@{ernie.v2_base_url}"],
                          capture_output=True, text=True, encoding="utf-8", env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("你刚才说：你好") == 2, proc.stdout
    assert V2_KEY not in proc.stdout + proc.stderr
    return True


# -- start-up text: the access code in force and where it came from -----------------------------
def test_serve_names_the_access_code_given_now_and_the_one_kept_from_the_last_lesson(teacher_fake, tmp_path):
    import httpx
    from conftest import TEACHER_KEY, serve_process

    base = ["-p", "deepseek", "--base-url", teacher_fake.base_url, "--host", "127.0.0.1", "--port", "0",
            "--data-dir", str(tmp_path)]
    env = {"DEEPSEEK_API_KEY": TEACHER_KEY, "PYTHONIOENCODING": "utf-8"}
    with serve_process(base + ["--access-code", "maths-42"], env, until="用量记录保存在") as (_, lines):
        text = "".join(lines)
        assert "访问码 / Access code: maths-42（本次启动时设置 / set by this start）" in text
    # next lesson: started without --access-code, the code saved last time stays on and is named
    with serve_process(base, env, until="用量记录保存在") as (_, lines):
        text = "".join(lines)
        assert "访问码 / Access code: maths-42（沿用上节课保存的访问码 / kept from the last lesson）" in text
        url = next(line for line in lines if line.startswith("Running on local URL:")).split()[-1]
        assert httpx.get(f"{url}/api/info").json()["access_code_required"] is True
        assert TEACHER_KEY not in text
    with serve_process(base[:-2] + ["--data-dir", str(tmp_path / "fresh")], env, until="用量记录保存在") as (_, lines):
        assert "Access code" not in "".join(lines)


# -- the key guide: both kinds of ERNIE key ---------------------------------------------------
def test_the_key_guide_explains_both_kinds_of_ernie_key(tmp_path):
    for lang, today, old in (("zh", "今天控制台给的是一个以 bce-v3/ 开头的 API Key", "API Key + Secret Key"),
                             ("en", "what the console gives today, one API Key starting with bce-v3/",
                              "API Key + Secret Key pair")):
        guide = Client.provider_info("ernie", lang=lang)["key_guide"]
        assert today in guide and old in guide
        assert "https://console.bce.baidu.com/iam/#/iam/apikey/list" in guide
    info = Client.provider_info("文心")
    assert info["api_forms"][0]["base_url"] == "https://qianfan.baidubce.com/v2"
    assert info["api_forms"][0]["needs_secret"] is False
    shown = _cli(tmp_path, "providers", "ernie").stdout
    assert "bce-v3/" in shown and "Secret Key pair" in shown and "https://qianfan.baidubce.com/v2" in shown
    table = _cli(tmp_path, "providers").stdout
    assert "not with a bce-v3/ key" in table


def test_the_admin_pages_key_alert_explains_both_kinds_of_ernie_key(ernie, tmp_path):
    import httpx
    from xedullm.server.app import ServerSettings, create_app
    from xedullm.testing import ServerThread

    client = Client("ernie", api_key="bce-v3/ALTAK-revoked/zzz", base_url=ernie.v2_base_url,
                    max_retries=0, verbose=False)
    app = create_app(client, settings=ServerSettings(data_dir=tmp_path, admin_password="pw-12345678"))
    try:
        with ServerThread(app) as server:
            answer = httpx.post(f"{server.url}/v1/chat/completions",
                                json={"model": "x", "messages": [{"role": "user", "content": "hi"}]})
            assert answer.status_code == 401
            from test_admin_page import teacher
            overview = teacher(server.url, password="pw-12345678").get("/admin/api/overview").json()
    finally:
        app.state.xedullm.classroom.close()
        client.close()
    [alert] = overview["alerts"]
    assert alert["kind"] == "upstream_auth"
    assert "bce-v3/" in alert["zh"] and "Secret Key" in alert["en"]
    assert "https://console.bce.baidu.com/iam/#/iam/apikey/list" in alert["message"]
    assert "ALTAK-revoked" not in str(overview)
