"""`xedullm compare "问题" -p deepseek -p qwen -p local`: one question, several models, side by side."""
from __future__ import annotations

import shutil

from ..english import counted
from .output import echo, t

# Below this many columns per answer, answers are stacked instead of side by side.
_MIN_COLUMN = 36


def register(commands) -> None:
    parser = commands.add_parser(
        "compare", help="同一个问题问几个模型，并排比较 / ask several models one question, side by side",
        description="同时向几个服务商提同一个问题，并排显示回答、用时和 token。一个出错不影响其他。 / Ask "
                    "several providers the same question at once and show the answers side by side with time "
                    "and tokens. One failing does not stop the others.")
    parser.add_argument("question", help="问题 / the question")
    parser.add_argument("-p", "--provider", action="append", required=True, metavar="PROVIDER[:MODEL]",
                        help="服务商（可写多次），可带模型，如 -p deepseek -p qwen:qwen-turbo -p local / "
                             "a provider (repeat it), optionally with a model")
    parser.add_argument("--system", default=None, metavar="TEXT", help="系统提示词 / system prompt")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ..client import Client
    from ..side_by_side import compare
    from ..fallback import parse_spec

    clients = []
    for spec in args.provider:
        provider, model, base_url = parse_spec(spec)
        client = Client(provider=provider, model=model, base_url=base_url, verbose=False)
        if args.system:
            client.set_system(args.system)
        clients.append(client)
    results = compare(args.question, clients)
    _show(results, args.lang)
    return 0 if any(r.error is None for r in results) else 1


def _show(results, lang: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.panel import Panel

    def panel(r) -> Panel:
        used = counted(r.usage.total_tokens, "token") if r.usage else t(lang, "无用量", "no usage")
        title = f"{escape(r.label)}  {r.seconds:.1f}s  {used}"
        body = escape(r.answer) if r.error is None else f"[red]{escape(str(r.error))}[/red]"
        return Panel(body, title=title, title_align="left", expand=True)

    console = Console(highlight=False)
    width = shutil.get_terminal_size((100, 24)).columns
    if console.is_terminal and width // len(results) >= _MIN_COLUMN:
        from rich.columns import Columns

        console.print(Columns([panel(r) for r in results], equal=True, expand=True))
        return
    # Narrow or piped: one after another, every line whole.
    for r in results:
        used = counted(r.usage.total_tokens, "token") if r.usage else t(lang, "无用量", "no usage")
        echo(f"== {r.label}  {r.seconds:.1f}s  {used}")
        echo(r.answer if r.error is None else str(r.error))
        echo()
