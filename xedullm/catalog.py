"""Providers as data.

One row per provider: names, where its API lives, which wire protocol it speaks, its
models, and the key guide a beginner needs ("where do I get a key?"). Adding an
OpenAI-compatible provider is one more row here, no code.

Free-quota notes describe what the providers' consoles offered new accounts when written;
they change often, so every note tells the user to check the console.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Tuple


@dataclass(frozen=True)
class Provider:
    id: str
    label_zh: str                      # XEduLLM's Chinese label, e.g. '幻方-深度求索'
    label_en: str
    protocol: str                      # 'openai' | 'dashscope' | 'ernie' | 'local'
    base_url: str                      # root the protocol adapter appends its paths to
    default_model: str
    models: Tuple[str, ...]
    key_url: str                       # where a key is created / deleted
    key_steps_zh: str
    key_steps_en: str
    free_quota_zh: str
    free_quota_en: str
    aliases: Tuple[str, ...] = ()
    key_env: Tuple[str, ...] = ()      # environment variables holding the API key, first wins
    secret_env: Tuple[str, ...] = ()   # ... and the secret key, for providers that need one
    needs_key: bool = True
    needs_secret: bool = False
    has_models_endpoint: bool = False  # GET {base}/models lists models live
    key_prefix: Optional[str] = None   # expected key shape, for a friendly warning only
    # Old model names XEduLLM accepted, mapped to what the wire protocol wants today.
    model_aliases: Dict[str, str] = field(default_factory=dict)
    # GLM's SDK keeps temperature/top_p inside the open interval (0, 1); so do we.
    sampling_open_interval: bool = False
    # Sent with every request (attribution only, never required).
    extra_headers: Dict[str, str] = field(default_factory=dict)
    # HTTP statuses this provider gives its own meaning, as an error kind the adapter knows.
    status_meanings: Dict[int, str] = field(default_factory=dict)
    # A second API form of the provider with the same id (API_FORMS below): its name, and what
    # chooses it — a key starting with ``form_key_prefix`` or a base URL (with a final '/')
    # containing one of ``form_url_markers``.
    form: Optional[str] = None
    form_key_prefix: Optional[str] = None
    form_url_markers: Tuple[str, ...] = ()
    # Optional headers filled from the environment when set: {header: environment variable}.
    header_env: Dict[str, str] = field(default_factory=dict)
    # For a provider with more than one kind of key (ERNIE): what each kind is and which one the
    # console gives today. Shown with the key guide and in the admin page's key alert.
    key_kinds_zh: str = ""
    key_kinds_en: str = ""

    def label(self, lang: str = "en") -> str:
        return self.label_zh if lang == "zh" else self.id

    def wire_model(self, model: str) -> str:
        return self.model_aliases.get(model, model)

    def key_guide(self, lang: str = "zh") -> str:
        """A short, complete answer to 'how do I get a key for this provider?'."""
        if lang == "en":
            kinds = f" {self.key_kinds_en}" if self.key_kinds_en else ""
            return (f"{self.label_en}: get a key at {self.key_url} — {self.key_steps_en}{kinds} "
                    f"Free quota: {self.free_quota_en}")
        return (f"{self.label_zh}：在 {self.key_url} 获取密钥——{self.key_steps_zh}{self.key_kinds_zh}"
                f"免费额度：{self.free_quota_zh}")

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "label_zh": self.label_zh,
            "label_en": self.label_en,
            "aliases": list(self.aliases),
            "protocol": self.protocol,
            "base_url": self.base_url,
            "default_model": self.default_model,
            "models": list(self.models),
            "key_url": self.key_url,
            "key_steps_zh": self.key_steps_zh,
            "key_steps_en": self.key_steps_en,
            "free_quota_zh": self.free_quota_zh,
            "free_quota_en": self.free_quota_en,
            "needs_key": self.needs_key,
            "needs_secret": self.needs_secret,
            "key_env": list(self.key_env),
            "secret_env": list(self.secret_env),
            "key_kinds_zh": self.key_kinds_zh,
            "key_kinds_en": self.key_kinds_en,
            "api_forms": [{"form": f.form, "base_url": f.base_url, "default_model": f.default_model,
                           "key_prefix": f.form_key_prefix, "needs_secret": f.needs_secret,
                           "key_url": f.key_url}
                          for f in API_FORMS if f.id == self.id and f is not self],
        }


# Models XEduLLM's programs name that Alibaba has retired (qwen2-1.5b-instruct on 2026-03-30, its
# old default; qwen-turbo on 2026-10-10; the Qwen 1 chat models long before), sent as the default
# instead so those programs keep answering (help.aliyun.com/document_detail/2712457.html and Model
# Studio's notice of 2026-10-10, read 2026-12-07).
_QWEN_RETIRED = {"qwen2-1.5b-instruct": "qwen-plus", "qwen-turbo": "qwen-plus",
                 "qwen-1.8b-chat": "qwen-plus"}

_CHECK_CONSOLE_ZH = "以控制台显示为准。"
_CHECK_CONSOLE_EN = "Check the console for the current offer."

PROVIDERS: Tuple[Provider, ...] = (
    Provider(
        id="openrouter", label_zh="openrouter", label_en="OpenRouter", protocol="openai",
        base_url="https://openrouter.ai/api/v1",
        # OpenRouter's Free Models Router: one stable id that always picks a free model that is up
        # (https://openrouter.ai/docs/guides/routing/routers/free-models-router, read 2026-12-07);
        # single :free models come and go. XEduLLM's default stays accepted.
        default_model="openrouter/free",
        models=("openrouter/free", "mistralai/mistral-7b-instruct:free", "deepseek/deepseek-chat-v3-0324:free",
                "qwen/qwen-2.5-7b-instruct:free", "meta-llama/llama-3.2-3b-instruct:free"),
        key_url="https://openrouter.ai/settings/keys",
        key_steps_zh="注册并登录 OpenRouter，打开 Keys 页面，点击 Create Key，复制以 sk-or-v1- 开头的密钥。",
        key_steps_en="Sign up and log in, open Keys, click Create Key and copy the key starting with sk-or-v1-.",
        free_quota_zh="模型名以 :free 结尾的模型可免费调用（有每日次数限制）；" + _CHECK_CONSOLE_ZH,
        free_quota_en="Models whose id ends in :free cost nothing (with a daily request limit). " + _CHECK_CONSOLE_EN,
        aliases=("open router",), key_env=("OPENROUTER_API_KEY",), has_models_endpoint=True,
        key_prefix="sk-or-",
        extra_headers={"X-Title": "xedullm"},
        status_meanings={403: "content_filter"},   # a moderation / guardrail block
    ),
    Provider(
        id="moonshot", label_zh="月之暗面-Kimi", label_en="Moonshot AI (Kimi)", protocol="openai",
        # Still listed among Kimi's v1 models and the cheapest of them (Kimi pricing "chat-v1", as
        # listed by third parties on 2026-12-07; platform.moonshot.cn itself was not readable here).
        base_url="https://api.moonshot.cn/v1", default_model="moonshot-v1-8k",
        models=("moonshot-v1-8k", "moonshot-v1-32k", "moonshot-v1-128k", "kimi-latest"),
        key_url="https://platform.moonshot.cn/console/api-keys",
        key_steps_zh="用手机号登录 Kimi 开放平台，进入「API Key 管理」，点击「新建」，复制以 sk- 开头的密钥（只显示一次）。",
        key_steps_en="Log in to the Kimi open platform, open API Key management, click Create and copy the sk- key (shown once).",
        free_quota_zh="新用户注册通常赠送少量体验金；" + _CHECK_CONSOLE_ZH,
        free_quota_en="New accounts usually receive a small trial credit. " + _CHECK_CONSOLE_EN,
        aliases=("月之暗面", "kimi", "moonshot ai", "moonshotai"), key_env=("MOONSHOT_API_KEY",),
        has_models_endpoint=True, key_prefix="sk-",
    ),
    Provider(
        id="deepseek", label_zh="幻方-深度求索", label_en="DeepSeek", protocol="openai",
        # DeepSeek's own docs name deepseek-chat (https://api-docs.deepseek.com, protocols.md 1.1).
        base_url="https://api.deepseek.com", default_model="deepseek-chat",
        models=("deepseek-chat", "deepseek-reasoner"),
        key_url="https://platform.deepseek.com/api_keys",
        key_steps_zh="登录 DeepSeek 开放平台，进入「API keys」，点击「创建 API key」，复制以 sk- 开头的密钥（只显示一次）。",
        key_steps_en="Log in to the DeepSeek platform, open API keys, click Create API key and copy the sk- key (shown once).",
        free_quota_zh="按量付费，需要先充值；新用户偶有赠送额度，" + _CHECK_CONSOLE_ZH,
        free_quota_en="Pay as you go; top up first (new accounts sometimes get a grant). " + _CHECK_CONSOLE_EN,
        aliases=("幻方", "深度求索", "deep seek"), key_env=("DEEPSEEK_API_KEY",),
        has_models_endpoint=True, key_prefix="sk-",
    ),
    Provider(
        id="glm", label_zh="智谱-智谱清言", label_en="Zhipu AI (GLM)", protocol="openai",
        # Zhipu lists GLM-4.7-Flash among its free models; GLM-4.5-Flash retired on 2026-01-30 and is
        # routed to it (https://docs.bigmodel.cn/cn/guide/models/free/glm-4.7-flash and
        # .../free/glm-4.5-flash, read 2026-12-07). XEduLLM's glm-4 is still passed on as asked.
        base_url="https://open.bigmodel.cn/api/paas/v4", default_model="glm-4.7-flash",
        models=("glm-4.7-flash", "glm-4", "glm-4-flash", "glm-4-plus", "glm-4-air", "glm-3-turbo"),
        key_url="https://open.bigmodel.cn/usercenter/apikeys",
        key_steps_zh="登录智谱开放平台，进入「API Keys」，点击「添加新的 API Key」，复制形如 id.secret 的密钥。",
        key_steps_en="Log in to the Zhipu open platform, open API Keys, add a new key and copy it (it looks like id.secret).",
        free_quota_zh="新用户注册赠送免费 tokens，glm-4-flash 通常可免费调用；" + _CHECK_CONSOLE_ZH,
        free_quota_en="New accounts get free tokens and glm-4-flash is usually free. " + _CHECK_CONSOLE_EN,
        aliases=("智谱", "智谱清言", "zhipu", "zhipuai", "chatglm", "bigmodel"),
        key_env=("ZHIPUAI_API_KEY", "ZHIPU_API_KEY", "GLM_API_KEY"),
        sampling_open_interval=True,
    ),
    Provider(
        id="ernie", label_zh="百度-文心一言", label_en="Baidu ERNIE (Qianfan)", protocol="ernie",
        base_url="https://aip.baidubce.com", default_model="ERNIE_speed_8k",
        models=("ERNIE_speed_8k", "ERNIE_speed_128k", "ERNIE_lite_8k_0308", "ERNIE_lite_8k_0922",
                "ernie-tiny-8k", "ernie-3.5-8k", "ernie-4.0-8k"),
        # Where today's console makes a key (the bce-v3/ kind); the old AK/SK pair lived under
        # https://console.bce.baidu.com/qianfan/ais/console/applicationConsole/application.
        key_url="https://console.bce.baidu.com/iam/#/iam/apikey/list",
        # What the console gives today: one bce-v3/ API Key under 头像 → 安全认证 → API Key (Baidu
        # "OpenAI接口兼容介绍", https://cloud.baidu.com/doc/WENXINWORKSHOP/s/2m3fihw8s, read 2026-12-07).
        key_steps_zh="登录百度智能云控制台，点击头像 →「安全认证」→「API Key」，创建并复制以 bce-v3/ 开头的 API Key；"
                     "只需这一个，不需要 Secret Key。",
        key_steps_en="Log in to the Baidu AI Cloud console, click your avatar → Security → API Key, create one "
                     "and copy the API Key starting with bce-v3/; that key alone is enough, no Secret Key.",
        key_kinds_zh="文心有两种密钥：① 今天控制台给的是一个以 bce-v3/ 开头的 API Key（千帆 v2 接口，只填 api_key）；"
                     "② 以前「应用接入」里应用的 API Key + Secret Key 两个（v1 接口，XEduLLM 的写法，"
                     "api_key 和 secret_key 都要填），也仍然可以用。",
        key_kinds_en="ERNIE has two kinds of key: (1) what the console gives today, one API Key starting with bce-v3/ "
                     "(the Qianfan v2 API; pass api_key only); (2) an older application's API Key + Secret Key pair "
                     "from Application access (the v1 API, as XEduLLM used; pass both api_key and secret_key), which "
                     "still works.",
        free_quota_zh="ERNIE Speed / Lite / Tiny 系列曾免费开放；" + _CHECK_CONSOLE_ZH,
        free_quota_en="The ERNIE Speed / Lite / Tiny models have been free of charge. " + _CHECK_CONSOLE_EN,
        aliases=("百度", "文心一言", "文心", "baidu", "qianfan", "千帆", "wenxin"),
        key_env=("QIANFAN_AK", "ERNIE_API_KEY", "QIANFAN_API_KEY"),
        secret_env=("QIANFAN_SK", "ERNIE_SECRET_KEY"),
        needs_secret=True,
        # XEduLLM's names and the v1 endpoint each one is served at (protocols.md 3.2).
        model_aliases={
            "ERNIE_speed_8k": "ernie_speed",
            "ERNIE_speed_128k": "ernie-speed-128k",
            "ERNIE_lite_8k_0308": "ernie-lite-8k",
            "ERNIE_lite_8k_0922": "eb-instant",
            "ernie-speed-8k": "ernie_speed",
            "ernie-3.5-8k": "completions",
            "ernie-4.0-8k": "completions_pro",
        },
    ),
    Provider(
        id="qwen", label_zh="阿里-通义千问", label_en="Alibaba Qwen (DashScope)", protocol="dashscope",
        base_url="https://dashscope.aliyuncs.com/api/v1",
        # qwen-plus: the stable mainline "效果、速度、成本均衡" model of Model Studio's model list
        # (https://help.aliyun.com/zh/model-studio/models, read 2026-12-07); mainline models get
        # three months' notice before retirement (https://help.aliyun.com/document_detail/2712457.html).
        default_model="qwen-plus",
        models=("qwen-plus", "qwen-max", "qwen-long", "qwen2-1.5b-instruct", "qwen-turbo",
                "qwen-1.8b-chat"),
        key_url="https://dashscope.console.aliyun.com/apiKey",
        key_steps_zh="登录阿里云百炼（DashScope）控制台，开通服务后进入「API-KEY 管理」，点击「创建新的 API-KEY」，复制以 sk- 开头的密钥。",
        key_steps_en="Log in to the Alibaba Model Studio (DashScope) console, activate the service, open API-KEY management, create a key and copy it (starts with sk-).",
        free_quota_zh="开通后每个模型通常有一定量的免费 tokens；" + _CHECK_CONSOLE_ZH,
        free_quota_en="After activation each model usually comes with free tokens. " + _CHECK_CONSOLE_EN,
        aliases=("阿里", "通义千问", "通义", "千问", "alibaba", "aliyun", "dashscope", "tongyi", "bailian", "百炼"),
        key_env=("DASHSCOPE_API_KEY", "QWEN_API_KEY"), has_models_endpoint=True, key_prefix="sk-",
        model_aliases=_QWEN_RETIRED,
    ),
    Provider(
        id="local", label_zh="本地模型", label_en="Local model (offline)", protocol="local",
        base_url="", default_model="SmolLM2-135M-Instruct",
        models=("SmolLM2-135M-Instruct",),
        key_url="", key_steps_zh="不需要密钥。", key_steps_en="No key needed.",
        free_quota_zh="完全免费，离线运行在本机 CPU 上。",
        free_quota_en="Free; runs offline on this computer's CPU.",
        aliases=("本地", "离线", "offline", "smollm", "smollm2"), needs_key=False,
    ),
)

_MAIN = {p.id: p for p in PROVIDERS}

# A provider's second API form: a row of its own that picks an existing adapter, chosen by the
# key's shape or the address (``api_form``). Not listed by support_provider(); same id, key store
# and environment variables as the provider's main row.
API_FORMS: Tuple[Provider, ...] = (
    # Qianfan v2, OpenAI-compatible, one bce-v3/ key (Baidu "OpenAI接口兼容介绍",
    # https://cloud.baidu.com/doc/WENXINWORKSHOP/s/2m3fihw8s, read 2026-12-07; docs/qianfan_v2.md).
    replace(
        _MAIN["ernie"], form="qianfan-v2", form_key_prefix="bce-v3/",
        # https://qianfan.baidubce.com/v2, or a mirror / test double of it: ERNIE v1 lives at a host root.
        form_url_markers=("/v2/",), protocol="openai",
        base_url="https://qianfan.baidubce.com/v2",
        # The lower-case name of XEduLLM's default, in Baidu's v2 model table (protocols.md 4).
        default_model="ernie-speed-8k",
        models=("ernie-speed-8k", "ernie-speed-128k", "ernie-lite-8k", "ernie-tiny-8k",
                "ernie-3.5-8k", "ernie-4.0-8k", "ernie-4.0-turbo-8k"),
        needs_secret=False, key_prefix="bce-v3/",
        # XEduLLM's names as v2 names; ERNIE-Lite-8K-0922 has no v2 name, ernie-lite-8k is its line.
        model_aliases={"ERNIE_speed_8k": "ernie-speed-8k", "ERNIE_speed_128k": "ernie-speed-128k",
                       "ERNIE_lite_8k_0308": "ernie-lite-8k", "ERNIE_lite_8k_0922": "ernie-lite-8k"},
        header_env={"appid": "QIANFAN_APPID"},
    ),
    # DashScope's compatible mode, China and international (protocols.md 1.1).
    replace(
        _MAIN["qwen"], form="compatible-mode", form_url_markers=("/compatible-mode/",), protocol="openai",
        base_url="https://dashscope.aliyuncs.com/compatible-mode/v1",
    ),
)


def api_form(provider: Provider, base_url: Optional[str], api_key: Optional[str]) -> Provider:
    """The row for what this address or key speaks: one of ``provider``'s second forms when the
    base URL or the key's shape says so, else ``provider`` itself."""
    for form in API_FORMS:
        if form.id != provider.id:
            continue
        if base_url and any(m in base_url.rstrip("/") + "/" for m in form.form_url_markers):
            return form
        if api_key and form.form_key_prefix and api_key.startswith(form.form_key_prefix):
            return form
    return provider


