"""The settings the teacher can change while the class runs, as they are now.

Kept in the store, so a change survives a restart and every server on one store sees it:
each server re-reads them every ``REFRESH`` seconds (one small read; see ``refresh_forever``).
Values given when the server starts (``Client.run()`` keywords, serve flags, the Client's
model and system prompt) are written first: what the teacher just typed wins over what was
remembered.

A setting that lives in the Client as well (its fallback providers) is handed to it by an ``on_change``
callback whenever the value read from the store differs from the one before, including at
start.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Dict, Optional

from ..settings import ADMIN_EDITABLE, BY_NAME, decode, encode
from ..store.contract import Store

log = logging.getLogger("xedullm.server")

REFRESH = 1.0


class LiveSettings:
    def __init__(self, store: Optional[Store], given: Dict[str, Any], *, model_scope: str,
                 fallbacks: Optional[Dict[str, Any]] = None,
                 on_change: Optional[Dict[str, Callable[[Any], None]]] = None) -> None:
        """``given``: values to use and keep now; ``fallbacks``: used where nothing is kept;
        ``on_change``: per setting, what to call with its new value (on the store's thread)."""
        self._store = store
        self._on_change = dict(on_change or {})
        # The model only means something for one provider: it is remembered per provider.
        self._model_key = f"model@{model_scope}"
        self._fallbacks = {name: BY_NAME[name].default for name in ADMIN_EDITABLE}
        self._fallbacks.update(fallbacks or {})
        self._values: Dict[str, Any] = dict(self._fallbacks)
        if store is None:
            self._values.update({k: v for k, v in given.items() if v is not None})
            return
        for name, value in given.items():
            if value is not None:
                store.set_setting(self._key(name), encode(name, value))
        self.load()

    def _key(self, name: str) -> str:
        return self._model_key if name == "model" else name

    def get(self, name: str) -> Any:
        return self._values[name]

    def as_dict(self) -> Dict[str, Any]:
        return dict(self._values)

    # -- store side (run these on the store's thread) --------------------------------------
    def load(self) -> None:
        if self._store is None:
            return
        before = dict(self._values)
        for name in ADMIN_EDITABLE:
            raw = self._store.get_setting(self._key(name))
            value = None if raw is None else decode(name, raw)
            self._values[name] = self._fallbacks[name] if value is None else value
        for name, follow in self._on_change.items():
            if self._values[name] != before[name]:
                follow(self._values[name])

    def apply(self, changes: Dict[str, Any]) -> None:
        """Keep checked changes (see settings.admin_changes) and use them from now on (the
        caller has already given the Client its part of them: no ``on_change`` here)."""
        if self._store is not None:
            for name, value in changes.items():
                self._store.set_setting(self._key(name), encode(name, value))
        self._values.update(changes)

    async def refresh_forever(self, run: Callable[[Callable[[], None]], Any]) -> None:
        """Re-read the store every REFRESH seconds through ``run`` (the store thread)."""
        while True:
            await asyncio.sleep(REFRESH)
            try:
                await run(self.load)
            except Exception as exc:  # noqa: BLE001 - a passing store hiccup must not end the loop
                log.warning("读取课堂设置失败，稍后重试 / Could not re-read the class settings: %s", type(exc).__name__)
