"""`xedullm providers [PROVIDER]`: the key guide for every provider, or one provider in full."""
from __future__ import annotations

from ..catalog import API_FORMS, PROVIDERS, Provider, api_form, find_provider
from ..errors import LLMError
from ..keys import mask_key, resolve_credentials
from .output import echo, fields, listing, t


def register(commands) -> None:
    parser = commands.add_parser(
        "providers",
        help="服务商列表和获取密钥的方法 / providers and how to get a key",
        description="不带参数列出全部服务商；给出名字显示一个服务商的详情。 / "
                    "Without an argument list all providers; with a name show one in full.",
    )
    parser.add_argument("provider", nargs="?",
                        help="服务商名字或别名，如 deepseek、幻方 / provider id or alias, e.g. deepseek")
    parser.set_defaults(func=run)


def run(args) -> int:
    if args.provider:
        show_one(find_provider(args.provider), args.lang)
    else:
        show_all(args.lang)
    return 0


def show_all(lang: str) -> None:
    rows = []
    for p in PROVIDERS:
        name = f"{p.id}\n{p.label_zh if lang == 'zh' else p.label_en}"
        if not p.needs_key:
            secret = t(lang, "不需要密钥", "no key needed")
        else:
            secret = t(lang, "是", "yes") if p.needs_secret else t(lang, "否", "no")
            if p.needs_secret and any(not f.needs_secret for f in API_FORMS if f.id == p.id):
                secret = t(lang, "bce-v3/ 密钥不需要；老的一对需要", "not with a bce-v3/ key; yes for the old pair")
        steps = t(lang, p.key_steps_zh + p.key_kinds_zh, " ".join(filter(None, (p.key_steps_en, p.key_kinds_en))))
        rows.append((name, p.key_url, steps,
                     t(lang, p.free_quota_zh, p.free_quota_en), secret))
    headers = (t(lang, "服务商", "Provider"), t(lang, "获取密钥", "Get a key at"),
               t(lang, "步骤", "Steps"), t(lang, "免费额度", "Free quota"),
               t(lang, "需要 Secret Key", "Needs secret key"))
    listing(headers, rows, title=t(lang, "去哪里获取密钥", "Where to get a key"), whole=(1,), sep=t(lang, "：", ": "))
    echo(t(lang, "保存密钥：xedullm key set <服务商>    查看详情：xedullm providers <服务商>",
           "Save a key: xedullm key set <provider>    Details: xedullm providers <provider>"))


def show_one(p: Provider, lang: str) -> None:
    env = ", ".join((*p.key_env, *p.secret_env))
    rows = [
        ("ID", p.id),
        (t(lang, "名称", "Name"), f"{p.label_zh} / {p.label_en}"),
        (t(lang, "别名", "Aliases"), ", ".join(p.aliases)),
        (t(lang, "接口地址", "Base URL"), p.base_url),
        (t(lang, "协议", "Protocol"), p.protocol),
        (t(lang, "默认模型", "Default model"), p.default_model),
        (t(lang, "模型", "Models"), ", ".join(p.models)),
        (t(lang, "环境变量", "Environment variables"), env),
        (t(lang, "获取密钥", "Get a key at"), p.key_url),
        (t(lang, "步骤", "Steps"), t(lang, p.key_steps_zh, p.key_steps_en)),
        *([(t(lang, "两种密钥", "Kinds of key"), t(lang, p.key_kinds_zh, p.key_kinds_en))] if p.key_kinds_zh else []),
        *[(t(lang, f"另一种接口 {f.form}", f"Other API {f.form}"),
           t(lang, f"{f.base_url}（默认模型 {f.default_model}；" + (f"{f.form_key_prefix} 开头的密钥或" if f.form_key_prefix else "")
             + "base_url 是这个地址时选用）",
             f"{f.base_url} (default model {f.default_model}; used with "
             + (f"a {f.form_key_prefix} key or " if f.form_key_prefix else "") + "this address)"))
          for f in API_FORMS if f.id == p.id],
        (t(lang, "免费额度", "Free quota"), t(lang, p.free_quota_zh, p.free_quota_en)),
        (t(lang, "已配置的密钥", "Configured key"), configured_key(p, lang)),
    ]
    fields(rows, title=f"{p.id} — {p.label_zh if lang == 'zh' else p.label_en}", whole=(3, 8),
           sep=t(lang, "：", ": "))


def configured_key(p: Provider, lang: str) -> str:
    from .keys import source_text

    if not p.needs_key:
        return t(lang, "不需要密钥", "no key needed")
    try:
        creds = resolve_credentials(p)
    except LLMError as exc:
        return str(exc)
    if not creds.api_key:
        return t(lang, f"未配置（运行 xedullm key set {p.id}）", f"none (run: xedullm key set {p.id})")
    shown = mask_key(creds.api_key)
    if api_form(p, None, creds.api_key).needs_secret:
        secret = mask_key(creds.secret_key) or t(lang, "缺少", "missing")
        shown += f"  Secret Key: {secret}"
    return f"{shown}  [{source_text(creds.source, lang)}]"
