"""The teacher's admin page ``/admin`` and its JSON API ``/admin/api/…``.

Every path here needs the teacher's session cookie, except the login page itself (answered
with 401 until the teacher logs in) and the login form's POST. Students' access codes and
tokens open nothing here. See admin_auth.py for how the way in is guarded.
"""
from __future__ import annotations

import csv
import html
import io
import json
import time
from pathlib import Path
from typing import Any, Dict, List
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ...errors import ConfigurationError
from ..classroom import tokens as student_tokens
from .auth import CSRF_HEADER, Sessions, password_matches, retry_after, same_origin, wait_left
from ..classroom.room import Classroom, today
from ..store.base import StudentToken

ADMIN_DIR = Path(__file__).parent / "static"
ASSETS = ("admin.js", "admin.css", "chart.js")
SERIES_HOURS = 6
SERIES_BUCKET = 600.0
_MAX_FORM = 4096
_MAX_JSON = 64 * 1024
_SYSTEM_MAX = 20000

_LOGIN_MESSAGES = {
    "wrong": ("密码不对，请再试一次。", "Wrong password; try again."),
    "wait": ("错误次数太多，请等 {s} 秒后再试。", "Too many wrong passwords; wait {s} seconds, then try again."),
    "foreign": ("请从本服务器的管理页登录。", "Log in from this server's own admin page."),
}


def admin_routes(room: Classroom, page_headers: Dict[str, str]) -> List[Route]:
    sessions = Sessions(room.store, room.admin_password)
    headers = dict(page_headers, **{"Cache-Control": "no-store"})

    def login_page(status: int, message: str = "", extra: Dict[str, str] = None) -> Response:
        text = (ADMIN_DIR / "login.html").read_text("utf-8")
        text = text.replace("<!--message-->", html.escape(message))
        return HTMLResponse(text, status_code=status, headers=dict(headers, **(extra or {})))

    def denied(status: int = 401) -> Response:
        zh, en = (("请先在 /admin 用老师密码登录。", "Log in at /admin with the teacher's password first.")
                  if status == 401 else ("请求来源不对，已拒绝。", "Refused: the request did not come from the admin page."))
        return JSONResponse({"error": {"message": f"{zh} / {en}", "type": "authentication_error"}},
                            status_code=status, headers={"Cache-Control": "no-store"})

    def guarded(handler, *, change: bool = False):
        async def endpoint(request: Request) -> Response:
            if not sessions.valid(request):
                return denied(401)
            if not same_origin(request) or (change and request.headers.get(CSRF_HEADER) != "1"):
                return denied(403)
            return await handler(request)
        return endpoint

    async def page(request: Request) -> Response:
        if not sessions.valid(request):
            return login_page(401)
        return FileResponse(ADMIN_DIR / "index.html", headers=headers)

    async def login(request: Request) -> Response:
        if not same_origin(request):
            return login_page(403, _message("foreign"))
        client = request.client.host if request.client else "unknown"
        now = time.time()
        failures = await room.call(room.store.login_failures, client)
        wait = wait_left(failures, now)
        if wait > 0:
            return login_page(429, _message("wait", s=retry_after(wait)), {"Retry-After": retry_after(wait)})
        raw = await _read(request, _MAX_FORM)
        given = (parse_qs(raw.decode("utf-8", "replace")).get("password") or [""])[0]
        if not password_matches(given, room.admin_password):
            failures = await room.call(room.store.note_login_failure, client, now)
            wait = wait_left(failures, now)
            if wait > 0:
                return login_page(429, _message("wait", s=retry_after(wait)), {"Retry-After": retry_after(wait)})
            return login_page(401, _message("wrong"))
        await room.call(room.store.clear_login_failures, client)
        response = RedirectResponse("/admin", status_code=303, headers={"Cache-Control": "no-store"})
        response.headers["Set-Cookie"] = sessions.new_cookie()
        return response

    async def logout(request: Request) -> Response:
        response = JSONResponse({"ok": True})
        response.headers["Set-Cookie"] = sessions.ended_cookie()
        return response

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in ASSETS:
            return JSONResponse({"error": {"message": "没有这个文件。/ No such file."}}, status_code=404)
        return FileResponse(ADMIN_DIR / name, headers=headers)

    async def overview(request: Request) -> Response:
        return JSONResponse(await room.call(_overview, room))

    async def create_token(request: Request) -> Response:
        data = await _json_body(request)
        try:
            name = student_tokens.check_name(data.get("name"))
            limits = _limits(data)
        except ConfigurationError as err:
            return _bad(err)
        token = student_tokens.new_token()
        try:
            await room.call(room.store.add_token, name, student_tokens.digest(token), limits, time.time())
        except ValueError:
            return _bad(ConfigurationError(f"已经有叫“{name}”的令牌；换个名字，或先停用它。/ "
                                           f"A token named '{name}' already exists; pick another name or revoke it first."))
        # The only time the token is ever shown: the store keeps just its hash.
        return JSONResponse({"name": name, "token": token}, headers={"Cache-Control": "no-store"})

    async def update_token(request: Request) -> Response:
        data = await _json_body(request)
        try:
            limits = _limits(data)
        except ConfigurationError as err:
            return _bad(err)
        if not await room.call(room.store.update_token, str(data.get("name")), limits):
            return _bad(ConfigurationError("没有这个（未停用的）令牌。/ No such (unrevoked) token."), 404)
        return JSONResponse({"ok": True})

    async def revoke_token(request: Request) -> Response:
        data = await _json_body(request)
        if not await room.call(room.store.revoke_token, str(data.get("name")), time.time()):
            return _bad(ConfigurationError("没有这个（未停用的）令牌。/ No such (unrevoked) token."), 404)
        return JSONResponse({"ok": True})

    async def change_settings(request: Request) -> Response:
        data = await _json_body(request)
        try:
            changes = _settings(room, data)
        except ConfigurationError as err:
            return _bad(err)
        for key, value in changes.items():
            if key == "system_prompt":
                room.client.set_system(value)
            elif key == "model":
                room.client.model = value
            else:
                await room.call(room.change, key, value)
        return JSONResponse({"ok": True})

    async def export(request: Request) -> Response:
        data = await room.call(_csv, room)
        stamp = time.strftime("%Y%m%d-%H%M")
        return Response(data, media_type="text/csv; charset=utf-8", headers={
            "Content-Disposition": f'attachment; filename="xedullm-usage-{stamp}.csv"', "Cache-Control": "no-store"})

    return [
        Route("/admin", page, methods=["GET"]),
        Route("/admin/login", login, methods=["POST"]),
        Route("/admin/logout", guarded(logout, change=True), methods=["POST"]),
        Route("/admin/static/{name}", guarded(asset), methods=["GET"]),
        Route("/admin/api/overview", guarded(overview), methods=["GET"]),
        Route("/admin/api/tokens", guarded(create_token, change=True), methods=["POST"]),
        Route("/admin/api/tokens/update", guarded(update_token, change=True), methods=["POST"]),
        Route("/admin/api/tokens/revoke", guarded(revoke_token, change=True), methods=["POST"]),
        Route("/admin/api/settings", guarded(change_settings, change=True), methods=["POST"]),
        Route("/admin/api/export.csv", guarded(export), methods=["GET"]),
    ]


