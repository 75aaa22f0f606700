"""Engines do all the I/O: ``http`` (the wires + a protocol adapter) and ``local`` (llama.cpp).

Both are imported only when the first request needs them, so ``import xedullm`` stays light.
"""
from __future__ import annotations

from typing import Optional

from ..catalog import Provider
from ..types import Connection
from .engine import Engine

__all__ = ["Engine", "open_engine"]


def open_engine(provider: Optional[Provider], conn: Connection, model: Optional[str], *,
                timeout: float, max_retries: int, relay_server_messages: bool = False) -> Engine:
    """The engine for a provider row (None: any OpenAI-compatible server at ``conn.base_url``)."""
    protocol = provider.protocol if provider else "openai"
    if protocol == "local":
        from .local import LocalEngine

        return LocalEngine(model)
    from ..protocols import adapter_for
    from .http import HTTPEngine

    if provider is not None and provider.header_env:
        provider = _with_env_headers(provider)
    adapter = adapter_for(protocol, provider)
    # A classroom server already wrote a student-facing bilingual message.
    adapter.relay_server_messages = relay_server_messages
    engine = HTTPEngine(adapter, conn, timeout=timeout, max_retries=max_retries)
    if relay_server_messages:
        # A teacher's server: ours, or an old XEduLLM (Gradio) one; found on first use.
        from .teacher_server import ClassroomEngine

        return ClassroomEngine(engine)
    return engine


def _with_env_headers(provider: Provider) -> Provider:
    """The row with its optional headers (Qianfan v2's ``appid``) taken from the environment."""
    import dataclasses
    import os

    headers = {name: os.environ[env].strip() for name, env in provider.header_env.items()
               if os.environ.get(env, "").strip()}
    if not headers:
        return provider
    return dataclasses.replace(provider, extra_headers={**provider.extra_headers, **headers})
