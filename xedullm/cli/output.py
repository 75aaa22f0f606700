"""Language choice and the few printing helpers every command shares.

Commands print through here so that output language, table style and the stdout/stderr
split are the same everywhere. rich is imported only when a table is drawn, which keeps
`xedullm --help` fast.
"""
from __future__ import annotations

import locale
import os
import sys
from typing import Iterable, Optional, Sequence

LANGS = ("zh", "en")


def choose_lang(explicit: Optional[str] = None) -> str:
    """--lang wins; else the locale (LC_ALL > LC_MESSAGES > LANG); Chinese locales give 'zh'."""
    if explicit in LANGS:
        return explicit
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(name)
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    # Windows sets no LANG; its locale name reads e.g. 'Chinese (Simplified)_China'.
    current = (locale.getlocale()[0] or "").lower()
    return "zh" if current.startswith(("zh", "chinese")) else "en"


def t(lang: str, zh: str, en: str) -> str:
    return zh if lang == "zh" else en


def echo(text: str = "") -> None:
    print(text, flush=True)


def warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, title: Optional[str] = None,
          fold: Sequence[int] = (), show_header: bool = True) -> None:
    """A rich table on stdout. Cells are plain text (no markup); columns in ``fold`` break
    long unbroken text such as URLs instead of cutting it off."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    grid = Table(title=title, show_lines=True, highlight=False, show_header=show_header)
    for i, header in enumerate(headers):
        grid.add_column(header, overflow="fold" if i in fold else "ellipsis")
    for row in rows:
        grid.add_row(*(Text(str(cell)) for cell in row))
    Console(highlight=False).print(grid)


def fields(pairs: Iterable[Sequence[str]], *, title: Optional[str] = None) -> None:
    """A two-column 'name: value' table for one record."""
    table(("", ""), pairs, title=title, fold=(1,), show_header=False)


_held: list = []


def hold_secret(value: Optional[str]) -> Optional[str]:
    """Remember a key this process read (prompt, stdin) so error reports can redact it."""
    if value:
        _held.append(value)
    return value


def held_secrets() -> list:
    return list(_held)


def positive_int(text: str) -> int:
    """argparse type for counts and budgets: a whole number of at least 1."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("N >= 1")
    return value
