"""`xedullm serve`: share one model with the class (web chat + OpenAI-compatible API)."""
from __future__ import annotations


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
    parser.add_argument("--preset", default=None, metavar="NAME",
                        help="用一个课堂提示词预设作系统提示词（xedullm presets 查看）/ use a classroom preset as "
                             "the system prompt (see xedullm presets)")
    from .chat import add_fallback_option

    add_fallback_option(parser)
    parser.add_argument("--host", default="0.0.0.0",
                        help="监听地址（默认所有网卡）/ address to listen on (default: all interfaces)")
    parser.add_argument("--port", type=int, default=7860,
                        help="端口，被占用时用下一个空闲端口 / port; the next free one if busy (default 7860)")
    parser.add_argument("--no-browser", action="store_true",
                        help="不自动打开管理页 / do not open the admin page in the browser")
    # Every classroom setting with a flag, from the one settings table.
    from ..server.settings import add_serve_flags

    add_serve_flags(parser)
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..server.settings import serve_options
    from .chat import make_client

    if args.preset and args.system:
        from ..errors import ConfigurationError

        raise ConfigurationError("--preset 和 --system 只能选一个。/ Use --preset or --system, not both.")
    # No key yet: the server starts anyway and waits for it (admin page key box, or key set).
    client = make_client(args, verbose=True, require_key=False)
    if args.preset:
        client.use_preset(args.preset)
    client.run(host=args.host, port=args.port, open_browser=not args.no_browser, **serve_options(args))
    return 0