def main_row(provider: Provider) -> Provider:
    """The provider's main row (itself, or the one a second form belongs to)."""
    return _MAIN.get(provider.id, provider)


# Not listed among the providers: what a bare ``base_url`` (any OpenAI-compatible server) is.
GENERIC_OPENAI = Provider(
    id="openai-compatible", label_zh="OpenAI 兼容服务", label_en="OpenAI-compatible", protocol="openai",
    base_url="", default_model="", models=(), key_url="",
    key_steps_zh="向该服务的管理员索取密钥。", key_steps_en="Ask the service's administrator for a key.",
    free_quota_zh="", free_quota_en="", key_env=("OPENAI_API_KEY",), needs_key=False,
)

LANGS = ("en", "zh")

_BY_ID = {p.id: p for p in PROVIDERS}


def support_provider(lang: str = "en") -> List[str]:
    if lang not in LANGS:
        raise _config_error(
            f"不支持的语言 lang={lang!r}，可选 'en' 或 'zh'。",
            f"Unsupported lang={lang!r}; use 'en' or 'zh'.",
        )
    return [p.label(lang) for p in PROVIDERS]


def _normalize(name: str) -> str:
    return "".join(name.lower().split()).replace("_", "-")


def _names(p: Provider) -> List[str]:
    return [p.id, p.label_zh, p.label_en, *p.aliases]


