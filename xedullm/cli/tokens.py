"""`xedullm tokens create|list|revoke`: student tokens in the classroom server's data directory.

Works while the server runs: the server reads tokens from the same store on every request,
so a new token works and a revoked one fails from the next request on.
"""
from __future__ import annotations

import time

from .output import echo, positive_int, t, table


def register(commands) -> None:
    parser = commands.add_parser(
        "tokens", help="管理学生令牌 / manage student tokens",
        description="为学生或小组创建令牌（可设每日 token、每分钟请求、同时进行数、可选模型、过期日期），"
                    "查看或停用。令牌可当访问码在网页输入，也可在程序里作 api_key。 / "
                    "Create tokens for students or groups (with optional tokens per day, requests per minute, "
                    "answers at once, allowed models, expiry), list or revoke them. A token works as the "
                    "access code on the page and as api_key in programs.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = actions.add_parser("create", help="创建令牌 / create a token")
    create.add_argument("name", help="学生或小组的名字 / the student's or group's name")
    create.add_argument("--daily-tokens", type=positive_int, default=None, metavar="N",
                        help="每天最多用多少 token / tokens per day")
    create.add_argument("--rpm", type=positive_int, default=None, metavar="N",
                        help="每分钟最多几个请求 / requests per minute")
    create.add_argument("--concurrent", type=positive_int, default=None, metavar="N",
                        help="同时最多几个回答 / answers running at once")
    create.add_argument("--models", default=None, metavar="A,B",
                        help="学生可以选的模型，逗号分隔 / models the student may choose, comma-separated")
    create.add_argument("--expires", default=None, metavar="YYYY-MM-DD",
                        help="最后可用的日期 / last day the token works")
    create.set_defaults(func=run_create)

    listing = actions.add_parser("list", help="列出令牌 / list tokens")
    listing.set_defaults(func=run_list)

    revoke = actions.add_parser("revoke", help="立即停用令牌 / revoke a token now")
    revoke.add_argument("name")
    revoke.set_defaults(func=run_revoke)

    for sub in (create, listing, revoke):
        sub.add_argument("--data-dir", default=None, metavar="DIR",
                         help="服务器的数据目录（默认与 xedullm serve 相同）/ the server's data directory "
                              "(default: the same as xedullm serve)")
        sub.add_argument("--store", default=None, metavar="URL",
                         help="课堂数据存放处的地址（与 xedullm serve --store 相同；也可设 XEDULLM_STORE）/ "
                              "where classroom state lives (as for xedullm serve --store; or XEDULLM_STORE)")


def _store(args):
    from ..server.store import open_store

    return open_store(args.store, args.data_dir)


def run_create(args) -> int:
    from ..server.classroom import student_tokens

    name = student_tokens.check_name(args.name)
    limits = student_tokens.limits_from(daily_tokens=args.daily_tokens, rpm=args.rpm, concurrent=args.concurrent,
                                        models=(args.models or "").split(","), expires=args.expires)
    store = _store(args)
    try:
        token = student_tokens.create_token(store, name, limits)
    finally:
        store.close()
    echo(token)
    echo(t(args.lang, f"已为“{name}”创建令牌（上面一行）。它只显示这一次，请现在交给学生。",
           f"Token for '{name}' created (the line above). It is shown only this once; give it to the "
           f"student now."))
    return 0


def run_list(args) -> int:
    from ..server.classroom.room import today
    from ..server.classroom.student_tokens import expires_text

    store = _store(args)
    try:
        day = today()
        rows = [(tk.name, store.used(day, tk.name), tk) for tk in store.tokens()]
    finally:
        store.close()
    if not rows:
        echo(t(args.lang, "还没有学生令牌。用 xedullm tokens create 名字 创建。",
               "No student tokens yet. Create one with: xedullm tokens create NAME"))
        return 0
    none = "—"
    headers = [t(args.lang, h[0], h[1]) for h in (
        ("名字", "Name"), ("今日 token", "Tokens today"), ("每日上限", "Per day"), ("每分钟", "Per minute"),
        ("同时", "At once"), ("模型", "Models"), ("过期", "Expires"), ("状态", "State"))]
    table(headers, [
        (name, used, tk.limits.daily_tokens or none, tk.limits.rpm or none, tk.limits.concurrent or none,
         ", ".join(tk.limits.models) or none, expires_text(tk.limits.expires) or none,
         _state(args.lang, tk)) for name, used, tk in rows], fold=(0, 5, 6))
    return 0


def _state(lang: str, token) -> str:
    if token.revoked is not None:
        return t(lang, "已停用", "revoked")
    if token.limits.expires is not None and time.time() >= token.limits.expires:
        return t(lang, "已过期", "expired")
    return t(lang, "有效", "active")


def run_revoke(args) -> int:
    store = _store(args)
    try:
        done = store.revoke_token(args.name, time.time())
    finally:
        store.close()
    if not done:
        from ..errors import ConfigurationError

        raise ConfigurationError(f"没有叫“{args.name}”的有效令牌；用 xedullm tokens list 查看。/ "
                                 f"No active token named '{args.name}'; see xedullm tokens list.")
    echo(t(args.lang, f"已停用“{args.name}”，它从下一个请求起失效。",
           f"Revoked '{args.name}'; it fails from its next request on."))
    return 0
