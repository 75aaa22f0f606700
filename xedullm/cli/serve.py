"""`xedullm serve`: share one model with the class (web chat + OpenAI-compatible API)."""
from __future__ import annotations

from .output import positive_int


def register(commands) -> None:
    parser = commands.add_parser(
        "serve", help="启动课堂服务器 / start the classroom server",
        description="启动课堂服务器：学生在浏览器里聊天，程序用 Client(xedu_url=…) 或 OpenAI SDK 调用；"
                    "密钥只留在这台电脑上。不指定服务商且没有配置密钥时使用本地模型。 / "
                    "Start the classroom server: students chat in the browser, programs call it with "
                    "Client(xedu_url=…) or the OpenAI SDK; the key stays on this computer. With no "
                    "provider and no key configured, the local model is used.")
    parser.add_argument("-p", "--provider", default=None, help="服务商名字或别名 / provider id or alias")
    parser.add_argument("-m", "--model", default=None, help="模型名 / model id")
    parser.add_argument("--base-url", default=None,
                        help="改用这个地址（镜像、代理、任意 OpenAI 兼容服务） / use this address instead")
    parser.add_argument("--system", default=None, metavar="TEXT",
                        help="系统提示词，总在学生的消息之前 / system prompt, always before students' messages")
    parser.add_argument("--host", default="0.0.0.0",
                        help="监听地址（默认所有网卡）/ address to listen on (default: all interfaces)")
    parser.add_argument("--port", type=int, default=7860,
                        help="端口，被占用时用下一个空闲端口 / port; the next free one if busy (default 7860)")
    parser.add_argument("--max-concurrent", type=positive_int, default=64, metavar="N",
                        help="同时发往服务商的请求数上限，其余排队 / upstream calls at once; others wait in line "
                             "(default 64)")
    parser.add_argument("--access-code", default=None, metavar="CODE",
                        help="课堂访问码：学生在网页输入，程序作 api_key / class access code: students enter it on "
                             "the page, programs pass it as api_key")
    parser.add_argument("--admin-password", default=None, metavar="PASSWORD",
                        help="老师管理页 /admin 的密码（不填则每次启动生成并显示）/ password for the teacher's "
                             "/admin page (default: generated and shown at start)")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="用量记录、令牌和设置保存的目录 / where the usage ledger, tokens and settings live")
    parser.add_argument("--daily-budget", type=positive_int, default=None, metavar="TOKENS",
                        help="全班每天最多用多少 token / tokens per day for the whole class")
    parser.add_argument("--per-student-daily", type=positive_int, default=None, metavar="TOKENS",
                        help="每位学生每天默认最多用多少 token / default tokens per day per student")
    parser.add_argument("--review", action="store_true", default=None,
                        help="课堂回顾：保存对话内容，只在管理页可见 / classroom review: keep conversation text, "
                             "visible only on the admin page")
    parser.add_argument("--allow-legacy-clients", action="store_true", default=False,
                        help="有访问码时也让旧版 XEdu 客户端（xedu-python，发送不了访问码）使用 / let the old XEdu "
                             "client (xedu-python, which cannot send an access code) in even with an access code")
    parser.set_defaults(func=run)


def run(args) -> int:
    from .chat import make_client

    client = make_client(args, verbose=True)
    client.run(host=args.host, port=args.port, max_concurrent=args.max_concurrent, access_code=args.access_code,
               admin_password=args.admin_password, data_dir=args.data_dir, daily_budget=args.daily_budget,
               per_student_daily=args.per_student_daily, review=args.review,
               allow_legacy_clients=args.allow_legacy_clients)
    return 0
