"""A store several servers share: PostgreSQL, chosen with ``--store postgresql://user:pass@host/db``.

**Check-and-hold is one transaction on a row lock.** :meth:`claim` first upserts today's row
in ``class_days`` (``INSERT … ON CONFLICT DO UPDATE`` locks that row), so claims for one day
queue on that lock, across every server, exactly as ``BEGIN IMMEDIATE`` queues them in
SQLite. All its checks then read in *one* statement, i.e. one snapshot: under READ COMMITTED a
:meth:`record` committing meanwhile is seen either whole (hold gone, tokens counted) or not
at all, so recording needs no lock and never waits for claims. Row locks rather than
SERIALIZABLE because a serializable claim would fail and retry whenever two overlapped, which
is every claim of a busy class; a lock only makes them wait their turn (a fraction of a
millisecond each, measured in bench/).

**Holds are leases.** A hold lasts :attr:`lease` seconds; the server running the answer
renews all of its holds every ``lease / 3`` seconds (:meth:`renew`, called by
``Classroom.settle_forever``), so the holds of a server that was killed lapse within
``lease`` seconds instead of blocking the class. Times are the servers' clocks: keep them in
sync (NTP), since a server whose clock runs ahead sees others' holds lapse early.

**Faults.** Connections come from a pool that checks each one before use and reconnects in
the background with backoff; while the database is away a call fails after ``wait`` seconds
with :class:`StoreUnreachable` (the server answers a bilingual 503), never hangs. The password
is never shown: :attr:`location` masks it and every error passing through here is scrubbed.

Adding a method: write it with ``with self._transaction() as db:`` (one transaction, errors
translated and scrubbed) and ``db.execute(sql, params)``.
"""
from __future__ import annotations

import contextlib
import json
import logging
import time
import weakref
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple
from urllib.parse import quote

from ...errors import ConfigurationError
from .contract import (ROW_COLUMNS, Claim, ClaimResult, DayTotals, LedgerRow, LoginFailures, RowWrites, Store,
                       StudentToken, TokenLimits, WhoTotals, row_statements, row_writes)

log = logging.getLogger("xedullm.server")