def _message(kind: str, **values: Any) -> str:
    zh, en = _LOGIN_MESSAGES[kind]
    return f"{zh.format(**values)} / {en.format(**values)}"


async def _read(request: Request, limit: int) -> bytes:
    raw = bytearray()
    async for piece in request.stream():
        raw += piece
        if len(raw) > limit:
            break
    return bytes(raw[:limit])


async def _json_body(request: Request) -> Dict[str, Any]:
    try:
        data = json.loads(await _read(request, _MAX_JSON))
    except ValueError:
        data = None
    return data if isinstance(data, dict) else {}


def _bad(err: ConfigurationError, status: int = 400) -> Response:
    return JSONResponse({"error": {"message": str(err), "type": "invalid_request_error"}}, status_code=status)


def _limits(data: Dict[str, Any]):
    models = data.get("models") or []
    if isinstance(models, str):
        models = models.split(",")
    if not isinstance(models, list):
        raise ConfigurationError("models 应是模型名的列表。/ models must be a list of model names.")
    return student_tokens.limits_from(daily_tokens=data.get("daily_tokens"), rpm=data.get("rpm"),
                                      concurrent=data.get("concurrent"), models=models,
                                      expires=data.get("expires"))


def _settings(room: Classroom, data: Dict[str, Any]) -> Dict[str, Any]:
    """The checked changes from an admin settings request (nothing is applied here)."""
    changes: Dict[str, Any] = {}
    if "system_prompt" in data:
        prompt = data["system_prompt"]
        if prompt is not None and (not isinstance(prompt, str) or len(prompt) > _SYSTEM_MAX):
            raise ConfigurationError(f"系统提示词应是不超过 {_SYSTEM_MAX} 字的文字。/ "
                                     f"The system prompt must be text of at most {_SYSTEM_MAX} characters.")
        changes["system_prompt"] = (prompt or "").strip() or None
    if "model" in data:
        model = data["model"]
        if not isinstance(model, str) or not model.strip() or len(model) > 200:
            raise ConfigurationError("请填写模型名。/ Enter a model name.")
        provider = room.client.provider
        if provider is not None and provider.protocol == "local" and model.strip() != room.client.model:
            raise ConfigurationError("本地模型不能在运行时更换；请重新启动服务器并用 -m 选择。/ "
                                     "The local model cannot be changed while running; restart the server "
                                     "with -m to pick another.")
        changes["model"] = model.strip()
    for key in ("daily_budget", "per_student_daily"):
        if key in data:
            changes[key] = student_tokens.positive(data[key], key)
    if "review" in data:
        if not isinstance(data["review"], bool):
            raise ConfigurationError("review 应是 true 或 false。/ review must be true or false.")
        changes["review"] = data["review"]
    return changes


