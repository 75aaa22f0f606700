"""The floor: the barest pass-through proxy, so the tables can say what a server adds beyond
what forwarding itself costs.

    python floor_proxy.py aiohttp|httpx PORT UPSTREAM_URL KEY

A Starlette app under uvicorn's defaults (the same libraries ``xedullm serve`` runs on) that
sends every ``POST /v1/chat/completions`` body unchanged to the upstream with the key added,
and sends the upstream's bytes back as they come: no parsing, no policy, no ledger. Either an
aiohttp ``ClientSession`` or an httpx ``AsyncClient`` makes the upstream call.
"""
from __future__ import annotations

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def app_with_aiohttp(upstream: str, key: str) -> Starlette:
    import aiohttp

    session = None
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    async def chat(request: Request) -> Response:
        nonlocal session
        if session is None:
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        body = await request.body()
        upstream_response = await session.post(f"{upstream}/chat/completions", data=body, headers=headers)
        kind = upstream_response.headers.get("content-type", "")
        if "event-stream" not in kind:
            data = await upstream_response.read()
            upstream_response.release()
            return Response(data, status_code=upstream_response.status, media_type=kind)

        async def pieces():
            try:
                async for piece in upstream_response.content.iter_any():
                    yield piece
            finally:
                upstream_response.release()
        return StreamingResponse(pieces(), status_code=upstream_response.status, media_type=kind)

    return _app(chat)


def app_with_httpx(upstream: str, key: str) -> Starlette:
    import httpx

    client = httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60,
                               limits=httpx.Limits(max_connections=1000, max_keepalive_connections=32))

    async def chat(request: Request) -> Response:
        body = await request.body()
        sent = client.build_request("POST", f"{upstream}/chat/completions", content=body,
                                    headers={"Content-Type": "application/json"})
        upstream_response = await client.send(sent, stream=True)
        kind = upstream_response.headers.get("content-type", "")
        if "event-stream" not in kind:
            data = await upstream_response.aread()
            await upstream_response.aclose()
            return Response(data, status_code=upstream_response.status_code, media_type=kind)

        async def pieces():
            try:
                async for piece in upstream_response.aiter_raw():
                    yield piece
            finally:
                await upstream_response.aclose()
        return StreamingResponse(pieces(), status_code=upstream_response.status_code, media_type=kind)

    return _app(chat)


def _app(chat) -> Starlette:
    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": []})

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                             Route("/v1/models", models, methods=["GET"])])


def main() -> None:
    kind, port, upstream, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    app = {"aiohttp": app_with_aiohttp, "httpx": app_with_httpx}[kind](upstream, key)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
