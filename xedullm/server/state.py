"""What every request handler reaches through ``request.app.state.xedullm``."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Set

from .classroom.blocked_words import BlockedWords
from .classroom.gate import Gate
from .classroom.live_settings import LiveSettings
from .classroom.room import Classroom
from .classroom.compare_columns import Column

if TYPE_CHECKING:
    from ..client import Client
    from .settings import ServerSettings


@dataclass
class ServerState:
    client: "Client"
    settings: "ServerSettings"
    live: LiveSettings
    gate: Gate
    policy: Any                     # OpenPolicy, ClassroomPolicy, or one given in ServerSettings
    ledger: Any                     # NullLedger, StoreLedger, or one given in ServerSettings
    secrets: List[str] = field(repr=False)
    classroom: Optional[Classroom] = None
    admin_sessions: Any = None      # admin/auth.Sessions, made on the first admin request
    compare: List[Column] = field(default_factory=list)   # compare mode's columns, [] when off
    blocked: BlockedWords = field(default_factory=lambda: BlockedWords(()))   # --blocked-words
    _stopping: Optional[asyncio.Event] = field(default=None, repr=False)
    # What ends each answer still running, called by stop(): one set rather than a task per
    # answer waiting on the event.
    on_stop: Set[Callable[[], None]] = field(default_factory=set, repr=False)

    def client_for(self, admission: Any) -> "Client":
        """The Client that answers an admitted request: its compare column's, else the teacher's."""
        wanted = getattr(admission, "column", None)   # an embedding app's own policy may not set it
        for column in self.compare:
            if column.id == wanted:
                return column.client
        return self.client

    def stopping(self) -> asyncio.Event:
        """Set when the server shuts down; answers still running end with a clear message."""
        # Created on first use, inside the server's event loop (Python 3.9 binds it there).
        if self._stopping is None:
            self._stopping = asyncio.Event()
        return self._stopping


    def stop(self) -> None:
        """The server is shutting down: every answer still running ends with a clear message."""
        self.stopping().set()
        for end in list(self.on_stop):
            end()


def state_of(request: Any) -> ServerState:
    return request.app.state.xedullm
