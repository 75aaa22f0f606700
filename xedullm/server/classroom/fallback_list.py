"""The teacher's fallback list (admin setting ``fallback``), carried out by the Client.

``serve --fallback qwen --fallback local`` gives the Client its fallbacks at start; the teacher
can change the list on the admin page. The Client makes the new fallbacks itself
(``Client.set_fallback``, keys from the environment or the key store, as at start), so a spec
it cannot use is refused with its own words before anything is kept. Other servers on the same
store follow within a second (``LiveSettings`` calls :func:`follow`); a spec one of them cannot
use (no key on that machine) leaves its list as it was and says so in its console.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, List, Optional

from ...errors import ConfigurationError

if TYPE_CHECKING:
    from ...client import Client

log = logging.getLogger("xedullm.server")


def change(client: "Client", secrets: List[str], specs: Optional[List[str]]) -> List[str]:
    """Give ``client`` these fallbacks now (raises ConfigurationError naming a bad spec, and then
    changes nothing); returns them as the Client writes them, which is what is kept.

    ``secrets``: the server's list of what its log lines never show; new fallbacks' keys join it.
    """
    client.set_fallback(specs or [])
    secrets.extend(k for k in client.secrets() if k not in secrets)
    return client.fallback_specs


def follow(client: "Client", secrets: List[str], specs: Any) -> None:
    """The list read from the store, for this server's Client (a no-op when it has it already)."""
    wanted = list(specs or [])
    if wanted == client.fallback_specs:
        return
    try:
        change(client, secrets, wanted)
    except ConfigurationError as err:
        kept = ", ".join(client.fallback_specs) or "—"
        log.warning("这台服务器用不了老师选的备用服务商，仍用原来的（%s）/ This server cannot use the fallbacks the "
                    "teacher chose and keeps its own (%s): %s", kept, kept, err)
        return
    log.info("备用服务商已改为 / Fallbacks are now: %s", ", ".join(wanted) or "—")
