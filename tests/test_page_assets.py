"""Every file the student page and the admin page load is served by `xedullm serve`, with the
right content type.

The files are found by reading what the browser reads — the pages' HTML, then each script's
module imports and each style sheet's url(...) and @import, recursively — never by listing
them here, so a vendored library (KaTeX and its fonts, say) is checked the day it is added.
scripts/test_installed.sh runs this against the wheel installed in a fresh virtualenv, where
a file left out of the package data answers 404.
"""
from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Dict, List
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from conftest import TEACHER_KEY, serve_process

PASSWORD = "assets-pass-8642"

# What each kind of file must be served as. A file of a kind not listed here fails the test
# until it is added: the server's type for it has to be decided, not left to the registry.
CONTENT_TYPES = {
    ".html": ("text/html",),
    ".js": ("text/javascript", "application/javascript"),
    ".mjs": ("text/javascript", "application/javascript"),
    ".css": ("text/css",),
    ".woff2": ("font/woff2",),
    ".woff": ("font/woff",),
    ".ttf": ("font/ttf",),
    ".otf": ("font/otf",),
    ".svg": ("image/svg+xml",),
    ".png": ("image/png",),
    ".jpg": ("image/jpeg",),
    ".jpeg": ("image/jpeg",),
    ".gif": ("image/gif",),
    ".webp": ("image/webp",),
    ".ico": ("image/x-icon", "image/vnd.microsoft.icon"),
    ".json": ("application/json",),
    ".wasm": ("application/wasm",),
}

# HTML attributes that make the browser fetch something (links a user clicks are not here).
_LOADING_ATTRIBUTES = {
    "script": ("src",), "link": ("href",), "img": ("src", "srcset"), "source": ("src", "srcset"),
    "audio": ("src",), "video": ("src", "poster"), "track": ("src",), "iframe": ("src",),
    "embed": ("src",), "object": ("data",), "input": ("src",),
}
_NOT_LOADED_LINKS = {"canonical", "alternate", "author", "help", "license", "next", "prev", "search"}

_JS_IMPORTS = [
    re.compile(r"""\bimport\s+(?:[\w$*{}\s,]+?\s+from\s+)?["']([^"']+)["']"""),   # import x from "y"; import "y"
    re.compile(r"""\bexport\s+[\w$*{}\s,]*?\s+from\s+["']([^"']+)["']"""),         # export {x} from "y"
    re.compile(r"""\bimport\(\s*["']([^"']+)["']\s*\)"""),                          # import("y")
    re.compile(r"""\bnew\s+URL\(\s*["']([^"']+)["']\s*,\s*import\.meta\.url"""),   # new URL("y", import.meta.url)
]
_CSS_REFERENCES = [
    re.compile(r"""url\(\s*["']?([^"')\s]+)["']?\s*\)"""),
    re.compile(r"""@import\s+["']([^"']+)["']"""),
]


