"""The key box on the admin page: ``GET /admin/api/keys`` (the seed's guide per provider and
which key is in use, masked) and ``POST /admin/api/key`` (check a key live, then save it).

A key is taken **only from this computer**: a key typed on a student's computer is a key
shown on a student's computer. The socket's peer must be loopback and so must every address a
proxy named in ``X-Forwarded-For`` / ``Forwarded`` (a trusted proxy naming a classroom
computer is refused, and so is any forwarded address we cannot vouch for). A key is checked
live and saved by ``keys.check.check_and_save`` (as ``xedullm key rotate`` does); the server
holds it only through its Clients, which take it up with ``Client.reload_credentials``.
"""
from __future__ import annotations

import ipaddress
import json
import re
from typing import Any, Dict, List, Optional

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ... import catalog
from ...errors import ConfigurationError
from ...keys.check import check_and_save
from ..api.connection_guard import PEER
from ..state import state_of
from .key_follow import follow_once

MAX_BODY = 8 * 1024
_VERDICTS = {
    "invalid": ("服务商拒绝了这个密钥（可能复制错了、已删除或已泄露被禁用）。请到控制台新建一个再粘贴。",
                "The provider refused this key (mistyped, deleted, or disabled after a leak). Create a new one "
                "in the console and paste that."),
    "no_balance": ("这个密钥的账户没有余额或免费额度了：请先到控制台充值，或换一个有余额的密钥。",
                   "This key's account has no balance or free quota: top it up in the console first, or use "
                   "another key with balance."),
    "network": ("连不上服务商，没法验证这个密钥：请检查这台电脑的网络后再试。",
                "Could not reach the provider to check this key: check this computer's network, then try again."),
    "unknown": ("服务商暂时没有给出明确答复（可能太忙或出错）：请稍后再试。",
                "The provider gave no clear answer (busy or failing): try again in a moment."),
}


def _loopback(address: Optional[str], own: Optional[str] = None) -> bool:
    """A loopback address, or ``own``: the address the server was reached at (a connection
    from this computer to its own LAN address comes from that same address)."""
    if not address:
        return False
    address = address.strip().strip('"')
    if address.startswith("["):
        address = address[1:].split("]", 1)[0]
    elif address.count(":") == 1:
        address = address.split(":", 1)[0]   # host:port
    try:
        ip = ipaddress.ip_address(address)
        return ip.is_loopback or (own is not None and ip == ipaddress.ip_address(own))
    except ValueError:
        return False   # "unknown", a name, garbage: not vouched for


def from_this_machine(request: Request) -> bool:
    """The caller sits at the server's own keyboard: loopback peer, loopback forwarded chain."""
    peer = (request.scope.get("extensions") or {}).get(PEER) or request.scope.get("client")
    client = request.client.host if request.client else None
    server = request.scope.get("server")
    own = server[0] if server else None
    try:
        own = str(ipaddress.ip_address(own)) if own else None
    except ValueError:
        own = None
    if not _loopback(peer[0] if peer else None, own) or not _loopback(client, own):
        return False
    for name, value in request.headers.items():
        if name == "x-forwarded-for" or name == "x-real-ip":
            if not all(_loopback(a, own) for a in value.split(",")):
                return False
        elif name == "forwarded":
            named = re.findall(r"for=([^;,]+)", value, flags=re.I)
            if not all(_loopback(a, own) for a in named):
                return False
    return True


def _error(status: int, zh: str, en: str, kind: str = "invalid_request_error") -> Response:
    return JSONResponse({"error": {"message": f"{zh} / {en}", "type": kind}}, status_code=status,
                        headers={"Cache-Control": "no-store"})


def _clients(request: Request) -> List[Any]:
    state = state_of(request)
    return [state.client, *(c.client for c in state.compare)]


