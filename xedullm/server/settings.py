"""Every classroom setting, declared once.

One row says what a setting is: its type and default, its help text, whether ``xedullm serve``
has a flag for it, whether the teacher may change it on the admin page (then it is kept in the
store, survives a restart, and every server on that store sees it), and whether it is secret.
Generated from this table: ``ServerSettings`` (the keywords of ``Client.run()``), the serve
flags, the admin page's validator, and what ``/api/info`` tells the page.

Adding a setting is one row here plus the code that uses it.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Tuple

from ..errors import ConfigurationError
from .api.limits import Limits


@dataclass(frozen=True)
class Setting:
    name: str
    type: type                    # int | float | bool | str | list (of str)
    default: Any
    zh: str                       # help text, Chinese first
    en: str
    flag: bool = True             # `xedullm serve --name-with-dashes`
    admin: bool = False           # the teacher may change it live (kept in the store)
    public: bool = False          # the student page may know it (/api/info)
    secret: bool = False          # never shown, logged or exported
    minimum: Optional[float] = None
    max_length: int = 200         # for str settings (list: all entries together)
    ascii_only: bool = False      # str sent in an HTTP header (browsers and SDKs send only ASCII there)

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")


SETTINGS: Tuple[Setting, ...] = (
    Setting("max_concurrent", int, 64, "同时发往服务商的请求数上限，其余排队",
            "upstream calls at once for the whole class; others wait in line", minimum=1),
    Setting("max_waiting", int, 256, "最多允许多少个请求排队等待", "requests allowed to wait in line", minimum=0),
    Setting("wait_timeout", float, 30.0, "请求最多排队多少秒，之后答复“繁忙”",
            "seconds a request may wait in line before 'busy'", minimum=0),
    Setting("data_dir", str, None, "用量记录、令牌和设置保存的目录",
            "where the usage ledger, tokens and settings live", max_length=4096),
    Setting("store", str, None, "课堂数据存放处的地址：sqlite:///路径（默认：数据目录里的 SQLite）",
            "where classroom state lives: sqlite:///path (default: SQLite in the data directory)",
            secret=True, max_length=4096),
    Setting("forwarded_allow_ips", str, None,
            "信任哪些反向代理（如 nginx）转发的客户端地址：逗号分隔的 IP；默认谁也不信",
            "proxies (e.g. nginx) whose X-Forwarded-For is trusted: comma-separated IPs; default none"),
    # Changing the access code live ends the old one at once (the classroom reads it per request).
    Setting("access_code", str, None, "课堂访问码：学生在网页输入，程序作 api_key",
            "class access code: students enter it on the page, programs pass it as api_key",
            admin=True, secret=True, ascii_only=True),
    # The old XEdu student client (xedu-python) cannot send an access code.
    Setting("allow_legacy_clients", bool, False, "有访问码时也让旧版 XEdu 客户端（xedu-python，发送不了访问码）使用",
            "let the old XEdu client (xedu-python, which cannot send an access code) in even with an access code"),
    Setting("admin_password", str, None, "老师管理页 /admin 的密码（不填则每次启动生成并显示）",
            "password for the teacher's /admin page (default: generated and shown at start)", secret=True),
    Setting("daily_budget", int, None, "全班每天最多用多少 token", "tokens per day for the whole class",
            admin=True, minimum=1),
    Setting("per_student_daily", int, None, "每位学生每天默认最多用多少 token",
            "default tokens per day per student", admin=True, minimum=1),
    Setting("max_answer_tokens", int, 2048, "每个回答最多多少 token（学生的 max_tokens 超过时按此截断）",
            "tokens one answer may use at most (a student's larger max_tokens is cut to this)",
            admin=True, minimum=16),
    Setting("max_per_caller", int, 4, "每位学生（令牌、浏览器或地址）同时最多几个回答",
            "answers one student (token, browser or address) may have running at once", admin=True, minimum=1),
    # Without tokens, a browser is a student only by an id this server issued (browser_ids.py).
    Setting("browser_ids_per_address", int, 5,
            "每个地址（一台电脑）每天最多领几个浏览器编号；全班共用一个出口地址（NAT）时调高，或发学生令牌",
            "browser ids one address (one computer) may get a day; raise it when the whole class shares one "
            "address (NAT), or hand out student tokens", admin=True, minimum=1),
    Setting("budget_wait", float, 30.0, "额度被进行中的回答占满时，新请求最多等多少秒",
            "seconds a request waits while the rest of the budget is held by answers still running",
            admin=True, minimum=0),
    Setting("read_timeout", float, 20.0, "一个请求（请求头和请求体）最多用多少秒发完，超时断开",
            "seconds a client may take to send a whole request (headers and body) before it is cut off",
            minimum=1),
    Setting("send_timeout", float, 30.0, "客户端多少秒不读取回答就断开它（释放上游的位置）",
            "seconds a client may leave the answer unread before it is cut off (freeing its upstream slot)",
            minimum=1),
    Setting("max_connections_per_address", int, 32, "每个地址最多同时打开多少个连接",
            "connections one address may have open at once", minimum=1),
    Setting("review", bool, False, "课堂回顾：保存对话内容，只在管理页可见（学生页面会提示）",
            "classroom review: keep conversation text, visible only on the admin page (the student page says so)",
            admin=True, public=True),
    # Pictures of minors: the teacher decides whether they may be sent, and (apart) whether the
    # review keeps them; without that, stored conversations show only that a picture was sent.
    Setting("allow_pictures", bool, True, "允许学生在问题里附图片（需要能看图的模型，如 qwen-vl-max、glm-4v-flash）",
            "let students attach pictures to questions (needs a model that sees, e.g. qwen-vl-max, glm-4v-flash)",
            admin=True, public=True),
    Setting("store_pictures", bool, False, "课堂回顾也保存学生发的图片（默认只记“[图片]”，不存图片本身）",
            "the classroom review keeps the pictures students send too (default: only “[picture]”, never the picture)",
            admin=True),
    Setting("embedding_model", str, None, "/v1/embeddings 用的文本向量模型（默认：服务商常用的，如 text-embedding-v4、embedding-3）",
            "the embedding model /v1/embeddings uses (default: the provider's usual one, e.g. text-embedding-v4, "
            "embedding-3)", admin=True),
    Setting("require_name", bool, False, "学生先填写名字或座号，管理页按名字显示",
            "students give a name or seat number first; the admin page shows names", admin=True, public=True),
    Setting("paused", bool, False, "暂停课堂：学生的请求先不回答，直到老师继续",
            "pause the class: students' requests are not answered until the teacher resumes",
            admin=True, public=True),
    # Columns are Clients built at start (keys, local model), so this is a start-up flag only.
    Setting("compare", str, None,
            "多模型对比：学生一次问老师选的几个模型，逗号分隔的 PROVIDER[:MODEL][@BASE_URL]，如 deepseek,qwen,local",
            "compare mode: students ask the teacher's chosen models at once; comma-separated "
            "PROVIDER[:MODEL][@BASE_URL], e.g. deepseek,qwen,local", max_length=2000),
    # Read once at start (a bad file stops the server with a clear message, not mid-lesson).
    Setting("blocked_words", str, None, "屏蔽词文件（UTF-8，每行一个词或短语）：含这些词的问题被拒绝，回答里的被遮住",
            "blocked-words file (UTF-8, one word or phrase a line): questions with one are refused, answers masked",
            max_length=4096),
    Setting("builtin_blocked_words", bool, False, "同时使用内置的一小份屏蔽词（粗口和成人内容）",
            "also use the small built-in list of blocked words (crude insults and adult terms)"),
    # The model and the system prompt come from the Client (`-m`, `--system`, set_system());
    # the teacher can change both live.
    Setting("model", str, None, "模型名", "model id", flag=False, admin=True, public=True),
    Setting("system_prompt", str, None, "系统提示词，总在学生的消息之前",
            "system prompt, always before the students' messages", flag=False, admin=True, public=True,
            max_length=20000),
    # So do the fallbacks (`--fallback`, Client(fallback=...)); a list the teacher saves is used by
    # every server on the store (classroom/fallback_list.py). [] is kept too: no fallback.
    Setting("fallback", list, None,
            "备用服务商：主服务商连不上、太忙或余额用完时按顺序改用，每项写作 PROVIDER[:MODEL][@BASE_URL]，如 qwen、local",
            "fallbacks, tried in order when the provider is down, busy or out of balance; each written "
            "PROVIDER[:MODEL][@BASE_URL], e.g. qwen, local", flag=False, admin=True, max_length=2000),
)
BY_NAME: Dict[str, Setting] = {s.name: s for s in SETTINGS}
ADMIN_EDITABLE = tuple(s.name for s in SETTINGS if s.admin)
PUBLIC = tuple(s.name for s in SETTINGS if s.public)
# Settings the Client carries (``-m``, ``--system``, ``--fallback``), so not run() keywords.
FROM_CLIENT = ("model", "system_prompt", "fallback")

# How the server is put together, besides the settings: given in code (tests, embedding apps).
_WIRING = [
    ("limits", Limits, dataclasses.field(default_factory=Limits)),   # body size, message count, content length
    ("policy", Any, dataclasses.field(default=None)),      # default: open, or classroom controls
    ("ledger", Any, dataclasses.field(default=None)),      # default: none, or the store's ledger
    # The Clients of compare mode's columns (Client.run builds them from ``compare``).
    ("compare_clients", Tuple[Any, ...], dataclasses.field(default=(), repr=False)),
    # Log lines never show the client's keys, the access code or the admin password; list any
    # other secret here.
    ("secrets", Tuple[str, ...], dataclasses.field(default=(), repr=False)),
]

# An admin setting left at None was not given for this run: the value kept in the store (or
# the row's default) applies, so a restart does not undo what the teacher changed on the page.
ServerSettings = dataclasses.make_dataclass(
    "ServerSettings",
    [(s.name, Optional[s.type], dataclasses.field(default=None if s.admin else s.default, repr=not s.secret))
     for s in SETTINGS if s.name not in FROM_CLIENT] + _WIRING,
)
ServerSettings.__module__ = __name__
ServerSettings.__doc__ = "What Client.run(**options) and create_app(settings=...) take; see SETTINGS."
RUN_OPTIONS = ", ".join(f.name for f in dataclasses.fields(ServerSettings))


def server_settings(**options: Any) -> "ServerSettings":
    """``ServerSettings(**options)`` with a bilingual error naming an unknown option."""
    known = {f.name for f in dataclasses.fields(ServerSettings)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigurationError(
            f"run() 不认识这个参数：{', '.join(unknown)}。可用：{RUN_OPTIONS}。/ "
            f"run() got an unknown option: {', '.join(unknown)}. Available: {RUN_OPTIONS}.")
    for name, value in options.items():
        if name in BY_NAME and value is not None:
            options[name] = check(name, value)
    return ServerSettings(**options)


def check(name: str, value: Any) -> Any:
    """``value`` checked against the setting's row (None means 'not set' / 'no limit')."""
    setting = BY_NAME[name]
    if value is not None and setting.type is list:
        return _checked_list(setting, value)
    if value is None or (value == "" and setting.type is not str):
        return None
    kind = setting.type
    ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if kind is float and ok and not math.isfinite(value):
        ok = False
    if ok and setting.minimum is not None and value < setting.minimum:
        ok = False
    if ok and kind is str:
        value = value.strip()
        ok = len(value) <= setting.max_length and (
            not setting.ascii_only or all(" " < c <= "~" for c in value))
        if not value:
            return None
    if not ok:
        raise _wrong(setting, value)
    return value


