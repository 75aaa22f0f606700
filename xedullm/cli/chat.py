"""`xedullm chat` (a streaming REPL) and `xedullm ask` (one question, only the answer on stdout).

Without -p/--provider the provider is the first one with a key configured (environment or
key store); with no key anywhere it is the offline local model, announced in one line on
stderr. The work is the library's: these commands only read input and print pieces.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Dict, Iterator, List, Optional

from .output import t, warn

CHAT_HELP_ZH = """命令：
  /system 文本   设置系统提示词（/system 后不写内容则清除）
  /clear         清空对话历史
  /model 名称    换模型（本地模型可写 .gguf 文件路径）
  /help          显示本帮助
  /exit          退出（也可按 Ctrl-D）
多行输入：行尾写 \\ 表示下一行接着写；或单独一行 \"\"\" 开始、再一行 \"\"\" 结束。
回答时按 Ctrl-C 只停止这次回答，不会退出。"""

CHAT_HELP_EN = """Commands:
  /system TEXT   set the system prompt (/system alone clears it)
  /clear         forget the conversation so far
  /model NAME    switch model (for the local model, a path to a .gguf file works)
  /help          show this help
  /exit          quit (or press Ctrl-D)
Multi-line input: end a line with \\ to continue on the next; or put \"\"\" alone on a line,
then your text, then \"\"\" alone again.
Ctrl-C while an answer is printing stops that answer without quitting."""


def register(commands) -> None:
    chat = commands.add_parser(
        "chat", help="和大模型多轮对话 / chat with a model",
        description="在终端里和大模型多轮对话，回答边生成边显示。 / A multi-turn chat in the "
                    "terminal; answers stream as they are generated.",
        epilog=f"{CHAT_HELP_ZH}\n\n{CHAT_HELP_EN}",
        formatter_class=_raw_epilog())
    _add_model_options(chat)
    chat.set_defaults(func=run_chat)

    ask = commands.add_parser(
        "ask", help="问一个问题，只输出回答 / ask one question, print only the answer",
        description="问一个问题，标准输出上只有回答（适合脚本）。管道输入会接在问题后面："
                    "echo 你好 | xedullm ask ；xedullm ask \"总结一下\" < 文章.txt / "
                    "Ask one question and print only the answer (scriptable). Piped input is "
                    "appended to the question: echo hi | xedullm ask; xedullm ask \"summarize\" < file.txt")
    ask.add_argument("question", nargs="*", help="问题 / the question")
    _add_model_options(ask)
    ask.set_defaults(func=run_ask)


def _raw_epilog():
    import argparse

    return argparse.RawDescriptionHelpFormatter


def _add_model_options(parser) -> None:
    parser.add_argument("-p", "--provider", default=None,
                        help="服务商名字或别名（默认：已配置密钥的服务商，都没有则用本地模型） / provider "
                             "id or alias (default: one with a key configured, else the local model)")
    parser.add_argument("-m", "--model", default=None, help="模型名 / model id")
    parser.add_argument("--base-url", default=None,
                        help="改用这个地址（镜像、代理、任意 OpenAI 兼容服务） / use this address instead")
    parser.add_argument("--system", default=None, metavar="TEXT", help="系统提示词 / system prompt")
    add_fallback_option(parser)
    parser.add_argument("-t", "--temperature", type=float, default=None,
                        help="随机程度，0 表示每次回答相同 / randomness; 0 gives the same answer every time")


def add_fallback_option(parser) -> None:
    parser.add_argument("--fallback", action="append", default=None, metavar="PROVIDER[:MODEL][@BASE_URL]",
                        help="主服务商连不上、繁忙或余额用完时改用它（可写多次，按顺序尝试，如 --fallback qwen "
                             "--fallback local）/ answers when the provider is down, busy or out of balance "
                             "(repeatable, tried in order)")
    # Client options rather than server settings: `chat` and `ask` fall back the same way.
    parser.add_argument("--breaker-failures", type=int, default=3, metavar="N",
                        help="主服务商连续失败几次后暂时跳过它（默认 3）/ failures in a row before the provider is "
                             "skipped for a while (default 3)")
    parser.add_argument("--breaker-cooldown", type=float, default=30.0, metavar="SECONDS",
                        help="跳过多少秒后再试一次主服务商（默认 30）/ seconds it is skipped before one call tries it "
                             "again (default 30)")


# -- choosing the model ------------------------------------------------------------------
def make_client(args, verbose: bool = False, require_key: bool = True):
    """The Client the options ask for; falls back to the local model when no key exists.

    ``chat``, ``ask`` and ``serve`` all choose the provider this way."""
    from ..client import Client

    provider = args.provider
    if provider is None and args.base_url is None:
        from ..keys import provider_with_key

        provider = provider_with_key()
        if provider is None:
            provider = "local"
            warn(t(args.lang,
                   "没有找到任何服务商的密钥，使用离线本地模型；要用在线大模型，请运行 xedullm key set deepseek（或其他服务商）。",
                   "No API key configured: using the offline local model. To use an online model, "
                   "run: xedullm key set deepseek (or another provider)."))
    client = Client(provider=provider, base_url=args.base_url, model=args.model, verbose=verbose,
                    fallback=getattr(args, "fallback", None),
                    breaker_failures=getattr(args, "breaker_failures", 3),
                    breaker_cooldown=getattr(args, "breaker_cooldown", 30.0), require_key=require_key)
    if args.system:
        client.set_system(args.system)
    return client


def _options(args) -> Dict[str, float]:
    return {} if args.temperature is None else {"temperature": args.temperature}


# -- ask -----------------------------------------------------------------------------------
def run_ask(args) -> int:
    question = " ".join(args.question).strip()
    piped = "" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.read().strip()
    text = "\n\n".join(part for part in (question, piped) if part)
    if not text:
        warn(t(args.lang, "请给出问题：xedullm ask \"你的问题\"，或用管道输入：echo 你好 | xedullm ask",
               "Give a question: xedullm ask \"your question\", or pipe it: echo hi | xedullm ask"))
        return 2
    client = make_client(args)
    last = ""
    for piece in client.inference(text, stream=True, **_options(args)):
        sys.stdout.write(piece)
        sys.stdout.flush()
        last = piece
    if not last.endswith("\n"):
        sys.stdout.write("\n")
    sys.stdout.flush()
    return 0


# -- chat ----------------------------------------------------------------------------------
class _Exit(Exception):
    pass


def run_chat(args) -> int:
    from ..errors import LLMError

    client = make_client(args)
    history: List[Dict[str, str]] = []
    _say(_header(client, args.lang))
    while True:
        try:
            text = _read_message(args.lang)
        except _Exit:
            return 0
        except KeyboardInterrupt:
            _say("\n" + t(args.lang, "（输入 /exit 或按 Ctrl-D 退出）", "(type /exit or press Ctrl-D to quit)"))
            continue
        if not text.strip():
            continue
        if text.startswith("/"):
            try:
                client = _command(text, client, history, args)
            except _Exit:
                return 0
            continue
        history.append({"role": "user", "content": text})
        try:
            answer, stopped = _stream_answer(client, history, args)
        except LLMError as exc:
            history.pop()  # the question was not answered; asking again must not repeat it
            warn(_redacted(exc))
            continue
        except KeyboardInterrupt:
            # Ctrl-C just as the answer ended, after the stream's own handler (while it closes):
            # still a stop, not the end of the chat. What was shown of the answer is not kept.
            answer, stopped = "", True
        if answer:
            history.append({"role": "assistant", "content": answer})
        else:
            history.pop()
        if stopped:
            _say(t(args.lang, "（已停止）", "(stopped)"))


def _header(client, lang: str) -> str:
    who = client.provider.id if client.provider else client.base_url
    return t(lang, f"xedullm chat · {who} · 模型 {client.model} · 输入 /help 查看命令，/exit 退出",
             f"xedullm chat · {who} · model {client.model} · /help for commands, /exit to quit")


def _say(text: str) -> None:
    print(text, flush=True)


def _read_message(lang: str) -> str:
    """One message: a line, lines joined by a trailing backslash, or a \"\"\" block."""
    prompt, more = t(lang, "你> ", "you> "), "... "
    first = _input(prompt)
    if first.strip() == '"""':
        lines = []
        while True:
            line = _input(more)
            if line.strip() == '"""':
                return "\n".join(lines)
            lines.append(line)
    lines = [first]
    while lines[-1].endswith("\\"):
        lines[-1] = lines[-1][:-1]
        lines.append(_input(more))
    return "\n".join(lines)