# Each entry moves the schema one version up; never edit one that has shipped, add the next.
_MIGRATIONS: Tuple[str, ...] = (
    """
    CREATE TABLE ledger (
        id BIGSERIAL PRIMARY KEY,
        started DOUBLE PRECISION NOT NULL, day TEXT NOT NULL, latency DOUBLE PRECISION NOT NULL,
        who TEXT, model TEXT, stream BOOLEAN NOT NULL, status INTEGER NOT NULL, outcome TEXT NOT NULL,
        admitted BOOLEAN NOT NULL,
        prompt_tokens BIGINT, completion_tokens BIGINT, total_tokens BIGINT,
        charged BIGINT NOT NULL, conversation TEXT);
    CREATE INDEX ledger_started ON ledger (started);
    CREATE INDEX ledger_admitted ON ledger (who, started) WHERE admitted;
    CREATE TABLE daily (
        day TEXT NOT NULL, who TEXT NOT NULL, requests BIGINT NOT NULL, tokens BIGINT NOT NULL,
        errors BIGINT NOT NULL, PRIMARY KEY (day, who));
    CREATE TABLE class_days (day TEXT PRIMARY KEY);
    CREATE TABLE holds (
        id TEXT PRIMARY KEY, who TEXT NOT NULL, started DOUBLE PRECISION NOT NULL,
        tokens BIGINT NOT NULL, expires DOUBLE PRECISION NOT NULL);
    CREATE INDEX holds_who ON holds (who);
    CREATE TABLE tokens (
        name TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE, created DOUBLE PRECISION NOT NULL,
        revoked DOUBLE PRECISION, daily_tokens BIGINT, rpm BIGINT, concurrent BIGINT,
        models TEXT NOT NULL, expires DOUBLE PRECISION);
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE admin_logins (client TEXT PRIMARY KEY, failures BIGINT NOT NULL,
                               last DOUBLE PRECISION NOT NULL);
    """,
    # 2: the name a student gives (the teacher's --require-name), kept beside the browser id.
    """
    ALTER TABLE ledger ADD COLUMN name TEXT;
    ALTER TABLE daily ADD COLUMN name TEXT;
    CREATE INDEX ledger_review ON ledger (day, who) WHERE conversation IS NOT NULL;
    """,
    # 3: the teacher's admin sessions (hashed ids), ended by logout and by a new password.
    """
    CREATE TABLE admin_sessions (digest TEXT PRIMARY KEY, expires DOUBLE PRECISION NOT NULL);
    """,
    # 4: answers flagged for the teacher (blocked words, provider moderation) and who answered.
    """
    ALTER TABLE ledger ADD COLUMN flagged BOOLEAN NOT NULL DEFAULT FALSE;
    ALTER TABLE ledger ADD COLUMN provider TEXT;
    CREATE INDEX ledger_flagged ON ledger (day) WHERE flagged;
    """,
    # 5: when a fallback answered, why the primary did not (an empty balance is told apart).
    """
    ALTER TABLE ledger ADD COLUMN fallback_reason TEXT;
    """,
)
# Made once: a store thread writes rows several times a second in a busy class.
_ROW_STATEMENTS = row_statements("%s")
_TOKEN_COLUMNS = "name, created, revoked, daily_tokens, rpm, concurrent, models, expires"
# Holds lapsed longer ago than this are deleted when holds are renewed (a killed server's).
_FORGET_LAPSED = 24 * 3600.0
# After a failed call: for _FAILING_FOR seconds calls wait at most _FAIL_FAST for a connection.
_FAILING_FOR = 10.0
_FAIL_FAST = 0.25
_RECONNECT_SERIES = 8.0
_TRUST_RECENT = 1.0   # seconds a connection used without error is handed out again unchecked


class StoreUnreachable(RuntimeError):
    """The database did not answer (down, restarting, unreachable); the message is password-free."""


