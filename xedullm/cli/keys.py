"""`xedullm key set|list|remove|path|check|rotate`: keys handled without ever showing them."""
from __future__ import annotations

import getpass
import os
import sys
from typing import Optional, Tuple

from ..catalog import PROVIDERS, Provider, api_form, find_provider
from ..errors import ConfigurationError
from ..keys import clean_key, key_format_warning, mask_key, missing_key_error, redact, resolve_credentials
from ..keys.check import KeyCheck, check_key
from ..keys.store import open_store
from .output import echo, hold_secret, t, table, warn


def register(commands) -> None:
    key = commands.add_parser(
        "key", aliases=["keys"],
        help="保存、查看、检查、更换密钥 / save, list, check and rotate API keys",
        description="密钥保存在系统钥匙串或本机的私有文件里，永远只显示打码后的样子。 / "
                    "Keys live in the system keyring or a private local file and are only ever shown masked.",
    )
    key.set_defaults(func=lambda args: _usage(key))
    actions = key.add_subparsers(dest="key_action", metavar="ACTION")

    def action(name: str, help_text: str, func, *, provider: bool = True, stdin: bool = False,
               base_url: bool = False):
        parser = actions.add_parser(name, help=help_text, description=help_text)
        if provider:
            parser.add_argument("provider", help="服务商名字或别名 / provider id or alias")
        if stdin:
            parser.add_argument("--stdin", action="store_true",
                                help="从标准输入读取密钥（ERNIE：第二行是 Secret Key），供脚本使用 / "
                                     "read the key from stdin (ERNIE: secret key on line 2), for scripts")
        if base_url:
            parser.add_argument("--base-url", default=None,
                                help="改用这个地址检查（镜像、代理、测试服务器） / check against this address instead")
        parser.set_defaults(func=func)

    action("set", "保存一个服务商的密钥（输入时不显示） / save a provider's key (hidden input)", cmd_set,
           stdin=True)
    action("list", "列出已配置的密钥（打码）和来源 / list configured keys (masked) and where they come from",
           cmd_list, provider=False)
    action("remove", "删除本机保存的密钥 / delete a saved key from this computer", cmd_remove)
    action("path", "显示密钥保存在哪里 / show where keys are stored", cmd_path, provider=False)
    action("check", "检查密钥是否有效 / check whether a key works", cmd_check, base_url=True)
    action("rotate", "换一个新密钥（先验证新密钥再替换） / replace a key, verifying the new one first",
           cmd_rotate, stdin=True, base_url=True)


def _usage(parser) -> int:
    parser.print_help()
    return 2


def cmd_set(args) -> int:
    lang = args.lang
    p = _keyed_provider(args.provider)
    if not args.stdin:
        echo(t(lang, f"为 {p.label_zh}（{p.id}）保存密钥。还没有密钥？打开 {p.key_url}",
               f"Saving the key for {p.label_en} ({p.id}). No key yet? Open {p.key_url}"))
    api_key, secret_key = read_key(p, args)
    _warn_format(p, api_key)
    store = open_store()
    store.set(p.id, api_key, secret_key)
    echo(t(lang, f"已保存 {p.id} 的密钥 {mask_key(api_key)}，位置：{store_text(store, lang)}。",
           f"Saved the {p.id} key {mask_key(api_key)} in {store_text(store, lang)}."))
    _warn_env_override(p, lang)
    echo(t(lang, f"检查它是否有效：xedullm key check {p.id}", f"Check that it works: xedullm key check {p.id}"))
    return 0


def cmd_list(args) -> int:
    lang = args.lang
    stored = open_store().items()
    rows = []
    for p in PROVIDERS:
        if not p.needs_key:
            continue
        in_use = resolve_credentials(p).source
        secret_from_env = _first_env_value(p.secret_env)
        for name in p.key_env:
            value = clean_key(os.environ.get(name))
            if value:
                rows.append(_row(p, f"env:{name}", value, secret_from_env, in_use, lang))
        if p.id in stored:
            rows.append(_row(p, "store", stored[p.id].api_key, stored[p.id].secret_key, in_use, lang))
    if not rows:
        echo(t(lang, "还没有配置任何密钥。用 xedullm key set <服务商> 保存一个；xedullm providers 告诉你去哪里获取。",
               "No keys configured yet. Save one with xedullm key set <provider>; xedullm providers "
               "shows where to get one."))
        return 0
    headers = (t(lang, "服务商", "Provider"), t(lang, "来源", "Source"), t(lang, "密钥", "Key"),
               "Secret Key", t(lang, "使用中", "In use"))
    table(headers, rows)
    return 0