def _input(prompt: str) -> str:
    try:
        return input(prompt)
    except EOFError:
        print(flush=True)
        raise _Exit from None


def _command(text: str, client, history: List[Dict[str, str]], args):
    name, _, rest = text.partition(" ")
    name, rest = name.lower(), rest.strip()
    lang = args.lang
    if name in ("/exit", "/quit", "/q"):
        raise _Exit
    if name == "/clear":
        history.clear()
        _say(t(lang, "已清空对话历史。", "Conversation cleared."))
    elif name == "/system":
        client.set_system(rest or None)
        _say(t(lang, f"系统提示词：{rest}" if rest else "已清除系统提示词。",
               f"System prompt: {rest}" if rest else "System prompt cleared."))
    elif name == "/model":
        if not rest:
            _say(t(lang, f"当前模型：{client.model}（用 /model 名称 切换）",
                   f"Current model: {client.model} (/model NAME switches)"))
            return client
        return _switch_model(client, rest, args)
    elif name == "/help":
        _say(t(lang, CHAT_HELP_ZH, CHAT_HELP_EN))
    else:
        _say(t(lang, f"不认识的命令 {name}，输入 /help 查看命令。", f"Unknown command {name}; /help lists them."))
    return client


def _switch_model(client, model: str, args):
    from ..errors import LLMError

    try:
        client.set_model(model)  # a bad local model name fails here, not mid-chat
    except LLMError as exc:
        warn(_redacted(exc))
        return client
    _say(t(args.lang, f"已切换到模型 {client.model}。", f"Switched to model {client.model}."))
    return client


