"""`xedullm tokens create|list|revoke`: student tokens in the classroom server's data directory.

Works while the server runs: the server reads tokens from the same store on every request,
so a new token works and a revoked one fails from the next request on.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from ..english import counted
from .output import echo, positive_int, t, table, warn


def register(commands) -> None:
    parser = commands.add_parser(
        "tokens", help="管理学生令牌 / manage student tokens",
        description="为学生或小组创建令牌（可设每日 token、每分钟请求、同时进行数、可选模型、过期日期），"
                    "查看或停用。令牌可当访问码在网页输入，也可在程序里作 api_key。 / "
                    "Create tokens for students or groups (with optional tokens per day, requests per minute, "
                    "answers at once, allowed models, expiry), list or revoke them. A token works as the "
                    "access code on the page and as api_key in programs.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = actions.add_parser(
        "create", help="创建令牌（一个或一批）/ create a token (or a batch)",
        description="xedullm tokens create 张三 只输出令牌本身；xedullm tokens create --count 40 --prefix 学生 "
                    "每行输出“名字 令牌”，可用 --sheet 写成可打印、可剪开的纸条。 / "
                    "`xedullm tokens create NAME` prints just the token; `--count 40 --prefix 学生` prints "
                    "'name token' lines, and --sheet writes them as printable slips to cut apart.")
    create.add_argument("name", nargs="?", default=None,
                        help="学生或小组的名字（批量时不填）/ the student's or group's name (none for a batch)")
    create.add_argument("--count", type=positive_int, default=None, metavar="N",
                        help="一次创建 N 个令牌，名字是前缀加编号 / make N tokens named prefix + number")
    create.add_argument("--prefix", default="学生", metavar="TEXT",
                        help="批量令牌名字的前缀（默认“学生”）/ name prefix for a batch (default 学生)")
    create.add_argument("--length", type=int, default=None, metavar="N",
                        help="令牌长度 8–12（默认 8）/ token length 8–12 (default 8)")
    create.add_argument("--sheet", default=None, metavar="FILE",
                        help="把令牌写成可打印的纸条：FILE.html，或 FILE.csv / write the tokens as printable "
                             "slips: FILE.html, or FILE.csv")
    create.add_argument("--url", default=None, metavar="URL",
                        help="印在纸条上的课堂地址（附二维码）/ the class address printed on the slips (with a QR code)")
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
    from ..errors import ConfigurationError
    from ..server.classroom import student_tokens

    if (args.name is None) == (args.count is None):
        raise ConfigurationError("请给一个名字（xedullm tokens create 张三），或用 --count N 批量创建，二者选一。/ "
                                 "Give one name (xedullm tokens create NAME) or --count N for a batch, not both.")
    sheet = _sheet_path(args.sheet)
    length = student_tokens.check_length(args.length if args.length is not None else student_tokens.LENGTH)
    name = student_tokens.check_name(args.name) if args.name is not None else None
    limits = student_tokens.limits_from(daily_tokens=args.daily_tokens, rpm=args.rpm, concurrent=args.concurrent,
                                        models=(args.models or "").split(","), expires=args.expires)
    store = _store(args)
    try:
        if name is not None:
            pairs = [(name, student_tokens.create_token(store, name, limits, length))]
        else:
            pairs = student_tokens.create_batch(store, args.prefix, args.count, limits, length)
    finally:
        store.close()
    # stdout carries only the tokens (scripts read it); what they are goes to stderr.
    if name is not None:
        echo(pairs[0][1])
        warn(t(args.lang, f"已为“{name}”创建令牌（上面一行）。它只显示这一次，请现在交给学生。",
               f"Token for '{name}' created (the line above). It is shown only this once; give it to the "
               f"student now."))
    else:
        for made_name, token in pairs:
            echo(f"{made_name} {token}")
        warn(t(args.lang, f"已创建 {len(pairs)} 个令牌（上面每行“名字 令牌”）。它们只显示这一次。",
               f"Created {counted(len(pairs), 'token')} (the 'name token' lines above). They are shown only this once."))
    if sheet is not None:
        _write_sheet(sheet, pairs, args.url)
        warn(t(args.lang, f"纸条已写入 {sheet}：打印后沿虚线剪开。文件里有令牌，发完请删掉。",
               f"Slips written to {sheet}: print and cut along the dashed lines. The file holds the tokens; "
               f"delete it once they are handed out."))
    return 0


def _sheet_path(text):
    from ..errors import ConfigurationError

    if text is None:
        return None
    path = Path(text).expanduser()
    if path.suffix.lower() not in (".html", ".htm", ".csv"):
        raise ConfigurationError(f"--sheet 的文件名应以 .html 或 .csv 结尾，收到 {text}。/ "
                                 f"--sheet takes a file ending in .html or .csv; got {text}.")
    if not path.parent.is_dir():
        raise ConfigurationError(f"目录 {path.parent} 不存在，请先创建它。/ The folder {path.parent} does not exist; "
                                 f"create it first.")
    return path


def _write_sheet(path, pairs, url) -> None:
    from ..server.classroom.token_sheet import sheet_csv, sheet_html

    text = sheet_csv(pairs, url) if path.suffix.lower() == ".csv" else sheet_html(pairs, url)
    # The sheet holds working tokens: readable by the teacher only.
    with os.fdopen(os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as out:
        out.write(text)


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
