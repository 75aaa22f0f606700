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
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Optional
from urllib.parse import parse_qs

import anyio
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ...classroom_presets import presets
from ...errors import ConfigurationError
from ...pictures import PLACEHOLDER, is_image_part
from ..class_address import class_url, qr_svg
from ..classroom import fallback_list, student_tokens
from ..classroom.token_sheet import sheet_csv, sheet_html
from .alerts import alerts, key_missing_alert
from .key_routes import key_boxes, save_key
from .auth import CSRF_HEADER, Sessions, password_matches, retry_after, same_origin, wait_left
from ..classroom.room import Classroom, today
from ..settings import admin_changes
from ..state import state_of
from ..store.contract import StudentToken
from ..web.page_routes import PAGE_HEADERS

if TYPE_CHECKING:
    from ...client import Client

ADMIN_DIR = Path(__file__).parent / "static"
ASSETS = ("admin.js", "admin.css", "chart.js", "review.js", "presets.js", "keys.js")
SERIES_HOURS = 6
SERIES_BUCKET = 600.0
_MAX_FORM = 4096
_MAX_JSON = 64 * 1024
REVIEW_LIMIT = 500
# The admin pages keep the policy they were written for: the login page styles itself with a
# <style> element, which the student page's stricter policy refuses.
ADMIN_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
             "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
             "base-uri 'none'; form-action 'self'; frame-ancestors 'self'")
_HEADERS = dict(PAGE_HEADERS, **{"Content-Security-Policy": ADMIN_CSP, "Cache-Control": "no-store"})

_LOGIN_MESSAGES = {
    "wrong": ("密码不对，请再试一次。", "Wrong password; try again."),
    "wait": ("错误次数太多，请等 {s} 秒后再试。", "Too many wrong passwords; wait {s} seconds, then try again."),
    "foreign": ("请从本服务器的管理页登录。", "Log in from this server's own admin page."),
}


def _room(request: Request) -> Classroom:
    room = state_of(request).classroom
    assert room is not None  # admin routes exist only with classroom controls
    return room


def _sessions(request: Request) -> Sessions:
    state = state_of(request)
    if state.admin_sessions is None:
        room = _room(request)
        state.admin_sessions = Sessions(room.store, room.admin_password, room.call)
    return state.admin_sessions


def _login_page(status: int, message: str = "", extra: Optional[Dict[str, str]] = None) -> Response:
    text = (ADMIN_DIR / "login.html").read_text("utf-8")
    text = text.replace("<!--message-->", html.escape(message))
    return HTMLResponse(text, status_code=status, headers=dict(_HEADERS, **(extra or {})))


def _denied(status: int = 401) -> Response:
    zh, en = (("请先在 /admin 用老师密码登录。", "Log in at /admin with the teacher's password first.")
              if status == 401 else ("请求来源不对，已拒绝。", "Refused: the request did not come from the admin page."))
    return JSONResponse({"error": {"message": f"{zh} / {en}", "type": "authentication_error"}},
                        status_code=status, headers={"Cache-Control": "no-store"})


def _guarded(handler: Callable[[Request], Awaitable[Response]], *, change: bool = False):
    """Only the teacher's session; changes also need the admin page's CSRF header."""
    async def endpoint(request: Request) -> Response:
        if not await _sessions(request).valid(request):
            return _denied(401)
        if not same_origin(request) or (change and request.headers.get(CSRF_HEADER) != "1"):
            return _denied(403)
        try:
            return await handler(request)
        except _BodyRefused as err:
            return _bad(err, err.status)
    endpoint.__name__ = handler.__name__
    return endpoint


async def page(request: Request) -> Response:
    if not await _sessions(request).valid(request):
        return _login_page(401)
    return FileResponse(ADMIN_DIR / "index.html", headers=_HEADERS)


async def login(request: Request) -> Response:
    room = _room(request)
    if not same_origin(request):
        return _login_page(403, _message("foreign"))
    # The socket's address, or the one a proxy the teacher named forwarded (runner.py).
    client = request.client.host if request.client else "unknown"
    # The whole form first: nothing is decided while the attempt could still be arriving.
    raw = await _read(request, _MAX_FORM)
    now = time.time()
    before = await room.call(room.store.login_failures, client)
    wait = wait_left(before, now)
    if wait > 0:
        return _login_page(429, _message("wait", s=retry_after(wait)), {"Retry-After": retry_after(wait)})
    # Counted before the password is looked at: of attempts sent together, only the one counted
    # right after the count read above is evaluated; the others wait like any further try.
    counted = await room.call(room.store.note_login_failure, client, now)
    if counted.count != before.count + 1:
        wait = max(1.0, wait_left(counted, now))
        return _login_page(429, _message("wait", s=retry_after(wait)), {"Retry-After": retry_after(wait)})
    given = (parse_qs(raw.decode("utf-8", "replace")).get("password") or [""])[0]
    if not password_matches(given, room.admin_password):
        wait = wait_left(counted, now)
        if wait > 0:
            return _login_page(429, _message("wait", s=retry_after(wait)), {"Retry-After": retry_after(wait)})
        return _login_page(401, _message("wrong"))
    await room.call(room.store.clear_login_failures, client)
    response = RedirectResponse("/admin", status_code=303, headers={"Cache-Control": "no-store"})
    response.headers["Set-Cookie"] = await _sessions(request).new_cookie()
    return response