def _row(p: Provider, source: str, key: str, secret: Optional[str], in_use: str, lang: str):
    needs_secret = api_form(p, None, key).needs_secret   # not for a Qianfan v2 bce-v3/ key
    secret_cell = (mask_key(secret) or t(lang, "缺少", "missing")) if needs_secret else "—"
    used = t(lang, "是", "yes") if source == in_use else ""
    return (p.id, source_text(source, lang), mask_key(key), secret_cell, used)


def cmd_remove(args) -> int:
    lang = args.lang
    p = _keyed_provider(args.provider)
    store = open_store()
    if not store.remove(p.id):
        warn(t(lang, f"本机没有保存 {p.id} 的密钥（{store_text(store, lang)}）。",
               f"No {p.id} key is saved on this computer ({store_text(store, lang)})."))
        return 1
    echo(t(lang, f"已从本机删除 {p.id} 的密钥。", f"Deleted the {p.id} key from this computer."))
    echo(t(lang, f"这不会让密钥失效；如果密钥可能泄露，请到 {p.key_url} 删除它。",
           f"This does not disable the key; if it may have leaked, delete it at {p.key_url}."))
    env_name = _first_env_name(p.key_env)
    if env_name:
        warn(t(lang, f"注意：环境变量 {env_name} 里还有 {p.id} 的密钥。",
               f"Note: the environment variable {env_name} still holds a {p.id} key."))
    return 0


def cmd_path(args) -> int:
    store = open_store()
    if store.kind == "file":
        echo(t(args.lang, f"本地密钥文件（仅本人可读，权限 0600）：{store.location()}",
               f"Local key file (readable only by you, mode 0600): {store.location()}"))
    else:
        echo(t(args.lang, f"系统钥匙串：{store.location()}", f"System keyring: {store.location()}"))
    return 0


def cmd_check(args) -> int:
    lang = args.lang
    p = _keyed_provider(args.provider)
    creds = resolve_credentials(p)
    p = api_form(p, args.base_url, creds.api_key)   # a bce-v3/ key needs no Secret Key
    if not creds.api_key or (p.needs_secret and not creds.secret_key):
        raise missing_key_error(p)
    echo(t(lang, f"正在检查 {p.id} 的密钥 {mask_key(creds.api_key)}（来源：{source_text(creds.source, lang)}）……",
           f"Checking the {p.id} key {mask_key(creds.api_key)} (from {source_text(creds.source, lang)})..."))
    result = check_key(p, creds.api_key, creds.secret_key, base_url=args.base_url)
    report_check(p, result, lang, (creds.api_key, creds.secret_key))
    if result.status == "invalid":
        warn(t(lang, f"换一个新密钥：xedullm key rotate {p.id}", f"Replace it: xedullm key rotate {p.id}"))
    return 0 if result.ok else 1


def cmd_rotate(args) -> int:
    lang = args.lang
    p = _keyed_provider(args.provider)
    store = open_store()
    old = store.get(p.id)
    old_text = f"（{mask_key(old.api_key)}）" if old else ""
    old_text_en = f" ({mask_key(old.api_key)})" if old else ""
    echo(t(lang, "更换密钥的步骤：", "How to replace a key:"))
    echo(t(lang, f"  1. 打开 {p.key_url}", f"  1. Open {p.key_url}"))
    echo(t(lang, f"  2. 删除旧密钥{old_text}——删除后它立刻失效，泄露出去也没用了",
           f"  2. Delete the old key{old_text_en}: once deleted it stops working, even if it leaked"))
    echo(t(lang, "  3. 新建一个密钥并复制", "  3. Create a new key and copy it"))
    echo(t(lang, "  4. 粘贴到下面；新密钥验证通过后才会替换旧的",
           "  4. Paste it below; it replaces the old one only after it is verified"))
    api_key, secret_key = read_key(p, args)
    if old and (api_key, secret_key) == (old.api_key, old.secret_key):
        raise ConfigurationError(
            f"这和已保存的密钥相同。请在 {p.key_url} 新建一个密钥再粘贴。 / "
            f"That is the key already saved. Create a new key at {p.key_url} and paste that.",
            provider=p.id)
    _warn_format(p, api_key)
    echo(t(lang, f"正在验证新密钥 {mask_key(api_key)}……", f"Verifying the new key {mask_key(api_key)}..."))
    result = check_key(p, api_key, secret_key, base_url=args.base_url)
    report_check(p, result, lang, (api_key, secret_key))
    if not result.ok:
        warn(t(lang, "新密钥没有通过验证，已保存的密钥保持不变。", "The new key failed the check; the saved key was not changed."))
        return 1
    store.set(p.id, api_key, secret_key)
    echo(t(lang, f"已换成新密钥 {mask_key(api_key)}，位置：{store_text(store, lang)}。",
           f"Replaced with the new key {mask_key(api_key)} in {store_text(store, lang)}."))
    _warn_env_override(p, lang)
    return 0


