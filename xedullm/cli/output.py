"""Language choice and the few printing helpers every command shares.

Commands print through here so that output language, table style and the stdout/stderr
split are the same everywhere. rich is imported only when a table is drawn, which keeps
`xedullm --help` fast.
"""
from __future__ import annotations

import locale
import os
import re
import sys
from typing import Iterable, List, Optional, Sequence

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


# A listing is a table only on a terminal at least this wide, and wide enough to show every
# URL whole beside text columns of TEXT_COLUMN_MIN; narrower terminals (80 columns is every
# Windows console's default), pipes and files get one block per row instead.
TABLE_MIN_WIDTH = 120
TEXT_COLUMN_MIN = 24
_NONE = "—"


def listing(headers: Sequence[str], rows: Sequence[Sequence[str]], *, title: str,
            whole: Sequence[int] = (), sep: str = ": ") -> None:
    """Rows on stdout, nothing ever cut off. Column 0 names the row (its lines make a block's
    heading); columns in ``whole`` hold URLs, which are never broken: in a block each goes on
    a line of its own. Empty cells show as "—"."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False)
    widths = [_column_width(i in whole, header, [row[i] for row in rows])
              for i, header in enumerate(headers)]
    needed = sum(widths) + 3 * len(widths) + 1   # cell padding and borders
    if not (console.is_terminal and console.width >= max(TABLE_MIN_WIDTH, needed)):
        console.print(Text(title, style="bold"), soft_wrap=True)
        console.print()
        for row in rows:
            _block(console, " — ".join(row[0].splitlines()),
                   [(header, cell, i in whole) for i, (header, cell) in enumerate(zip(headers, row)) if i],
                   sep)
        return
    grid = Table(title=title, show_lines=True, highlight=False)
    for i, (header, width) in enumerate(zip(headers, widths)):
        grid.add_column(header, min_width=width, no_wrap=i in whole, overflow="fold")
    for row in rows:
        grid.add_row(*(Text(cell or _NONE) for cell in row))
    console.print(grid)


def fields(pairs: Sequence[Sequence[str]], *, title: str, whole: Sequence[int] = (),
           sep: str = ": ") -> None:
    """One record as a block of 'name: value' lines; pairs at the indexes in ``whole`` hold
    URLs, each printed whole on a line of its own."""
    from rich.console import Console

    _block(Console(highlight=False), title,
           [(name, value, i in whole) for i, (name, value) in enumerate(pairs)], sep)


def _column_width(whole: bool, header: str, cells: Sequence[str]) -> int:
    from rich.cells import cell_len

    longest = max([cell_len(line) for cell in cells for line in (cell or _NONE).splitlines()]
                  + [cell_len(header)])
    return longest if whole else min(longest, max(TEXT_COLUMN_MIN, cell_len(header)))


def _block(console, heading: str, items: Sequence[tuple], sep: str) -> None:
    """A heading, then one 'name: value' line per item, wrapped at words with a hanging
    indent on a terminal; a whole item's value goes alone on the next line, never wrapped by
    us. Pipes and files get unwrapped lines, which grep and `more` handle best."""
    from rich.text import Text

    console.print(Text(heading, style="bold"), soft_wrap=True)
    for name, value, whole in items:
        if whole and value:
            console.print(Text(f"  {name}{sep.rstrip()}"), soft_wrap=True)
            console.print(Text(f"    {value}"), soft_wrap=True)
            continue
        line = f"{name}{sep}{value or _NONE}"
        if not console.is_terminal:
            console.print(Text("  " + line), soft_wrap=True)
            continue
        # One column spare: a line filling the last column makes some consoles add a blank line.
        width = max(20, console.width - 1)
        parts = wrap(line, width - 2, width - 4)
        console.print(Text("  " + parts[0]), soft_wrap=True)
        for part in parts[1:]:
            console.print(Text("    " + part), soft_wrap=True)
    console.print()


_CJK = "\u2e80-\u9fff\uf900-\ufaff\uff00-\uffef"
_OPENING = "（「『《〈“‘"
_CLOSING = "，。、；：！？）」』》〉”’"
# What a line may not break inside: an English word or a single CJK character, each with
# the opening punctuation before it and the closing punctuation after it.
_UNBREAKABLE = re.compile(rf"\s+|[{_OPENING}]*(?:[{_CJK}]|[^\s{_CJK}]+)[{_CLOSING}]*")


def wrap(text: str, first_width: int, width: int) -> List[str]:
    """Lines of at most ``first_width`` (then ``width``) terminal cells: English breaks
    between words, Chinese between characters but never before a closing mark like "，"
    (rich treats a run of Chinese as one long word). A piece wider than a line is folded."""
    from rich.cells import cell_len

    lines: List[str] = []
    line, gap = "", ""
    for piece in _UNBREAKABLE.findall(text):
        if piece.isspace():
            gap = " " if line else ""
            continue
        limit = width if lines else first_width
        if line and cell_len(line + gap + piece) > limit:
            lines.append(line)
            line, gap = "", ""
            limit = width
        line += gap + piece
        gap = ""
        while cell_len(line) > limit:
            cut = len(line)
            while cell_len(line[:cut]) > limit:
                cut -= 1
            lines.append(line[:cut])
            line = line[cut:]
    return lines + [line] if line or not lines else lines


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
