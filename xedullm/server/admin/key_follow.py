"""The running server follows the key store: a key saved or rotated with ``xedullm key
set/rotate`` (another terminal) or on the admin page is used by the next question within
about a second, without a restart.

Only through the Client (``Client.reload_credentials``): the server never reads the store
itself. Answers already running finish on the old key. Every server whose Client took its key
from *this machine's* store follows it (several ``xedullm serve`` on one computer, or servers
sharing one ``XEDULLM_HOME`` private file); servers on other computers have their own store.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, List

from ...errors import LLMError

log = logging.getLogger("xedullm.server")

#: seconds between two looks at the store (a stat of the private file; a keyring is read
#: again at most every ``keys.store.KEYRING_TTL`` seconds)
INTERVAL = 1.0


def follow_once(clients: List[Any], secrets: List[str], force: bool = False) -> bool:
    """Give each Client the store's key if it changed; new keys join ``secrets`` (what log
    lines never show). True when any key changed."""
    changed = False
    for client in clients:
        try:
            now = client.reload_credentials(force)
        except LLMError as err:   # a damaged key file, a locked keyring: keep the old key
            log.warning("读取密钥失败，仍用原来的密钥 / Could not read the key store; keeping the old key: %s", err)
            continue
        if now:
            secrets.extend(k for k in client.secrets() if k not in secrets)
            info = client.key_info
            log.info("已换用新的密钥 / Now using the new key %s for %s", info["api_key"], info["provider"])
            changed = True
    return changed


async def follow_forever(clients: List[Any], secrets: List[str]) -> None:
    while True:
        await asyncio.get_running_loop().run_in_executor(None, follow_once, clients, secrets)
        await asyncio.sleep(INTERVAL)