class PostgreSQLStore(Store):
    lease = 30.0
    workers = 4

    def __init__(self, url: str, *, wait: float = 5.0, statement_timeout: float = 10.0) -> None:
        try:
            import psycopg
            from psycopg.conninfo import conninfo_to_dict
            from psycopg_pool import ConnectionPool
        except ImportError:
            raise ConfigurationError(
                "要用 PostgreSQL 存放课堂数据，请先安装：pip install 'xedullm[postgresql]'。/ "
                "To keep classroom state in PostgreSQL, install it first: pip install 'xedullm[postgresql]'."
            ) from None
        try:
            params = conninfo_to_dict(_libpq_url(url))
        except psycopg.Error:
            raise ConfigurationError(
                "PostgreSQL 地址写得不对，应像 postgresql://用户:密码@主机:5432/数据库。/ "
                "The PostgreSQL URL is malformed; write it like postgresql://user:password@host:5432/db."
            ) from None
        self._password = str(params.get("password") or "")
        self._wait = wait
        # While the database is away, calls after the first fail fast (see _transaction).
        self._failing_until = 0.0
        self._last_used: "weakref.WeakKeyDictionary[Any, float]" = weakref.WeakKeyDictionary()
        self._location = _masked(params)
        timeout_ms = int(statement_timeout * 1000)

        def configure(conn: Any) -> None:
            # A lock or query stuck on the database side ends as an error, not a hung request.
            conn.autocommit = True
            conn.execute(f"SET statement_timeout = {timeout_ms}")
            conn.execute(f"SET lock_timeout = {timeout_ms}")
            conn.autocommit = False

        connect = {"connect_timeout": max(1, int(wait)), "keepalives": 1, "keepalives_idle": 10,
                   "keepalives_interval": 5, "keepalives_count": 3, "application_name": "xedullm"}
        try:
            # One plain connection first: a wrong password or host is told at once, not as a
            # pool time-out; it also creates or migrates the schema.
            with psycopg.connect(_libpq_url(url), **connect) as first:
                _migrate(first)
        except Exception as exc:  # noqa: BLE001 - any failure here means "cannot use this database"
            if isinstance(exc, ConfigurationError):
                raise
            raise ConfigurationError(
                f"连不上 PostgreSQL {self._location}（{self._scrub(exc)}）。请检查地址、用户名和密码，以及数据库是否在运行。/ "
                f"Cannot use PostgreSQL at {self._location} ({self._scrub(exc)}). Check the URL, user and "
                f"password, and that the database is running.") from None
        # Reconnects in the background with backoff (1, 2, 4 … s). The pool's backoff has no
        # ceiling, so each series of tries ends after _RECONNECT_SERIES and the next request
        # starts a new one: a database back after an hour is found within seconds, not an hour.
        self._pool = ConnectionPool(
            _libpq_url(url), min_size=1, max_size=self.workers + 2, name="xedullm", timeout=wait,
            reconnect_timeout=_RECONNECT_SERIES, configure=configure, check=self._check,
            kwargs=connect, open=True)

    @property
    def location(self) -> str:
        return self._location

    def secrets(self) -> Tuple[str, ...]:
        return tuple(s for s in {self._password, quote(self._password, safe="")} if s)

    def close(self) -> None:
        self._pool.close()

    # -- plumbing ---------------------------------------------------------------------------
    def _check(self, conn: Any) -> None:
        """Before handing out a connection: ping it if it sat idle (the database may have
        restarted meanwhile); one just used is trusted, which saves a round trip per call."""
        if time.monotonic() - self._last_used.get(conn, 0.0) > _TRUST_RECENT:
            from psycopg_pool import ConnectionPool

            ConnectionPool.check_connection(conn)

    def _scrub(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}".strip()
        for secret in self.secrets():
            text = text.replace(secret, "***")
        return text

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        """One transaction on a pooled connection: committed on success, else rolled back."""
        # Once a call found the database away, the next ones wait only briefly for the pool
        # (which keeps reconnecting in the background), so a classroom hears "try again" at once.
        failing = time.monotonic() < self._failing_until
        try:
            with self._pool.connection(timeout=_FAIL_FAST if failing else self._wait) as conn:
                with conn.transaction():
                    yield conn
                self._last_used[conn] = time.monotonic()
        except (ValueError, LookupError):
            raise  # the contract's own answers (e.g. add_token's duplicate name)
        except Exception as exc:  # noqa: BLE001 - PoolTimeout, OperationalError, ...
            if type(exc).__module__.startswith("psycopg"):   # psycopg's and psycopg_pool's errors
                self._failing_until = time.monotonic() + _FAILING_FOR
                raise StoreUnreachable(self._scrub(exc)) from None
            raise
        if failing:
            self._failing_until = 0.0

    # -- requests ---------------------------------------------------------------------------
    def claim(self, claim: Claim) -> ClaimResult:
        p = {"day": claim.day, "who": claim.who, "now": claim.now}
        with self._transaction() as db:
            # A hold is worth no disk flush: lost in a database crash, it would only under-count
            # one running answer for a moment. Without the flush the day's lock is held for
            # microseconds, not for a disk write (see bench/). Ledger rows are always flushed.
            db.execute("SET LOCAL synchronous_commit = off")
            # The per-day row lock: every claim of this day, on every server, takes its turn here.
            db.execute("INSERT INTO class_days (day) VALUES (%(day)s) "
                       "ON CONFLICT (day) DO UPDATE SET day = EXCLUDED.day", p)
            running, class_used, who_used, class_held, who_held = db.execute(
                "SELECT (SELECT count(*) FROM holds WHERE who = %(who)s AND expires > %(now)s), "
                "(SELECT COALESCE(sum(tokens), 0) FROM daily WHERE day = %(day)s), "
                "(SELECT COALESCE(sum(tokens), 0) FROM daily WHERE day = %(day)s AND who = %(who)s), "
                "(SELECT COALESCE(sum(tokens), 0) FROM holds WHERE expires > %(now)s), "
                "(SELECT COALESCE(sum(tokens), 0) FROM holds WHERE who = %(who)s AND expires > %(now)s)",
                p).fetchone()
            if claim.concurrent is not None and running >= claim.concurrent:
                return ClaimResult(False, "concurrent", retry_after=1)
            if claim.rpm is not None:
                since = claim.now - 60
                starts = [r[0] for r in db.execute(
                    "SELECT started FROM ledger WHERE who = %(who)s AND admitted AND started > %(since)s "
                    "UNION ALL SELECT started FROM holds WHERE who = %(who)s AND started > %(since)s "
                    "AND expires > %(now)s", {**p, "since": since})]
                if len(starts) >= claim.rpm:
                    oldest = sorted(starts)[len(starts) - claim.rpm]
                    return ClaimResult(False, "rpm", retry_after=max(1.0, oldest + 60 - claim.now))
            left: List[int] = []
            for scope, budget, used, held in (("class", claim.class_budget, class_used, class_held),
                                              ("who", claim.who_budget, who_used, who_held)):
                if budget is None:
                    continue
                if used >= budget:
                    return ClaimResult(False, f"{scope}_budget")
                if used + held >= budget:
                    return ClaimResult(False, f"{scope}_held", retry_after=5)
                left.append(int(budget - used - held))
            held = max(1, min([claim.estimate, *left]))
            db.execute("INSERT INTO holds (id, who, started, tokens, expires) VALUES (%s, %s, %s, %s, %s)",
                       (claim.id, claim.who, claim.now, held, claim.now + claim.hold_for))
            return ClaimResult(True, held=held)

    def renew(self, claim_ids: Sequence[str], until: float) -> int:
        with self._transaction() as db:
            db.execute("SET LOCAL synchronous_commit = off")   # as in claim: a lease is no ledger row
            renewed = db.execute("UPDATE holds SET expires = GREATEST(expires, %s) WHERE id = ANY(%s)",
                                 (until, list(claim_ids))).rowcount if claim_ids else 0
            db.execute("DELETE FROM holds WHERE expires < %s", (until - _FORGET_LAPSED,))
            return renewed

    def record(self, row: LedgerRow, claim_id: Optional[str] = None) -> None:
        with self._transaction() as db:
            self._record(db, row_writes([(row, claim_id)]))

    def record_many(self, rows: Sequence[Tuple[LedgerRow, Optional[str]]]) -> None:
        with self._transaction() as db:
            self._record(db, row_writes(rows))

    @staticmethod
    def _record(db: Any, writes: RowWrites) -> None:
        with db.cursor() as cursor:   # psycopg runs executemany on a cursor, not the connection
            for statement, params in writes.each(_ROW_STATEMENTS):
                cursor.executemany(statement, params)

    def used(self, day: str, who: Optional[str] = None) -> int:
        with self._transaction() as db:
            if who is None:
                found = db.execute("SELECT COALESCE(sum(tokens), 0) FROM daily WHERE day = %s", (day,)).fetchone()
            else:
                found = db.execute("SELECT COALESCE(sum(tokens), 0) FROM daily WHERE day = %s AND who = %s",
                                   (day, who)).fetchone()
            return int(found[0])

    # -- reports ----------------------------------------------------------------------------
    def day_totals(self, day: str) -> DayTotals:
        with self._transaction() as db:
            rows = db.execute("SELECT who, requests, tokens, errors, name FROM daily WHERE day = %s "
                              "ORDER BY tokens DESC, who COLLATE \"C\"", (day,)).fetchall()
        students = [WhoTotals(who or "", int(requests), int(tokens), int(errors), name)
                    for who, requests, tokens, errors, name in rows]
        return DayTotals(requests=sum(s.requests for s in students), tokens=sum(s.tokens for s in students),
                         errors=sum(s.errors for s in students), students=students)

    def series(self, since: float, bucket: float) -> List[Tuple[float, int, int]]:
        with self._transaction() as db:
            rows = db.execute(
                "SELECT floor((started - %(since)s) / %(bucket)s)::bigint AS slot, sum(charged), count(*) "
                "FROM ledger WHERE started >= %(since)s GROUP BY slot ORDER BY slot",
                {"since": since, "bucket": bucket}).fetchall()
        return [(since + slot * bucket, int(tokens), int(count)) for slot, tokens, count in rows]

    def recent(self, limit: int, errors_only: bool = False) -> List[Dict]:
        where = "WHERE outcome != 'ok'" if errors_only else ""
        with self._transaction() as db:
            cursor = db.execute(f"SELECT id, {', '.join(ROW_COLUMNS)} FROM ledger {where} "
                                f"ORDER BY id DESC LIMIT %s", (limit,))
            names = [d.name for d in cursor.description]
            return [dict(zip(names, r)) for r in cursor.fetchall()]

    def conversations(self, day: str, who: Optional[str] = None, limit: int = 500) -> List[Dict]:
        where = "day = %s AND conversation IS NOT NULL" + ("" if who is None else " AND who = %s")
        with self._transaction() as db:
            cursor = db.execute(f"SELECT id, {', '.join(ROW_COLUMNS)} FROM ledger WHERE {where} "
                                f"ORDER BY id DESC LIMIT %s", (day, limit) if who is None else (day, who, limit))
            names = [d.name for d in cursor.description]
            return [dict(zip(names, r)) for r in cursor.fetchall()]

    def flagged(self, day: str, limit: int = 500) -> List[Dict]:
        with self._transaction() as db:
            cursor = db.execute(f"SELECT id, {', '.join(ROW_COLUMNS)} FROM ledger WHERE day = %s AND flagged "
                                f"ORDER BY id DESC LIMIT %s", (day, limit))
            names = [d.name for d in cursor.description]
            return [dict(zip(names, r)) for r in cursor.fetchall()]

    def rows(self) -> Iterator[Dict]:
        # A server-side cursor: a long export streams in batches and holds no lock.
        with self._transaction() as db:
            with db.cursor(name="xedullm_export") as cursor:
                cursor.itersize = 500
                cursor.execute(f"SELECT id, {', '.join(ROW_COLUMNS)} FROM ledger ORDER BY id")
                names = None
                for r in cursor:
                    names = names or [d.name for d in cursor.description]
                    yield dict(zip(names, r))

    # -- student tokens ---------------------------------------------------------------------
    def add_token(self, name: str, digest: str, limits: TokenLimits, now: float) -> None:
        with self._transaction() as db:
            found = db.execute("SELECT revoked FROM tokens WHERE name = %s FOR UPDATE", (name,)).fetchone()
            if found is not None and found[0] is None:
                raise ValueError(name)
            db.execute("DELETE FROM tokens WHERE name = %s", (name,))
            db.execute("INSERT INTO tokens (name, digest, created, revoked, daily_tokens, rpm, concurrent, models, "
                       "expires) VALUES (%s, %s, %s, NULL, %s, %s, %s, %s, %s)",
                       (name, digest, now, *_limit_values(limits)))

    def token_by_digest(self, digest: str) -> Optional[StudentToken]:
        with self._transaction() as db:
            row = db.execute(f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE digest = %s", (digest,)).fetchone()
        return _token(row) if row else None

    def tokens(self) -> List[StudentToken]:
        with self._transaction() as db:
            rows = db.execute(f"SELECT {_TOKEN_COLUMNS} FROM tokens ORDER BY created, name COLLATE \"C\"").fetchall()
        return [_token(r) for r in rows]

    def update_token(self, name: str, limits: TokenLimits) -> bool:
        with self._transaction() as db:
            return db.execute("UPDATE tokens SET daily_tokens = %s, rpm = %s, concurrent = %s, models = %s, "
                              "expires = %s WHERE name = %s AND revoked IS NULL",
                              (*_limit_values(limits), name)).rowcount == 1

    def revoke_token(self, name: str, now: float) -> bool:
        with self._transaction() as db:
            return db.execute("UPDATE tokens SET revoked = %s WHERE name = %s AND revoked IS NULL",
                              (now, name)).rowcount == 1

    # -- settings and admin logins ----------------------------------------------------------
    def get_setting(self, key: str) -> Optional[str]:
        with self._transaction() as db:
            row = db.execute("SELECT value FROM settings WHERE key = %s", (key,)).fetchone()
        return row[0] if row else None

    def set_setting(self, key: str, value: Optional[str]) -> None:
        with self._transaction() as db:
            if value is None:
                db.execute("DELETE FROM settings WHERE key = %s", (key,))
            else:
                db.execute("INSERT INTO settings (key, value) VALUES (%s, %s) "
                           "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", (key, value))

    def login_failures(self, client: str) -> LoginFailures:
        with self._transaction() as db:
            row = db.execute("SELECT failures, last FROM admin_logins WHERE client = %s", (client,)).fetchone()
        return LoginFailures(int(row[0]), row[1]) if row else LoginFailures()

    def note_login_failure(self, client: str, now: float) -> LoginFailures:
        with self._transaction() as db:
            row = db.execute("INSERT INTO admin_logins (client, failures, last) VALUES (%s, 1, %s) "
                             "ON CONFLICT (client) DO UPDATE SET failures = admin_logins.failures + 1, "
                             "last = EXCLUDED.last RETURNING failures, last", (client, now)).fetchone()
        return LoginFailures(int(row[0]), row[1])

    def clear_login_failures(self, client: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM admin_logins WHERE client = %s", (client,))

    # -- admin sessions -------------------------------------------------------------------
    def add_session(self, digest: str, expires: float) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM admin_sessions WHERE expires <= %s", (expires - _FORGET_LAPSED,))
            db.execute("INSERT INTO admin_sessions (digest, expires) VALUES (%s, %s) "
                       "ON CONFLICT (digest) DO UPDATE SET expires = excluded.expires", (digest, expires))

    def session_valid(self, digest: str, now: float) -> bool:
        with self._transaction() as db:
            row = db.execute("SELECT expires FROM admin_sessions WHERE digest = %s", (digest,)).fetchone()
        return row is not None and now < row[0]

    def end_session(self, digest: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM admin_sessions WHERE digest = %s", (digest,))

    def end_sessions(self) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM admin_sessions")


def _migrate(db: Any) -> None:
    with db.transaction():
        # Servers starting together: one migrates, the others wait and then find it done.
        db.execute("SELECT pg_advisory_xact_lock(hashtext('xedullm schema'))")
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        version = db.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0
        if version > len(_MIGRATIONS):
            raise ConfigurationError(
                f"数据库由更新版本的 xedullm 建立（结构版本 {version}），请升级本机的 xedullm。/ "
                f"This database was set up by a newer xedullm (schema {version}); upgrade xedullm here.")
        for number, sql in enumerate(_MIGRATIONS[version:], start=version + 1):
            db.execute(sql)
            db.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))


def _libpq_url(url: str) -> str:
    """libpq knows postgresql:// and postgres://, not SQLAlchemy's postgresql+psycopg://."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql://{rest}" if sep and scheme.lower().startswith("postgres") else url


def _masked(params: Dict[str, Any]) -> str:
    user = params.get("user") or ""
    auth = f"{user}:***@" if params.get("password") else (f"{user}@" if user else "")
    host = params.get("host") or "localhost"
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{auth}{host}{port}/{params.get('dbname') or user}"


def _token(row: tuple) -> StudentToken:
    name, created, revoked, daily, rpm, concurrent, models, expires = row
    return StudentToken(name=name, created=created, revoked=revoked, limits=TokenLimits(
        daily_tokens=daily, rpm=rpm, concurrent=concurrent, models=tuple(json.loads(models)), expires=expires))


def _limit_values(limits: TokenLimits) -> tuple:
    return (limits.daily_tokens, limits.rpm, limits.concurrent, json.dumps(list(limits.models)), limits.expires)
