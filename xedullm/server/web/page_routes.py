"""The student page: ``/`` and its files under ``/static``. Everything it shows comes from
``/api/info`` and ``/v1/*``; nothing here knows the key."""
from __future__ import annotations

from pathlib import Path
from typing import List

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"

# The page renders model output; even if rendering ever slipped, the browser must refuse
# to run injected script or fetch anything from outside the teacher's server.
# KaTeX positions the parts of a formula with style attributes, so those (and only those:
# no <style> elements, no inline script) are allowed; its fonts come from /static.
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'self'")
PAGE_HEADERS = {"Content-Security-Policy": PAGE_CSP, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer"}


async def page(request: Request) -> Response:
    index = STATIC_DIR / "index.html"
    if not index.is_file():
        return HTMLResponse("<p>聊天页面缺失，请重新安装 xedullm。/ The chat page is missing; reinstall xedullm.</p>",
                            status_code=500, headers=PAGE_HEADERS)
    return FileResponse(index, headers=dict(PAGE_HEADERS, **{"Cache-Control": "no-cache"}))


def web_routes() -> List[BaseRoute]:
    return [
        Route("/", page, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR, check_dir=False), name="static"),
    ]
