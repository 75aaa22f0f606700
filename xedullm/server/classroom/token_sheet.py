"""A printable sheet of student tokens, to cut into slips (HTML), or the same as CSV.

Made by ``xedullm tokens create --count N --sheet FILE`` and by the admin page. Names are
the teacher's input and are escaped; the file loads nothing from anywhere.
"""
from __future__ import annotations

import csv
import html
import io
import time
from typing import List, Optional, Sequence, Tuple

from ..class_address import qr_svg

_STYLE = """
body { font: 14px/1.4 system-ui, "PingFang SC", "Microsoft YaHei", sans-serif; margin: 1cm; color: #000; }
h1 { font-size: 16px; margin: 0 0 .4cm; }
.slips { display: grid; grid-template-columns: repeat(3, 1fr); gap: 0; }
.slip { border: 1px dashed #888; padding: .35cm .4cm; break-inside: avoid; display: flex; gap: .3cm;
        align-items: center; }
.slip .name { font-size: 16px; font-weight: bold; }
.slip .token { font: bold 20px/1.3 ui-monospace, "Cascadia Mono", Consolas, monospace; letter-spacing: .08em; }
.slip .how { font-size: 11px; color: #333; overflow-wrap: anywhere; }
.slip svg { width: 2.2cm; height: 2.2cm; flex: none; }
@media print { body { margin: .5cm; } h1 { display: none; } }
"""


def sheet_html(pairs: Sequence[Tuple[str, str]], url: Optional[str] = None) -> str:
    """One slip per (name, token): the name, the token, and where to enter it."""
    qr = qr_svg(url, scale=4).decode("utf-8") if url else ""
    where_zh = f"打开 {url}，" if url else "打开课堂网页，"
    where_en = f"Open {url} and" if url else "Open the class page and"
    slips: List[str] = []
    for name, token in pairs:
        slips.append(
            f'<div class="slip">{qr}<div><div class="name">{html.escape(name)}</div>'
            f'<div class="token">{html.escape(token)}</div>'
            f'<div class="how">{html.escape(where_zh)}把上面的令牌当访问码输入。/ '
            f'{html.escape(where_en)} enter the token above as the access code.</div></div></div>')
    stamp = time.strftime("%Y-%m-%d %H:%M")
    return ("<!doctype html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">"
            f"<title>学生令牌 / Student tokens {stamp}</title><style>{_STYLE}</style></head><body>"
            f"<h1>学生令牌（沿虚线剪开）/ Student tokens (cut along the dashed lines) — {stamp}</h1>"
            f"<div class=\"slips\">{''.join(slips)}</div></body></html>\n")


def sheet_csv(pairs: Sequence[Tuple[str, str]], url: Optional[str] = None) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["name", "token", "url"])
    for name, token in pairs:
        # A name starting with = + - @ would run as a formula in a spreadsheet.
        writer.writerow(["'" + name if name.startswith(("=", "+", "-", "@")) else name, token, url or ""])
    # The BOM lets Excel on Chinese Windows read the file as UTF-8.
    return "\ufeff" + out.getvalue()
