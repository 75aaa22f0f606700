"""Catalog lookups and the Client's construction and validation (no network involved)."""
import pytest

import xedullm
from xedullm import BadRequestError, Client, ConfigurationError
from xedullm.catalog import PROVIDERS, find_provider

SECRET = "sk-test-0123456789abcdefSECRET"


def test_support_provider_matches_xeduLLM_exactly_first():
    assert Client.support_provider()[:6] == ["openrouter", "moonshot", "deepseek", "glm", "ernie", "qwen"]
    assert Client.support_provider(lang="zh")[:6] == [
        "openrouter", "月之暗面-Kimi", "幻方-深度求索", "智谱-智谱清言", "百度-文心一言", "阿里-通义千问"]
    assert Client.support_provider("zh") == Client.support_provider(lang="zh")


def test_support_provider_rejects_other_languages():
    with pytest.raises(ValueError, match="'en'.*'zh'"):
        Client.support_provider("fr")


@pytest.mark.parametrize("name", ["deepseek", "幻方-深度求索", "幻方", "深度求索", "DeepSeek", "DEEPSEEK"])
def test_provider_aliases(name, capsys):
    assert Client(provider=name, api_key=SECRET).provider.id == "deepseek"
    assert capsys.readouterr().out.strip() == "|| Selected provider: deepseek || Current model: deepseek-chat ||"


@pytest.mark.parametrize("name,expected", [("Kimi", "moonshot"), ("月之暗面", "moonshot"), ("智谱清言", "glm"),
                                           ("文心一言", "ernie"), ("通义千问", "qwen"), ("阿里", "qwen"),
                                           ("OpenRouter", "openrouter")])
def test_more_aliases(name, expected):
    assert xedullm.catalog.find_provider(name).id == expected


def test_unknown_provider_lists_choices_and_suggests():
    with pytest.raises(ConfigurationError) as info:
        Client(provider="deepsek", api_key=SECRET)
    assert isinstance(info.value, ValueError)
    assert "deepseek" in str(info.value) and "Did you mean" in str(info.value)


def test_provider_info_has_key_guide_in_both_languages():
    zh = Client.provider_info("幻方")
    en = Client.provider_info("deepseek", lang="en")
    assert zh["key_url"] == "https://platform.deepseek.com/api_keys"
    assert "platform.deepseek.com/api_keys" in zh["key_guide"] and "获取" in zh["key_guide"]
    assert en["key_guide"].startswith("DeepSeek: get a key")
    assert zh["key_env"] == ["DEEPSEEK_API_KEY"]


def test_catalog_key_pages_from_the_issue():
    urls = {p.id: p.key_url for p in PROVIDERS}
    assert urls["qwen"] == "https://dashscope.console.aliyun.com/apiKey"
    assert urls["openrouter"] == "https://openrouter.ai/settings/keys"
    assert urls["moonshot"] == "https://platform.moonshot.cn/console/api-keys"
    assert urls["glm"] == "https://open.bigmodel.cn/usercenter/apikeys"
    # today's console makes ERNIE's one bce-v3/ key on the IAM API Key page (issue 26)
    assert urls["ernie"] == "https://console.bce.baidu.com/iam/#/iam/apikey/list"


def test_defaults_are_live_models_and_xeduLLM_defaults_stay_accepted():
    # Where XEduLLM's default was retired (qwen2-1.5b-instruct) or comes and goes (a single
    # :free model), the default is one the provider documents today (catalog.py says where).
    defaults = {p.id: p.default_model for p in PROVIDERS}
    assert defaults == {"openrouter": "openrouter/free", "moonshot": "moonshot-v1-8k",
                        "deepseek": "deepseek-chat", "glm": "glm-4.7-flash",
                        "ernie": "ERNIE_speed_8k", "qwen": "qwen-plus",
                        "local": "SmolLM2-135M-Instruct"}
    old = {"openrouter": "mistralai/mistral-7b-instruct:free", "moonshot": "moonshot-v1-8k",
           "glm": "glm-4", "ernie": "ERNIE_speed_8k", "qwen": "qwen2-1.5b-instruct"}
    for provider, model in old.items():
        assert model in find_provider(provider).models
    # the retired Qwen default is sent as today's default
    assert find_provider("qwen").wire_model("qwen2-1.5b-instruct") == "qwen-plus"