def _box(provider: catalog.Provider, in_use: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """One provider's key box: the seed's guide (from the catalog) and the key in use, masked."""
    return {
        "provider": provider.id, "label_zh": provider.label_zh, "label_en": provider.label_en,
        "key_url": provider.key_url, "key_steps_zh": provider.key_steps_zh, "key_steps_en": provider.key_steps_en,
        "free_quota_zh": provider.free_quota_zh, "free_quota_en": provider.free_quota_en,
        "needs_secret": provider.needs_secret, "in_use": in_use,
        "leaked_zh": [f"打开 {provider.key_url}，删除泄露的旧密钥（删除后它立刻失效，余额就安全了）。",
                      "在同一页面新建一个密钥并复制。",
                      "粘贴到上面的框里，点“验证并保存”：验证通过后全班下一个问题就用新密钥。"],
        "leaked_en": [f"Open {provider.key_url} and delete the leaked key (it stops working at once; your "
                      f"balance is safe).",
                      "Create a new key on the same page and copy it.",
                      "Paste it in the box above and press Check and save: once it passes, the class's next "
                      "question uses it."],
    }


async def key_boxes(request: Request) -> Response:
    """Every provider that needs a key; the class's own provider first, with its key in use."""
    in_use: Dict[str, Dict[str, Any]] = {}
    for client in _clients(request):
        info = client.key_info
        if info["provider"] and info["provider"] not in in_use:
            in_use[info["provider"]] = info
    own = state_of(request).client.provider
    order = sorted((p for p in catalog.PROVIDERS if p.needs_key), key=lambda p: own is None or p.id != own.id)
    return JSONResponse({"local": from_this_machine(request),
                         "providers": [_box(p, in_use.get(p.id)) for p in order]},
                        headers={"Cache-Control": "no-store"})


async def save_key(request: Request) -> Response:
    if not from_this_machine(request):
        # Refused before the body is read: the key never reaches anything of ours.
        return _error(403, "只能在运行服务器的这台电脑上输入密钥（在别的电脑上输入，密钥就会出现在那台电脑上）。"
                           "请在老师电脑上打开 http://127.0.0.1:端口/admin 再粘贴。",
                      "Keys can only be entered on the computer running the server (a key typed elsewhere is "
                      "shown on that computer). Open http://127.0.0.1:PORT/admin on the teacher's computer and "
                      "paste it there.", "permission_error")
    raw = bytearray()
    async for piece in request.stream():
        raw += piece
        if len(raw) > MAX_BODY:
            return _error(413, "请求太大：只需粘贴密钥。", "Request too large: paste the key only.")
    try:
        data = json.loads(bytes(raw))
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("provider"), str) \
            or not isinstance(data.get("api_key"), str) \
            or not isinstance(data.get("secret_key", ""), (str, type(None))):
        return _error(400, "请求应是 {\"provider\": ..., \"api_key\": ...[, \"secret_key\": ...]}。",
                      "Send {\"provider\": ..., \"api_key\": ...[, \"secret_key\": ...]}.")
    state = state_of(request)
    secrets = state.secrets
    try:
        provider = catalog.find_provider(data["provider"])
        # The check goes where this server's own Client for that provider goes (its base URL).
        same = [c for c in _clients(request) if c.provider is not None and c.provider.id == provider.id]
        base_url = same[0].base_url if same else None
        result = await anyio.to_thread.run_sync(
            lambda: check_and_save(provider, data["api_key"], data.get("secret_key"), base_url=base_url))
    except ConfigurationError as err:
        from ...keys import redact

        return _error(400, *_halves(redact(str(err), [data.get("api_key"), data.get("secret_key")])))
    finally:
        data.clear()
    if not result.ok:
        zh, en = _VERDICTS[result.status]
        return _error(400, f"没有保存。{zh}", f"Nothing was saved. {en}")
    # The new key joins what logs never show, and every Client of this server takes it up now.
    await anyio.to_thread.run_sync(lambda: follow_once(_clients(request), secrets, force=True))
    info = next((c.key_info for c in _clients(request) if c.key_info["provider"] == provider.id), None)
    return JSONResponse({"ok": True, "provider": provider.id, "in_use": info,
                         "message": f"已验证并保存{provider.label_zh}的密钥，下一个问题就会用上。 / "
                                    f"Checked and saved the {provider.label_en} key; the next question uses it."},
                        headers={"Cache-Control": "no-store"})


def _halves(message: str) -> tuple:
    zh, sep, en = message.partition(" / ")
    return (zh, en) if sep else (message, message)