class _PageReferences(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: List[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "link" and set((attrs.get("rel") or "").lower().split()) & _NOT_LOADED_LINKS:
            return
        for name in _LOADING_ATTRIBUTES.get(tag, ()):
            value = attrs.get(name)
            if value and name == "srcset":
                self.found += [part.split()[0] for part in value.split(",") if part.strip()]
            elif value:
                self.found.append(value)
        if attrs.get("style"):
            self.found += css_references(attrs["style"])
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.found += css_references(data)


def html_references(text: str) -> List[str]:
    parser = _PageReferences()
    parser.feed(text)
    return parser.found


def js_references(text: str) -> List[str]:
    return [ref for pattern in _JS_IMPORTS for ref in pattern.findall(text)]


def css_references(text: str) -> List[str]:
    return [ref for pattern in _CSS_REFERENCES for ref in pattern.findall(text)]


def references(url: str, content_type: str, text: str) -> List[str]:
    if content_type.startswith("text/html"):
        return html_references(text)
    if "javascript" in content_type:
        return js_references(text)
    if content_type.startswith("text/css"):
        return css_references(text)
    return []


def crawl(http: httpx.Client, page_url: str, page: httpx.Response) -> Dict[str, str]:
    """Every file ``page`` makes the browser load, fetched through ``http``: URL -> content
    type. Fails on the first one that is missing, foreign or of the wrong type."""
    origin = urlsplit(page_url)[:2]
    todo = [(page_url, ref) for ref in references(page_url, page.headers["content-type"], page.text)]
    seen: Dict[str, str] = {}
    while todo:
        base, ref = todo.pop()
        if ref.startswith(("data:", "blob:", "#", "about:")):
            continue
        url = urljoin(base, ref).split("#")[0]
        if url in seen:
            continue
        # A classroom may have no internet: everything comes from our own server.
        assert urlsplit(url)[:2] == origin, f"{base} loads {ref} from another origin"
        response = http.get(url)
        assert response.status_code == 200, f"{base} references {ref}: {url} answers {response.status_code}"
        assert response.content, f"{url} is empty"
        suffix = Path(urlsplit(url).path).suffix.lower()
        assert suffix in CONTENT_TYPES, f"{url}: what type must a {suffix or 'suffix-less'} file be served as?"
        content_type = response.headers.get("content-type", "")
        assert content_type.split(";")[0].strip().lower() in CONTENT_TYPES[suffix], (url, content_type)
        seen[url] = content_type
        todo += [(url, found) for found in references(url, content_type, response.text)]
    return seen


def xedullm_command() -> List[str]:
    """The `xedullm` command this Python installed (what a teacher types), not `python -m`."""
    script = Path(sys.executable).parent / ("xedullm.exe" if sys.platform == "win32" else "xedullm")
    assert script.exists(), f"no xedullm command next to {sys.executable}: is the package installed?"
    return [str(script)]


@pytest.fixture
def served(teacher_fake, tmp_path):
    args = ["-p", "deepseek", "--base-url", teacher_fake.base_url, "--host", "127.0.0.1", "--port", "0",
            "--admin-password", PASSWORD, "--data-dir", str(tmp_path)]
    with serve_process(args, {"DEEPSEEK_API_KEY": TEACHER_KEY}, until="用量记录保存在",
                       program=xedullm_command()) as (proc, lines):
        yield next(line for line in lines if line.startswith("Running on local URL:")).split()[-1]


def test_every_file_the_student_page_loads_is_served(served):
    with httpx.Client(timeout=20) as http:
        page = http.get(served + "/")
        assert page.status_code == 200
        loaded = crawl(http, served + "/", page)
    scripts = [url for url, kind in loaded.items() if "javascript" in kind]
    # The page's own module and the modules it imports were found, and its style sheet.
    assert len(scripts) >= 2 and any("css" in kind for kind in loaded.values()), loaded


def test_every_file_the_admin_page_loads_is_served_after_login(served):
    with httpx.Client(timeout=20) as http:
        login_page = http.get(served + "/admin")
        assert login_page.status_code == 401 and 'action="/admin/login"' in login_page.text
        crawl(http, served + "/admin", login_page)
        assert http.post(served + "/admin/login", data={"password": PASSWORD}).status_code == 303
        page = http.get(served + "/admin")
        assert page.status_code == 200 and 'id="chart"' in page.text
        loaded = crawl(http, served + "/admin", page)
    assert len([kind for kind in loaded.values() if "javascript" in kind]) >= 2, loaded
    assert any("css" in kind for kind in loaded.values()), loaded


def test_the_reference_finder_reads_every_way_a_page_loads_a_file():
    html = ('<link rel="stylesheet" href="k/katex.css"><link rel="canonical" href="/elsewhere">'
            '<script type="module" src="a.js"></script><img srcset="i1.png 1x, i2.png 2x">'
            '<a href="/not-loaded.csv">x</a><style>body{background:url(bg.svg)}</style>')
    assert sorted(html_references(html)) == ["a.js", "bg.svg", "i1.png", "i2.png", "k/katex.css"]
    js = ('import { a } from "./a.js";\nimport * as b from \'./b.js\';\nimport "./c.js";\n'
          'export { d } from "./d.js";\nconst e = await import("./e.js");\n'
          'const w = new URL("./f.wasm", import.meta.url);\nconst s = "imported from nowhere";')
    assert sorted(js_references(js)) == ["./a.js", "./b.js", "./c.js", "./d.js", "./e.js", "./f.wasm"]
    css = ('@import "fonts.css";\n@font-face{src:url(fonts/KaTeX_Main-Regular.woff2) format("woff2"),'
           'url("fonts/KaTeX_Main-Regular.woff") format("woff"),url(\'x.ttf\')}')
    assert sorted(css_references(css)) == ["fonts.css", "fonts/KaTeX_Main-Regular.woff",
                                           "fonts/KaTeX_Main-Regular.woff2", "x.ttf"]