def _wrong(setting: Setting, value: Any) -> ConfigurationError:
    zh, en = _expected(setting)
    shown = _shown(setting, value)
    return ConfigurationError(f"设置 {setting.name} 的值不对（{zh}），收到 {shown}。/ "
                              f"Setting {setting.name} must be {en}; got {shown}.")


def _checked_list(setting: Setting, value: Any) -> List[str]:
    """A list of texts, each stripped, empty ones dropped; one text is split at commas and lines
    (what a text box gives). ``[]`` stays a value of its own: the teacher chose none."""
    if isinstance(value, str):
        value = value.replace("\n", ",").split(",")
    ok = isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value)
    items = [item.strip() for item in value if item.strip()] if ok else []
    if not ok or len(", ".join(items)) > setting.max_length:
        raise _wrong(setting, value)
    return items


def _expected(setting: Setting) -> Tuple[str, str]:
    if setting.type is list:
        return (f"应是文字的列表（或用逗号分隔的文字），合计不超过 {setting.max_length} 字",
                f"a list of texts (or comma-separated text) of at most {setting.max_length} characters in all")
    if setting.type is bool:
        return "应是 true 或 false", "true or false"
    if setting.type is str and setting.ascii_only:
        return (f"应是不超过 {setting.max_length} 个英文字母、数字或符号，不能有中文和空格（浏览器和程序只能这样发送它），例如 math42",
                f"at most {setting.max_length} ASCII letters, digits or symbols without spaces (browsers and "
                f"programs can send only those), e.g. math42")
    if setting.type is str:
        return f"应是不超过 {setting.max_length} 字的文字", f"text of at most {setting.max_length} characters"
    low = "" if setting.minimum is None else f"，至少 {setting.minimum:g}"
    low_en = "" if setting.minimum is None else f" of at least {setting.minimum:g}"
    word = ("整数", "a whole number") if setting.type is int else ("数", "a number")
    return f"应是{word[0]}{low}", f"{word[1]}{low_en}"