def test_verbose_false_is_silent_and_repr_masks_key(capsys):
    c = Client(provider="qwen", api_key=SECRET, model="qwen-long", verbose=False)
    assert capsys.readouterr().out == ""
    assert SECRET not in repr(c) and "sk-te" in repr(c)


def test_banners_for_base_url_and_xedu_url(capsys):
    Client(api_key=SECRET, base_url="http://127.0.0.1:9/v1", model="internlm/internlm2_5-20b-chat")
    Client(xedu_url="http://10.1.48.23:7863")
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "|| Selected base URL: http://127.0.0.1:9/v1 || Current model: internlm/internlm2_5-20b-chat ||"
    assert out[1] == "|| Selected base URL: http://10.1.48.23:7863 ||"


def test_constructor_does_no_network_io():
    # Nothing listens on port 9 (discard); a constructor that connected would fail.
    Client(provider="ernie", api_key="ak", secret_key="sk", base_url="http://127.0.0.1:9", verbose=False)


def test_ernie_without_secret_key_explains_how_to_get_one(monkeypatch, tmp_path):
    monkeypatch.setenv("XEDULLM_HOME", str(tmp_path))
    monkeypatch.setenv("XEDULLM_KEYRING", "0")
    for name in ("QIANFAN_AK", "QIANFAN_SK", "ERNIE_API_KEY", "ERNIE_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError) as info:
        Client(provider="ernie", api_key="only-the-ak", verbose=False)
    assert "console.bce.baidu.com" in str(info.value)


def test_no_provider_means_local():
    assert Client(verbose=False).provider.id == "local"


def test_key_without_provider_is_a_configuration_error():
    with pytest.raises(ConfigurationError):
        Client(api_key=SECRET, verbose=False)


@pytest.mark.parametrize("bad", [[], [{"role": "robot", "content": "x"}], [{"content": "x"}],
                                 [{"role": "user", "content": 3}], ["hi"], 42,
                                 [{"role": "system", "content": "only system"}]])
def test_inference_input_is_validated(bad):
    c = Client(provider="deepseek", api_key=SECRET, base_url="http://127.0.0.1:9", verbose=False)
    with pytest.raises(BadRequestError):
        c.inference(bad)


@pytest.mark.parametrize("kwargs", [{"temperature": -0.1}, {"temperature": 2.5}, {"top_p": 1.5},
                                    {"temperature": "hot"}])
def test_sampling_parameters_are_validated(kwargs):
    c = Client(provider="deepseek", api_key=SECRET, base_url="http://127.0.0.1:9", verbose=False)
    with pytest.raises(ConfigurationError):
        c.inference("hi", **kwargs)


def test_system_prompt_goes_first():
    c = Client(provider="deepseek", api_key=SECRET, verbose=False)
    c.set_system("你是小学老师")
    req = c.build_request([{"role": "user", "content": "1+1?"}])
    assert req.messages[0] == {"role": "system", "content": "你是小学老师"}
    c.set_system(None)
    assert c.build_request("x").messages == [{"role": "user", "content": "x"}]


def test_compat_shim_is_the_same_class():
    from XEdu.LLM import Client as Compat

    assert Compat is Client
    import importlib.util

    assert importlib.util.find_spec("XEdu").origin in (None, "namespace")  # no XEdu/__init__.py


@pytest.mark.parametrize("message,wrong", [
    ({"role": "assistant", "content": None}, "content"),                      # no text and no tool calls
    ({"role": "tool", "content": "晴"}, "tool_call_id"),
    ({"role": "user", "content": None, "tool_calls": [{"id": "c"}]}, "tool_calls"),
    ({"role": "robot", "content": "x"}, "role"),
])
def test_tool_turns_are_checked_before_anything_is_sent(message, wrong):
    bot = Client(provider="deepseek", api_key="sk-x", verbose=False)
    with pytest.raises(BadRequestError, match=wrong):
        bot.build_request([{"role": "user", "content": "天气？"}, message])
    ok = [{"role": "user", "content": "天气？"},
          {"role": "assistant", "content": None, "tool_calls": [{"id": "c", "type": "function",
                                                                 "function": {"name": "f", "arguments": "{}"}}]},
          {"role": "tool", "tool_call_id": "c", "content": "晴"}]
    assert bot.build_request(ok).messages == ok