async def logout(request: Request) -> Response:
    await _sessions(request).end(request)   # on the server: a copy of the cookie stops working too
    response = JSONResponse({"ok": True})
    response.headers["Set-Cookie"] = Sessions.ended_cookie()
    return response


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in ASSETS:
        return JSONResponse({"error": {"message": "没有这个文件。/ No such file."}}, status_code=404)
    return FileResponse(ADMIN_DIR / name, headers=_HEADERS)


async def overview(request: Request) -> Response:
    state = state_of(request)
    data = await _room(request).call(_overview, _room(request), state.client)
    data["class_url"] = class_url(request)
    return JSONResponse(data)


async def preset_list(request: Request) -> Response:
    """The classroom presets for the page's picker (it fills the system prompt box; saving
    goes through the settings API like a prompt typed by hand)."""
    return JSONResponse({"presets": [p.as_dict() for p in presets()]}, headers=_HEADERS)


async def qr_code(request: Request) -> Response:
    """The class address as a QR code, for the projector."""
    return Response(qr_svg(class_url(request)), media_type="image/svg+xml", headers=_HEADERS)


async def review(request: Request) -> Response:
    """Today's kept conversations, newest first: one student's (``who``) or everyone's,
    optionally only those containing ``q``."""
    room = _room(request)
    who = request.query_params.get("who") or None
    query = (request.query_params.get("q") or "").strip()
    if not room.review:
        return JSONResponse({"review": False, "conversations": []})
    rows = await room.call(room.store.conversations, today(), who, REVIEW_LIMIT)
    found = [c for c in (_conversation(r) for r in rows) if _matches(c, query)]
    return JSONResponse({"review": True, "conversations": found})


async def create_batch(request: Request) -> Response:
    room = _room(request)
    data = await _json_body(request)
    try:
        limits = _limits(data)
        count = student_tokens.positive(data.get("count"), "count")
        pairs = await room.call(student_tokens.create_batch, room.store, str(data.get("prefix") or ""), count,
                                limits)
    except ConfigurationError as err:
        return _bad(err)
    url = class_url(request)
    # The only time these tokens are ever shown, here and in the sheet the page offers to save.
    return JSONResponse({"tokens": [{"name": n, "token": t} for n, t in pairs], "url": url,
                         "sheet_html": sheet_html(pairs, url), "sheet_csv": sheet_csv(pairs, url)},
                        headers={"Cache-Control": "no-store"})


async def create_token(request: Request) -> Response:
    room = _room(request)
    data = await _json_body(request)
    try:
        name = student_tokens.check_name(data.get("name"))
        limits = _limits(data)
    except ConfigurationError as err:
        return _bad(err)
    try:
        token = await room.call(student_tokens.create_token, room.store, name, limits)
    except ConfigurationError as err:
        return _bad(err)
    # The only time the token is ever shown: the store keeps just its hash.
    return JSONResponse({"name": name, "token": token}, headers={"Cache-Control": "no-store"})


async def update_token(request: Request) -> Response:
    room = _room(request)
    data = await _json_body(request)
    try:
        limits = _limits(data)
    except ConfigurationError as err:
        return _bad(err)
    if not await room.call(room.store.update_token, str(data.get("name")), limits):
        return _bad(ConfigurationError("没有这个（未停用的）令牌。/ No such (unrevoked) token."), 404)
    return JSONResponse({"ok": True})


async def revoke_token(request: Request) -> Response:
    room = _room(request)
    data = await _json_body(request)
    if not await room.call(room.store.revoke_token, str(data.get("name")), time.time()):
        return _bad(ConfigurationError("没有这个（未停用的）令牌。/ No such (unrevoked) token."), 404)
    return JSONResponse({"ok": True})


async def change_settings(request: Request) -> Response:
    state = state_of(request)
    client = state.client
    model = client.model
    try:
        changes = admin_changes(await _json_body(request))
        if changes.get("model") is not None:
            client.set_model(changes["model"])  # refused here if the model cannot be used
        if "fallback" in changes:
            # Made by the Client (finding keys may read the key store): refused here, naming the
            # spec, if one cannot be used; what is kept is how the Client writes them.
            changes["fallback"] = await anyio.to_thread.run_sync(fallback_list.change, client, state.secrets,
                                                                 changes["fallback"])
    except ConfigurationError as err:
        if client.model != model:
            client.set_model(model)   # nothing of a refused change stays
        return _bad(err)
    await _room(request).call(state.live.apply, changes)
    if changes.get("access_code"):
        state.secrets.append(changes["access_code"])  # kept out of log lines like the first one
    return JSONResponse({"ok": True})