def _shown(setting: Setting, value: Any) -> str:
    return "***" if setting.secret else repr(value)[:60]


def admin_changes(data: Any) -> Dict[str, Any]:
    """The checked changes of an admin settings request; unknown or read-only keys are an error."""
    if not isinstance(data, dict):
        raise ConfigurationError("设置应是 JSON 对象。/ Settings must be a JSON object.")
    unknown = sorted(k for k in data if k not in ADMIN_EDITABLE)
    if unknown:
        raise ConfigurationError(
            f"这些设置不存在或不能在管理页修改：{', '.join(map(str, unknown))}。可改：{', '.join(ADMIN_EDITABLE)}。/ "
            f"Unknown or read-only settings: {', '.join(map(str, unknown))}. Editable: {', '.join(ADMIN_EDITABLE)}.")
    return {name: check(name, value) for name, value in data.items()}


def add_serve_flags(parser: Any) -> None:
    """One ``xedullm serve`` flag per setting that has one."""
    for setting in SETTINGS:
        if not setting.flag:
            continue
        help_text = f"{setting.zh} / {setting.en}"
        if setting.type is bool:
            parser.add_argument(setting.option, dest=setting.name, action="store_true", default=None,
                                help=help_text)
            continue
        metavar = {int: "N", float: "SECONDS", str: setting.name.upper().split("_")[-1]}[setting.type]
        parser.add_argument(setting.option, dest=setting.name, type=_arg_type(setting), default=None,
                            metavar=metavar, help=help_text)


def _arg_type(setting: Setting):
    import argparse

    def parse(text: str) -> Any:
        try:
            value = setting.type(text) if setting.type is not str else text
            return check(setting.name, value)
        except (ValueError, ConfigurationError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = setting.type.__name__
    return parse


def serve_options(args: Any) -> Dict[str, Any]:
    """The settings given on the command line (flags left out stay at their defaults)."""
    return {s.name: getattr(args, s.name) for s in SETTINGS if s.flag and getattr(args, s.name, None) is not None}


def encode(name: str, value: Any) -> Optional[str]:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def decode(name: str, raw: Optional[str]) -> Any:
    if raw is None:
        return None
    try:
        return check(name, json.loads(raw))
    except (ValueError, ConfigurationError):
        return BY_NAME[name].default  # a value written by another version: ignore it, say nothing


def secret_values(settings: "ServerSettings") -> Iterable[str]:
    return [getattr(settings, s.name) for s in SETTINGS
            if s.secret and hasattr(settings, s.name) and getattr(settings, s.name)]
