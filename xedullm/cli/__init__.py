"""The `xedullm` command (also `python -m xedullm`).

Each name in COMMAND_MODULES is a module here with ``register(subparsers)``: it adds its
subcommand(s) with ``set_defaults(func=...)``, and the func takes the parsed args and
returns the exit code. Adding a command is one new module plus its name below.

Exit codes: 0 success, 1 a failure the user can fix (always an LLMError with a bilingual
message, never a traceback), 2 a usage error, 130 Ctrl-C.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import List, Optional

from .output import LANGS, choose_lang, t, warn

COMMAND_MODULES = ("providers", "keys", "models", "serve", "chat", "tokens", "presets", "compare")

_LANG_HELP = "输出语言（默认跟随系统）/ output language (default: follow the system locale)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xedullm",
        description="课堂里的大模型工具包 / A classroom LLM toolkit.",
    )
    parser.add_argument("--lang", choices=LANGS, default=None, help=_LANG_HELP)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(commands)
    _accept_lang_everywhere(parser)
    return parser


def _accept_lang_everywhere(parser: argparse.ArgumentParser) -> None:
    """Let `--lang` also follow a subcommand (`xedullm providers --lang en`)."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for child in dict.fromkeys(action.choices.values()):  # aliases share one parser
            try:
                # SUPPRESS: an unset sub-option must not overwrite a global --lang.
                child.add_argument("--lang", choices=LANGS, default=argparse.SUPPRESS, help=_LANG_HELP)
            except argparse.ArgumentError:
                pass  # the command defines its own --lang
            _accept_lang_everywhere(child)


def _plain_advice() -> None:
    """Advice the library gives as a warning (``LocalModelAdvice``) reads as a plain line in a
    terminal, without Python's file and line."""
    import warnings

    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if category.__name__ == "LocalModelAdvice":
            warn(str(message))
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main(argv: Optional[List[str]] = None) -> int:
    from ..errors import LLMError

    _tolerant_streams()
    _plain_advice()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else 2
    args.lang = choose_lang(args.lang)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except LLMError as exc:
        # Messages are key-free by construction; redaction here is the second lock.
        warn(_redact(str(exc)))
        return 1
    except KeyboardInterrupt:
        warn(t(args.lang, "已取消。", "Cancelled."))
        return 130
    except BrokenPipeError:
        # The reader went away (`xedullm providers | head`): stop quietly, and keep Python's
        # own flush at exit from failing on the same closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception:  # noqa: BLE001 - a bug: show it for the report, but never with a key
        warn(_redact(traceback.format_exc()))
        warn(t(args.lang, "这是 xedullm 的程序错误，请把上面的信息报告给开发者。",
               "This is a bug in xedullm; please report the text above."))
        return 1


def _redact(text: str) -> str:
    from ..keys import known_secrets, redact
    from .output import held_secrets

    return redact(text, [*held_secrets(), *known_secrets()])


def _tolerant_streams() -> None:
    """A console that cannot show some character must not crash a command."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="replace")
            except (ValueError, OSError):
                pass
