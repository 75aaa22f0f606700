"""Everything the classroom server remembers, behind one small interface.

The ledger of requests, the holds of requests still running, student tokens, the teacher's
settings and failed admin logins all live in a :class:`Store`. SQLite (WAL, in the server's
data directory) is the default; a shared store (Redis, PostgreSQL) can replace it so that
several server processes serve one school. Nothing else in the server keeps state.

Methods are synchronous and each is one transaction: the server calls them from one worker
thread, the CLI calls them directly.

**Budgets are exact at the boundary** in this sense: :meth:`Store.claim` checks and holds in
one transaction, and a request is admitted only while *today's recorded tokens plus the
tokens held by requests still running* are below the budget. Each running request holds its
estimate, clipped to what is left, so once the budget is reached nothing more is admitted,
and the total can pass the budget only by how much the last admitted answers used beyond
their holds.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple


@dataclass(frozen=True)
class TokenLimits:
    daily_tokens: Optional[int] = None    # tokens per day (None: the class's per-student default)
    rpm: Optional[int] = None             # requests per minute
    concurrent: Optional[int] = None      # requests running at once
    models: Tuple[str, ...] = ()          # models the student may choose; () = the teacher's only
    expires: Optional[float] = None       # epoch seconds after which the token stops working


@dataclass(frozen=True)
class StudentToken:
    name: str
    limits: TokenLimits
    created: float
    revoked: Optional[float] = None


DEFAULT_HOLD = 900.0   # seconds a hold counts if its request never reports back (no lease)


@dataclass(frozen=True)
class Claim:
    """What a request asks to hold before it goes upstream."""

    id: str
    who: str
    now: float
    day: str                      # the local date the budgets count ('2026-03-05')
    estimate: int                 # tokens this request may use, by our estimate
    class_budget: Optional[int]   # tokens per day for the whole class
    who_budget: Optional[int]     # tokens per day for this student
    rpm: Optional[int]
    concurrent: Optional[int]
    hold_for: float = DEFAULT_HOLD       # seconds a hold counts unless renewed (Store.lease) or released


@dataclass(frozen=True)
class ClaimResult:
    granted: bool
    refusal: Optional[str] = None     # 'class_budget' | 'who_budget' | 'class_held' | 'who_held'
                                      # | 'rpm' | 'concurrent'
    retry_after: Optional[float] = None
    held: int = 0


@dataclass(frozen=True)
class LedgerRow:
    started: float
    day: str
    latency: float
    who: Optional[str]
    model: Optional[str]
    stream: bool
    status: int
    outcome: str
    admitted: bool
    prompt_tokens: Optional[int]      # as reported upstream; None when it reported nothing
    completion_tokens: Optional[int]
    total_tokens: Optional[int]
    charged: int                      # what counts against budgets
    conversation: Optional[str] = None   # JSON, only with classroom review on
    name: Optional[str] = None        # the name shown beside ``who`` (token name or the page's name)
    flagged: bool = False             # blocked word in question/answer, or the provider's moderation
    provider: Optional[str] = None    # who answered (a fallback's id when the primary could not)
    # Then why the primary could not, as the error code its failure would have had as
    # ``outcome`` ('insufficient_quota', 'upstream_unreachable', …; 'circuit_open': skipped).
    fallback_reason: Optional[str] = None


# A ledger row's columns, as the stores name them: LedgerRow's fields, in order.
ROW_COLUMNS = tuple(f.name for f in fields(LedgerRow))


def row_statements(mark: str) -> Tuple[str, str, str]:
    """The three statements that write a batch of rows (RowWrites' holds, values, daily, in
    that order), for a driver whose placeholder is ``mark`` (? or %s): the SQL itself is
    the same in SQLite and PostgreSQL."""
    def marks(n: int) -> str:
        return ", ".join([mark] * n)

    return (f"DELETE FROM holds WHERE id = {mark}",
            f"INSERT INTO ledger ({', '.join(ROW_COLUMNS)}) VALUES ({marks(len(ROW_COLUMNS))})",
            f"INSERT INTO daily (day, who, requests, tokens, errors, name) VALUES ({marks(6)}) "
            "ON CONFLICT (day, who) DO UPDATE SET requests = daily.requests + excluded.requests, "
            "tokens = daily.tokens + excluded.tokens, errors = daily.errors + excluded.errors, "
            "name = COALESCE(excluded.name, daily.name)")


@dataclass
class RowWrites:
    """What writing a batch of rows changes, whatever the SQL dialect: the holds they give
    back, each row's column values, and one (day, who) total per caller instead of one
    update per row (a busy minute brings many rows of the same students)."""
    holds: List[Tuple[str]]
    values: List[tuple]
    # (day, who, requests, tokens, errors, name): the name the last of their rows gave
    daily: List[Tuple[str, str, int, int, int, Optional[str]]]

    def each(self, statements: Tuple[str, str, str]) -> Iterator[Tuple[str, list]]:
        """(statement, its parameter list) for ``executemany``, leaving out those with none."""
        for statement, params in zip(statements, (self.holds, self.values, self.daily)):
            if params:
                yield statement, params


def row_writes(rows: Sequence[Tuple[LedgerRow, Optional[str]]]) -> RowWrites:
    holds: List[Tuple[str]] = []
    values: List[tuple] = []
    daily: Dict[Tuple[str, str], List[Any]] = {}   # (day, who) -> [requests, tokens, errors, name]
    for row, claim_id in rows:
        if claim_id is not None:
            holds.append((claim_id,))
        values.append(tuple(getattr(row, c) for c in ROW_COLUMNS))
        total = daily.setdefault((row.day, row.who or ""), [0, 0, 0, None])
        total[0] += 1
        total[1] += row.charged
        total[2] += int(row.outcome != "ok")
        if row.name is not None:
            total[3] = row.name
    # In (day, who) order: servers sharing a database then take the rows' locks in one order.
    return RowWrites(holds, values, [(day, who, *daily[day, who]) for day, who in sorted(daily)])


@dataclass(frozen=True)
class WhoTotals:
    who: str
    requests: int
    tokens: int
    errors: int
    name: Optional[str] = None        # the latest name this caller gave today


@dataclass(frozen=True)
class LoginFailures:
    count: int = 0
    last: float = 0.0


@dataclass
class DayTotals:
    requests: int = 0
    tokens: int = 0
    errors: int = 0
    students: List[WhoTotals] = field(default_factory=list)


class Store(ABC):
    # Holds as leases: a store several servers share sets this to the seconds a hold lasts
    # unless the server running its answer renews it (every lease / 3 s, see renew), so a
    # killed server's holds lapse that soon. None: holds last Claim.hold_for, no renewal.
    lease: Optional[float] = None
    # Threads the server may call this store from at once (SQLite: one writer anyway).
    workers: int = 1

    # -- requests -------------------------------------------------------------------------
    @abstractmethod
    def claim(self, claim: Claim) -> ClaimResult:
        """Check every limit and, if all pass, hold ``claim.estimate`` (clipped) — atomically."""

    @abstractmethod
    def record(self, row: LedgerRow, claim_id: Optional[str] = None) -> None:
        """Write one ledger row and release the request's hold, in one transaction."""

    def record_many(self, rows: Sequence[Tuple[LedgerRow, Optional[str]]]) -> None:
        """Several rows (and their holds) as :meth:`record` does each, in one transaction: all
        or none. Optional; a store without it is given the rows one at a time."""
        raise NotImplementedError

    @abstractmethod
    def renew(self, claim_ids: Sequence[str], until: float) -> int:
        """Extend these holds to last until ``until`` (never shorten one); how many were found."""

    @abstractmethod
    def used(self, day: str, who: Optional[str] = None) -> int:
        """Tokens charged on ``day``, for the class or one student."""

    # -- reports for the teacher ----------------------------------------------------------
    @abstractmethod
    def day_totals(self, day: str) -> DayTotals: ...

    @abstractmethod
    def series(self, since: float, bucket: float) -> List[Tuple[float, int, int]]:
        """(bucket start, tokens, requests) per ``bucket`` seconds since ``since``, oldest first."""

    @abstractmethod
    def recent(self, limit: int, errors_only: bool = False) -> List[Dict]:
        """The latest ledger rows as dicts, newest first."""

    @abstractmethod
    def rows(self) -> Iterator[Dict]:
        """Every ledger row as a dict, oldest first (for export)."""

    def conversations(self, day: str, who: Optional[str] = None, limit: int = 500) -> List[Dict]:
        """``day``'s ledger rows that kept a conversation (classroom review), newest first.

        This reads every row; a store with an index on the day should answer it directly."""
        found = [r for r in self.rows()
                 if r["day"] == day and r.get("conversation") and (who is None or r["who"] == who)]
        return found[::-1][:limit]

    def flagged(self, day: str, limit: int = 500) -> List[Dict]:
        """``day``'s flagged ledger rows, newest first.

        This reads every row; a store with an index on the day should answer it directly."""
        return [r for r in self.rows() if r["day"] == day and r.get("flagged")][::-1][:limit]

    # -- student tokens -------------------------------------------------------------------
    @abstractmethod
    def add_token(self, name: str, digest: str, limits: TokenLimits, now: float) -> None:
        """Raise ValueError if an unrevoked token already has this name."""

    @abstractmethod
    def token_by_digest(self, digest: str) -> Optional[StudentToken]: ...

    @abstractmethod
    def tokens(self) -> List[StudentToken]: ...

    @abstractmethod
    def update_token(self, name: str, limits: TokenLimits) -> bool: ...

    @abstractmethod
    def revoke_token(self, name: str, now: float) -> bool: ...

    # -- settings and admin logins --------------------------------------------------------
    @abstractmethod
    def get_setting(self, key: str) -> Optional[str]: ...

    @abstractmethod
    def set_setting(self, key: str, value: Optional[str]) -> None: ...

    @abstractmethod
    def login_failures(self, client: str) -> LoginFailures: ...

    @abstractmethod
    def note_login_failure(self, client: str, now: float) -> LoginFailures: ...

    @abstractmethod
    def clear_login_failures(self, client: str) -> None: ...

    # -- the teacher's admin sessions -----------------------------------------------------
    # A session is known by the SHA-256 hex digest of its id (the cookie holds the id), so a
    # copy of the store lets nobody log in. Logging out, or a new admin password, ends
    # sessions here, on the server: a copied cookie stops working at once.
    @abstractmethod
    def add_session(self, digest: str, expires: float) -> None:
        """Remember a new session until ``expires`` (epoch seconds); may drop expired ones."""

    @abstractmethod
    def session_valid(self, digest: str, now: float) -> bool:
        """True while the session exists and ``now`` is before its expiry."""

    @abstractmethod
    def end_session(self, digest: str) -> None:
        """Forget one session (logout); no error if it is unknown."""

    @abstractmethod
    def end_sessions(self) -> None:
        """Forget every session (the admin password changed)."""

    @property
    def location(self) -> str:
        """Where the data lives, for the teacher's console (never with a password in it)."""
        return type(self).__name__

    def secrets(self) -> Tuple[str, ...]:
        """What the server must redact from anything it writes out (e.g. a database password)."""
        return ()

    def close(self) -> None:
        return None


def default_data_dir() -> Path:
    """``$XEDULLM_HOME/server``, else the user's data directory + ``xedullm/server``."""
    from ...paths import server_data_dir

    return server_data_dir()