def _stream_answer(client, history: List[Dict[str, str]], args):
    """Print the answer as it streams. Returns (answer so far, whether Ctrl-C stopped it).

    A reasoning model's thinking is shown dimmed before the answer in a terminal (plain
    under NO_COLOR, left out when stdout is a pipe) and never enters the history.
    """
    chunks = client.chat_stream(list(history), **_options(args))
    parts: List[str] = []
    terminal = sys.stdout.isatty()
    dim, undim = ("", "") if os.environ.get("NO_COLOR") else (_DIM, _UNDIM)
    thinking = False
    spinner = _Spinner(args.lang) if terminal else None
    try:
        for chunk in _with_spinner(chunks, spinner):
            if chunk.reasoning and terminal:
                if not thinking:
                    sys.stdout.write(dim)
                    thinking = True
                sys.stdout.write(chunk.reasoning)
            if chunk.text:
                if thinking:
                    sys.stdout.write(undim + "\n\n")
                    thinking = False
                sys.stdout.write(chunk.text)
                parts.append(chunk.text)
            sys.stdout.flush()
        stopped = False
    except KeyboardInterrupt:
        stopped = True
    finally:
        if spinner:
            spinner.stop()
        if thinking:
            sys.stdout.write(undim)
        chunks.close()  # stops generation (local) or closes the connection (online)
    answer = "".join(parts)
    if answer and not answer.endswith("\n"):
        sys.stdout.write("\n")
    sys.stdout.flush()
    return answer, stopped


# ANSI "faint" and "normal intensity": thinking is there to read, but is not the answer.
_DIM, _UNDIM = "\x1b[2m", "\x1b[22m"


def _with_spinner(pieces: Iterator[Any], spinner: Optional["_Spinner"]) -> Iterator[Any]:
    if spinner is None:
        yield from pieces
        return
    spinner.start()
    for piece in pieces:
        spinner.stop()
        yield piece


class _Spinner:
    """A rich spinner shown until the first piece of the answer arrives."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self._status = None

    def start(self) -> None:
        from rich.console import Console

        self._status = Console().status(t(self.lang, "思考中…", "Thinking…"), spinner="dots")
        self._status.start()

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None


def _redacted(exc: Exception) -> str:
    # The REPL reports errors itself to keep going; same second lock as the CLI's main().
    from . import _redact

    return _redact(str(exc))