async def export(request: Request) -> Response:
    data = await _room(request).call(_csv, _room(request))
    stamp = time.strftime("%Y%m%d-%H%M")
    return Response(data, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="xedullm-usage-{stamp}.csv"', "Cache-Control": "no-store"})


def admin_routes() -> List[Route]:
    return [
        Route("/admin", page, methods=["GET"]),
        Route("/admin/login", login, methods=["POST"]),
        Route("/admin/logout", _guarded(logout, change=True), methods=["POST"]),
        Route("/admin/static/{name}", _guarded(asset), methods=["GET"]),
        Route("/admin/api/overview", _guarded(overview), methods=["GET"]),
        Route("/admin/api/tokens", _guarded(create_token, change=True), methods=["POST"]),
        Route("/admin/api/tokens/update", _guarded(update_token, change=True), methods=["POST"]),
        Route("/admin/api/tokens/revoke", _guarded(revoke_token, change=True), methods=["POST"]),
        Route("/admin/api/tokens/batch", _guarded(create_batch, change=True), methods=["POST"]),
        Route("/admin/api/qr.svg", _guarded(qr_code), methods=["GET"]),
        Route("/admin/api/presets", _guarded(preset_list), methods=["GET"]),
        Route("/admin/api/review", _guarded(review), methods=["GET"]),
        Route("/admin/api/settings", _guarded(change_settings, change=True), methods=["POST"]),
        Route("/admin/api/export.csv", _guarded(export), methods=["GET"]),
        Route("/admin/api/keys", _guarded(key_boxes), methods=["GET"]),
        Route("/admin/api/key", _guarded(save_key, change=True), methods=["POST"]),
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


class _BodyRefused(Exception):
    """An admin body that cannot be read as what was sent: too large (413) or not text (400)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


async def _json_body(request: Request) -> Dict[str, Any]:
    """The admin page's JSON object, whole: a body over the limit is refused naming the limit
    (never read cut short as {}), and a lone surrogate anywhere is refused before it reaches the
    store or a log line."""
    declared = request.headers.get("content-length", "")
    too_large = declared.isdigit() and int(declared) > _MAX_JSON
    raw = b"" if too_large else await _read(request, _MAX_JSON + 1)
    if too_large or len(raw) > _MAX_JSON:
        raise _BodyRefused(f"设置内容太大：最多 {_MAX_JSON} 字节（约 {_MAX_JSON // 3} 个汉字），请缩短后再保存。/ "
                           f"The settings are too large: at most {_MAX_JSON} bytes (about {_MAX_JSON // 3} "
                           f"Chinese characters); shorten them and save again.", 413)
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if _has_lone_surrogate(data):
        raise _BodyRefused("内容里有无法保存的字符（孤立的代理项 \\ud800–\\udfff），请删除后再保存。/ The text holds a "
                           "character that cannot be saved (a lone surrogate, \\ud800–\\udfff); remove it and "
                           "save again.", 400)
    return data if isinstance(data, dict) else {}


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


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


# -- reports (run on the store thread) -------------------------------------------------------
def _overview(room: Classroom, client: "Client") -> Dict[str, Any]:
    store = room.store
    now = time.time()
    day = today(now)
    totals = store.day_totals(day)
    tokens = store.tokens()
    limit_of = {t.name: t.limits.daily_tokens if t.limits.daily_tokens is not None else room.per_student_daily
                for t in tokens if t.revoked is None}
    since = (now // SERIES_BUCKET + 1) * SERIES_BUCKET - SERIES_HOURS * 3600
    series = {start: (tokens_used, count) for start, tokens_used, count in store.series(since, SERIES_BUCKET)}
    provider = client.provider
    live = room.settings
    waiting = [key_missing_alert(provider)] if provider is not None and provider.needs_key \
        and not client.key_info["api_key"] else []
    return {
        "day": day,
        "now": now,
        "alerts": waiting + alerts(store.recent(200), now=now, provider=provider, tokens_today=totals.tokens,
                                   daily_budget=room.daily_budget, primary=client.label)
                  + room.guesses.alerts(now) + room.browser_ids.alerts(now),
        "flagged": _flagged(store.flagged(day), room.review),
        "totals": {"requests": totals.requests, "tokens": totals.tokens, "errors": totals.errors},
        "settings": {
            "system_prompt": live.get("system_prompt"), "model": live.get("model"),
            "models": sorted(set(getattr(provider, "models", ()) or ()) | {live.get("model")}),
            "provider": provider.id if provider else None,
            "daily_budget": room.daily_budget, "per_student_daily": room.per_student_daily,
            "browser_ids_per_address": live.get("browser_ids_per_address"),
            "review": room.review, "access_code_required": room.access_code is not None,
            "paused": room.paused, "require_name": room.require_name,
            "fallback": live.get("fallback") or [],
            "allow_pictures": bool(live.get("allow_pictures")), "store_pictures": bool(live.get("store_pictures")),
        },
        "series": [{"start": since + i * SERIES_BUCKET,
                    "tokens": series.get(since + i * SERIES_BUCKET, (0, 0))[0],
                    "requests": series.get(since + i * SERIES_BUCKET, (0, 0))[1]}
                   for i in range(int(SERIES_HOURS * 3600 / SERIES_BUCKET))],
        "students": [{"who": s.who or None, "name": s.name, "requests": s.requests, "tokens": s.tokens,
                      "errors": s.errors,
                      "limit": limit_of.get(s.who, room.per_student_daily) if s.who else None}
                     for s in totals.students],
        "recent": [_public_row(r, room.review) for r in store.recent(50)],
        "errors": [_public_row(r, room.review) for r in store.recent(20, errors_only=True)],
        "tokens": [_token_view(t, store.used(day, t.name)) for t in tokens],
    }


def _flagged(rows: List[Dict[str, Any]], review: bool) -> Dict[str, Any]:
    """Today's flagged questions and answers: how many, by whom (with names), the latest."""
    by_who: Dict[str, Dict[str, Any]] = {}
    for row in rows:   # newest first: the first name seen is the latest one given
        who = row["who"] or ""
        entry = by_who.setdefault(who, {"who": row["who"], "name": row.get("name"), "count": 0})
        entry["count"] += 1
    return {"count": len(rows), "students": sorted(by_who.values(), key=lambda e: -e["count"]),
            "recent": [_public_row(r, review) for r in rows[:20]]}


def _public_row(row: Dict[str, Any], review: bool) -> Dict[str, Any]:
    row = dict(row)
    row["latency_ms"] = round(row.pop("latency") * 1000)
    if not review:
        row.pop("conversation", None)
    elif row.get("conversation"):
        row["conversation"] = json.loads(row["conversation"])
    return row


def _conversation(row: Dict[str, Any]) -> Dict[str, Any]:
    kept = json.loads(row["conversation"])
    # A question with pictures is shown as its text and "[图片 / picture]" for each picture.
    messages = [dict(m, content=_shown_text(m.get("content"))) for m in kept.get("messages") or []]
    asked = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
    return {"id": row["id"], "started": row["started"], "who": row["who"], "name": row.get("name"),
            "model": row["model"], "outcome": row["outcome"], "total_tokens": row["total_tokens"],
            "question": asked, "answer": kept.get("answer") or "", "messages": messages}


def _shown_text(content: Any) -> Any:
    if not isinstance(content, list):
        return content
    return "".join(PLACEHOLDER if is_image_part(p) else p.get("text", "") for p in content if isinstance(p, dict))


def _matches(conversation: Dict[str, Any], query: str) -> bool:
    if not query:
        return True
    query = query.casefold()
    texts = [conversation["name"] or "", conversation["who"] or "", conversation["answer"]]
    texts += [str(m.get("content") or "") for m in conversation["messages"]]
    return any(query in text.casefold() for text in texts)


def _token_view(token: StudentToken, used: int) -> Dict[str, Any]:
    limits = token.limits
    return {"name": token.name, "created": token.created, "revoked": token.revoked, "used_today": used,
            "daily_tokens": limits.daily_tokens, "rpm": limits.rpm, "concurrent": limits.concurrent,
            "models": list(limits.models), "expires": student_tokens.expires_text(limits.expires),
            "expired": limits.expires is not None and time.time() >= limits.expires}


_CSV_COLUMNS = ("id", "time", "who", "model", "stream", "status", "outcome", "prompt_tokens",
                "completion_tokens", "total_tokens", "charged", "latency_ms", "name", "flagged", "provider",
                "fallback_reason", "estimated")


def _csv(room: Classroom) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    columns = _CSV_COLUMNS + (("conversation",) if room.review else ())
    writer.writerow(columns)
    for row in room.store.rows():
        row = dict(row, time=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row["started"])),
                   latency_ms=round(row["latency"] * 1000),
                   # charged from characters: the provider reported no usage (the answer was cut)
                   estimated="yes" if row.get("total_tokens") is None and row.get("charged") else "")
        writer.writerow([_cell(row.get(c)) for c in columns])
    # The BOM lets Excel on Chinese Windows read the file as UTF-8.
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def _cell(value: Any) -> Any:
    # A cell starting with = + - @ would run as a formula in a spreadsheet.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value