# -- reports (run on the store thread) -------------------------------------------------------
def _overview(room: Classroom) -> Dict[str, Any]:
    store = room.store
    now = time.time()
    day = today(now)
    totals = store.day_totals(day)
    tokens = store.tokens()
    limit_of = {t.name: t.limits.daily_tokens if t.limits.daily_tokens is not None else room.per_student_daily
                for t in tokens if t.revoked is None}
    since = (now // SERIES_BUCKET + 1) * SERIES_BUCKET - SERIES_HOURS * 3600
    series = {start: (tokens_used, count) for start, tokens_used, count in store.series(since, SERIES_BUCKET)}
    provider = room.client.provider
    return {
        "day": day,
        "now": now,
        "totals": {"requests": totals.requests, "tokens": totals.tokens, "errors": totals.errors},
        "settings": {
            "system_prompt": room.client.system_prompt, "model": room.client.model,
            "models": sorted(set(getattr(provider, "models", ()) or ()) | {room.client.model}),
            "provider": provider.id if provider else None,
            "daily_budget": room.daily_budget, "per_student_daily": room.per_student_daily,
            "review": room.review, "access_code_required": room.access_code is not None,
        },
        "series": [{"start": since + i * SERIES_BUCKET,
                    "tokens": series.get(since + i * SERIES_BUCKET, (0, 0))[0],
                    "requests": series.get(since + i * SERIES_BUCKET, (0, 0))[1]}
                   for i in range(int(SERIES_HOURS * 3600 / SERIES_BUCKET))],
        "students": [{"who": s.who or None, "requests": s.requests, "tokens": s.tokens, "errors": s.errors,
                      "limit": limit_of.get(s.who, room.per_student_daily) if s.who else None}
                     for s in totals.students],
        "recent": [_public_row(r, room.review) for r in store.recent(50)],
        "errors": [_public_row(r, room.review) for r in store.recent(20, errors_only=True)],
        "tokens": [_token_view(t, store.used(day, t.name)) for t in tokens],
    }


def _public_row(row: Dict[str, Any], review: bool) -> Dict[str, Any]:
    row = dict(row)
    row["latency_ms"] = round(row.pop("latency") * 1000)
    if not review:
        row.pop("conversation", None)
    elif row.get("conversation"):
        row["conversation"] = json.loads(row["conversation"])
    return row


def _token_view(token: StudentToken, used: int) -> Dict[str, Any]:
    limits = token.limits
    return {"name": token.name, "created": token.created, "revoked": token.revoked, "used_today": used,
            "daily_tokens": limits.daily_tokens, "rpm": limits.rpm, "concurrent": limits.concurrent,
            "models": list(limits.models), "expires": student_tokens.expires_text(limits.expires),
            "expired": limits.expires is not None and time.time() >= limits.expires}


_CSV_COLUMNS = ("id", "time", "who", "model", "stream", "status", "outcome", "prompt_tokens",
                "completion_tokens", "total_tokens", "charged", "latency_ms")


def _csv(room: Classroom) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    columns = _CSV_COLUMNS + (("conversation",) if room.review else ())
    writer.writerow(columns)
    for row in room.store.rows():
        row = dict(row, time=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["started"])),
                   latency_ms=round(row["latency"] * 1000))
        writer.writerow([_cell(row.get(c)) for c in columns])
    # The BOM lets Excel on Chinese Windows read the file as UTF-8.
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def _cell(value: Any) -> Any:
    # A cell starting with = + - @ would run as a formula in a spreadsheet.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value