def find_provider(name: str) -> Provider:
    """Resolve an id, Chinese label, company or product name (any case) to a provider."""
    if not isinstance(name, str) or not name.strip():
        raise _config_error("provider 必须是非空字符串。", "provider must be a non-empty string.")
    wanted = _normalize(name)
    for p in PROVIDERS:
        if wanted in (_normalize(n) for n in _names(p)):
            return p
    # XEduLLM also accepted part of a Chinese label ('幻方' in '幻方-深度求索').
    partial = [p for p in PROVIDERS if any(wanted in _normalize(n) for n in _names(p)
                                           if not n.isascii())]
    if len(partial) == 1:
        return partial[0]
    import difflib  # only on this error path: keeps `import xedullm` fast

    choices = [n for p in PROVIDERS for n in (p.id, p.label_zh)]
    close = difflib.get_close_matches(wanted, [_normalize(n) for p in PROVIDERS for n in _names(p)], n=1)
    suggestion = ""
    if close:
        match = next(p for p in PROVIDERS if close[0] in (_normalize(n) for n in _names(p)))
        suggestion = f" 你是不是想用 / Did you mean: {match.id!r}?"
    raise _config_error(
        f"不认识的服务商 {name!r}。可选：{', '.join(dict.fromkeys(choices))}。",
        f"Unknown provider {name!r}. Choose one of the above.{suggestion}",
    )


def _config_error(zh: str, en: str):
    from .errors import ConfigurationError

    return ConfigurationError(f"{zh} / {en}")