_VERDICTS = {
    "valid": ("有效", "valid"),
    "invalid": ("密钥无效", "wrong key"),
    "no_balance": ("余额不足", "no balance"),
    "network": ("网络问题", "network problem"),
    "unknown": ("无法确认", "could not tell"),
}


def report_check(p: Provider, result: KeyCheck, lang: str, secrets: Tuple[Optional[str], ...]) -> None:
    zh, en = _VERDICTS[result.status]
    line = t(lang, f"结果：{zh}", f"Result: {en}")
    if result.ok:
        echo(line)
        if result.note:
            warn(result.note)
        return
    warn(line)
    if result.error is not None:
        warn(redact(str(result.error), secrets))


def read_key(p: Provider, args) -> Tuple[str, Optional[str]]:
    """The key (and ERNIE's secret key) from a hidden prompt or, with --stdin, from stdin."""
    lang = args.lang
    if args.stdin:
        lines = [line for line in sys.stdin.read().splitlines() if line.strip()]
        api_key = clean_key(lines[0]) if lines else None
        p = api_form(p, None, api_key)   # a Qianfan v2 bce-v3/ key comes alone
        secret_key = clean_key(lines[1]) if p.needs_secret and len(lines) > 1 else None
    else:
        echo(t(lang, "（输入时屏幕上不会显示，粘贴后按回车）", "(Input is hidden: paste and press Enter)"))
        api_key = _prompt("API Key: ")
        p = api_form(p, None, api_key)
        secret_key = _prompt("Secret Key: ") if p.needs_secret else None
    hold_secret(api_key)
    hold_secret(secret_key)
    if not api_key:
        raise ConfigurationError("没有读到密钥，什么都没有保存。 / No key was entered; nothing was saved.",
                                 provider=p.id)
    if p.needs_secret and not secret_key:
        raise ConfigurationError(
            f"{p.label_zh}需要 API Key 和 Secret Key 两个；没有读到 Secret Key。 / "
            f"{p.label_en} needs both an API Key and a Secret Key; no Secret Key was entered.",
            provider=p.id)
    return api_key, secret_key


def _prompt(label: str) -> Optional[str]:
    try:
        return clean_key(getpass.getpass(label))
    except EOFError:
        return None


def source_text(source: str, lang: str) -> str:
    if source.startswith("env:"):
        return t(lang, f"环境变量 {source[4:]}", f"environment variable {source[4:]}")
    if source == "store":
        return t(lang, "本机保存", "saved on this computer")
    if source == "argument":
        return t(lang, "参数", "argument")
    return t(lang, "无", "none")


def store_text(store, lang: str) -> str:
    if store.kind == "keyring":
        return t(lang, "系统钥匙串", "the system keyring")
    return store.location()


def _keyed_provider(name: str) -> Provider:
    p = find_provider(name)
    if not p.needs_key:
        raise ConfigurationError(f"{p.label_zh}不需要密钥。 / {p.label_en} needs no key.", provider=p.id)
    return p


def _warn_format(p: Provider, api_key: str) -> None:
    warning = key_format_warning(p, api_key)
    if warning:
        warn(warning)


def _warn_env_override(p: Provider, lang: str) -> None:
    env_name = _first_env_name(p.key_env)
    if env_name:
        warn(t(lang, f"注意：环境变量 {env_name} 已设置，它优先于保存的密钥。",
               f"Note: the environment variable {env_name} is set and takes precedence over the saved key."))


def _first_env_name(names) -> Optional[str]:
    return next((n for n in names if clean_key(os.environ.get(n))), None)


def _first_env_value(names) -> Optional[str]:
    name = _first_env_name(names)
    return clean_key(os.environ.get(name)) if name else None
