"""The default store: one SQLite file (WAL) in the server's data directory.

Every write is one ``BEGIN IMMEDIATE`` transaction: it takes SQLite's write lock first, so
a check-then-hold in :meth:`claim` cannot interleave with another's, even from another
server process on the same file. Readers never wait for writers (WAL). Daily totals are kept
in their own small table so a budget check reads one row per student, not the whole day.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ...errors import ConfigurationError
from .contract import (ROW_COLUMNS, Claim, ClaimResult, DayTotals, LedgerRow, LoginFailures, RowWrites, Store,
                       StudentToken, TokenLimits, WhoTotals, row_statements, row_writes)

DB_NAME = "classroom.sqlite3"
_SCHEMA_VERSION = 5   # 2: names; 3: admin_sessions; 4: flagged, provider; 5: fallback_reason
_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY,
    started REAL NOT NULL, day TEXT NOT NULL, latency REAL NOT NULL,
    who TEXT, model TEXT, stream INTEGER NOT NULL, status INTEGER NOT NULL, outcome TEXT NOT NULL,
    admitted INTEGER NOT NULL,
    prompt_tokens INTEGER, completion_tokens INTEGER, total_tokens INTEGER,
    charged INTEGER NOT NULL, conversation TEXT, name TEXT, flagged INTEGER NOT NULL DEFAULT 0, provider TEXT,
    fallback_reason TEXT);
CREATE INDEX IF NOT EXISTS ledger_started ON ledger(started);
CREATE INDEX IF NOT EXISTS ledger_admitted ON ledger(who, started) WHERE admitted = 1;
CREATE INDEX IF NOT EXISTS ledger_review ON ledger(day, who) WHERE conversation IS NOT NULL;
CREATE INDEX IF NOT EXISTS ledger_flagged ON ledger(day) WHERE flagged = 1;
CREATE TABLE IF NOT EXISTS daily (
    day TEXT NOT NULL, who TEXT NOT NULL, requests INTEGER NOT NULL, tokens INTEGER NOT NULL,
    errors INTEGER NOT NULL, name TEXT, PRIMARY KEY (day, who)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS holds (
    id TEXT PRIMARY KEY, who TEXT NOT NULL, started REAL NOT NULL, tokens INTEGER NOT NULL,
    expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    name TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE, created REAL NOT NULL, revoked REAL,
    daily_tokens INTEGER, rpm INTEGER, concurrent INTEGER, models TEXT NOT NULL, expires REAL);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS admin_logins (
    client TEXT PRIMARY KEY, failures INTEGER NOT NULL, last REAL NOT NULL);
CREATE TABLE IF NOT EXISTS admin_sessions (digest TEXT PRIMARY KEY, expires REAL NOT NULL);
"""
# Expired sessions are dropped when a new one starts; anything ending this long before the
# new one's expiry (a session lasts 12 hours) is certainly over.
SESSION_KEEP = 24 * 3600.0
# From each schema version to the next, for data files written by older versions.
_MIGRATIONS = {
    1: ("ALTER TABLE ledger ADD COLUMN name TEXT",
        "ALTER TABLE daily ADD COLUMN name TEXT",
        "CREATE INDEX IF NOT EXISTS ledger_review ON ledger(day, who) WHERE conversation IS NOT NULL"),
    2: ("CREATE TABLE IF NOT EXISTS admin_sessions (digest TEXT PRIMARY KEY, expires REAL NOT NULL)",),
    3: ("ALTER TABLE ledger ADD COLUMN flagged INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE ledger ADD COLUMN provider TEXT",
        "CREATE INDEX IF NOT EXISTS ledger_flagged ON ledger(day) WHERE flagged = 1"),
    4: ("ALTER TABLE ledger ADD COLUMN fallback_reason TEXT",),
}
# Made once: a store thread writes rows several times a second in a busy class.
_ROW_STATEMENTS = row_statements("?")


class SQLiteStore(Store):
    @property
    def location(self) -> str:
        return str(self.path)

    def __init__(self, data_dir: Union[str, Path], *, busy_timeout: float = 10.0) -> None:
        self.data_dir = Path(data_dir).expanduser()
        self.path = self.data_dir / DB_NAME
        # One connection, shared by whichever thread calls (the server's store thread, the CLI).
        self._lock = threading.Lock()
        try:
            _private_files(self.data_dir, self.path)
            # isolation_level=None: we write BEGIN IMMEDIATE ourselves, so the lock is taken
            # before the first read of a check-then-write.
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False,
                                       timeout=busy_timeout)
            self._db.execute("PRAGMA journal_mode=WAL")
            _private_files(self.data_dir, self.path)   # the WAL and SHM files exist from here
            # NORMAL under WAL: a power cut may lose the last commits, never corrupt the file.
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._write() as db:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            db.execute(statement)
                else:
                    for step in range(version, _SCHEMA_VERSION):
                        for statement in _MIGRATIONS[step]:
                            db.execute(statement)
                if version < _SCHEMA_VERSION:
                    db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError(
                f"无法打开课堂数据文件 {self.path}（{exc}）。请检查目录权限，或用 --data-dir 换一个目录。/ "
                f"Cannot open the classroom data file {self.path} ({exc}). Check the folder's "
                f"permissions, or choose another with --data-dir.") from None

    def _write(self) -> "_Transaction":
        return _Transaction(self._db, self._lock)

    def close(self) -> None:
        self._db.close()

    # -- requests -------------------------------------------------------------------------
    def claim(self, claim: Claim) -> ClaimResult:
        with self._write() as db:
            live = (claim.who, claim.now)
            if claim.concurrent is not None:
                running = db.execute("SELECT COUNT(*) FROM holds WHERE who = ? AND expires > ?", live).fetchone()[0]
                if running >= claim.concurrent:
                    return ClaimResult(False, "concurrent", retry_after=1)
            if claim.rpm is not None:
                since = claim.now - 60
                starts = [r[0] for r in db.execute(
                    "SELECT started FROM ledger WHERE who = ? AND admitted = 1 AND started > ? "
                    "UNION ALL SELECT started FROM holds WHERE who = ? AND started > ? AND expires > ?",
                    (claim.who, since, claim.who, since, claim.now))]
                if len(starts) >= claim.rpm:
                    oldest = sorted(starts)[len(starts) - claim.rpm]
                    return ClaimResult(False, "rpm", retry_after=max(1.0, oldest + 60 - claim.now))
            left: List[int] = []
            for scope, budget, who in (("class", claim.class_budget, None), ("who", claim.who_budget, claim.who)):
                if budget is None:
                    continue
                used = self._used(db, claim.day, who)
                if used >= budget:
                    return ClaimResult(False, f"{scope}_budget")
                if who is None:
                    held = db.execute("SELECT COALESCE(SUM(tokens), 0) FROM holds WHERE expires > ?",
                                      (claim.now,)).fetchone()[0]
                else:
                    held = db.execute("SELECT COALESCE(SUM(tokens), 0) FROM holds WHERE who = ? AND expires > ?",
                                      live).fetchone()[0]
                if used + held >= budget:
                    # The rest of today's budget is held by answers still running; some of it
                    # may come back when they finish.
                    return ClaimResult(False, f"{scope}_held", retry_after=5)
                left.append(budget - used - held)
            held = max(1, min([claim.estimate, *left]))
            db.execute("INSERT INTO holds (id, who, started, tokens, expires) VALUES (?, ?, ?, ?, ?)",
                       (claim.id, claim.who, claim.now, held, claim.now + claim.hold_for))
            return ClaimResult(True, held=held)

    def renew(self, claim_ids: Sequence[str], until: float) -> int:
        with self._write() as db:
            return sum(db.execute("UPDATE holds SET expires = MAX(expires, ?) WHERE id = ?", (until, claim_id)).rowcount
                       for claim_id in claim_ids)

    @staticmethod
    def _used(db: sqlite3.Connection, day: str, who: Optional[str]) -> int:
        if who is None:
            return db.execute("SELECT COALESCE(SUM(tokens), 0) FROM daily WHERE day = ?", (day,)).fetchone()[0]
        found = db.execute("SELECT tokens FROM daily WHERE day = ? AND who = ?", (day, who)).fetchone()
        return found[0] if found else 0

    def record(self, row: LedgerRow, claim_id: Optional[str] = None) -> None:
        with self._write() as db:
            self._record(db, row_writes([(row, claim_id)]))

    def record_many(self, rows: Sequence[Tuple[LedgerRow, Optional[str]]]) -> None:
        with self._write() as db:
            self._record(db, row_writes(rows))

    @staticmethod
    def _record(db: sqlite3.Connection, writes: RowWrites) -> None:
        for statement, params in writes.each(_ROW_STATEMENTS):
            db.executemany(statement, params)

    def used(self, day: str, who: Optional[str] = None) -> int:
        with self._lock:
            return self._used(self._db, day, who)

    # -- reports --------------------------------------------------------------------------
    def day_totals(self, day: str) -> DayTotals:
        with self._lock:
            rows = self._db.execute(
                "SELECT who, requests, tokens, errors, name FROM daily WHERE day = ? ORDER BY tokens DESC, who",
                (day,)).fetchall()
        students = [WhoTotals(who or "", requests, tokens, errors, name)
                    for who, requests, tokens, errors, name in rows]
        return DayTotals(requests=sum(s.requests for s in students), tokens=sum(s.tokens for s in students),
                         errors=sum(s.errors for s in students), students=students)

    def series(self, since: float, bucket: float) -> List[Tuple[float, int, int]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT CAST((started - ?) / ? AS INTEGER) AS slot, SUM(charged), COUNT(*) FROM ledger "
                "WHERE started >= ? GROUP BY slot ORDER BY slot", (since, bucket, since)).fetchall()
        return [(since + slot * bucket, tokens, count) for slot, tokens, count in rows]

    def recent(self, limit: int, errors_only: bool = False) -> List[Dict]:
        where = "WHERE outcome != 'ok'" if errors_only else ""
        with self._lock:
            cursor = self._db.execute(
                f"SELECT id, {', '.join(ROW_COLUMNS)} FROM ledger {where} ORDER BY id DESC LIMIT ?", (limit,))
            return [_row_dict(cursor, r) for r in cursor.fetchall()]

    def conversations(self, day: str, who: Optional[str] = None, limit: int = 500) -> List[Dict]:
        where = "day = ? AND conversation IS NOT NULL" + ("" if who is None else " AND who = ?")
        with self._lock:
            cursor = self._db.execute(
                f"SELECT id, {', '.join(ROW_COLUMNS)} FROM ledger WHERE {where} ORDER BY id DESC LIMIT ?",
                (day, limit) if who is None else (day, who, limit))
            return [_row_dict(cursor, r) for r in cursor.fetchall()]

    def flagged(self, day: str, limit: int = 500) -> List[Dict]:
        with self._lock:
            cursor = self._db.execute(
                f"SELECT id, {', '.join(ROW_COLUMNS)} FROM ledger WHERE day = ? AND flagged = 1 "
                f"ORDER BY id DESC LIMIT ?", (day, limit))
            return [_row_dict(cursor, r) for r in cursor.fetchall()]

    def rows(self) -> Iterator[Dict]:
        # Its own cursor on a snapshot, so a long export does not hold up the server.
        reader = sqlite3.connect(str(self.path), check_same_thread=False)
        try:
            cursor = reader.execute(f"SELECT id, {', '.join(ROW_COLUMNS)} FROM ledger ORDER BY id")
            for r in cursor:
                yield _row_dict(cursor, r)
        finally:
            reader.close()

    # -- student tokens -------------------------------------------------------------------
    def add_token(self, name: str, digest: str, limits: TokenLimits, now: float) -> None:
        with self._write() as db:
            found = db.execute("SELECT revoked FROM tokens WHERE name = ?", (name,)).fetchone()
            if found is not None and found[0] is None:
                raise ValueError(name)
            db.execute("DELETE FROM tokens WHERE name = ?", (name,))
            db.execute("INSERT INTO tokens (name, digest, created, revoked, daily_tokens, rpm, concurrent, models, "
                       "expires) VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?)",
                       (name, digest, now, *_limit_values(limits)))

    def token_by_digest(self, digest: str) -> Optional[StudentToken]:
        with self._lock:
            row = self._db.execute(f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE digest = ?", (digest,)).fetchone()
        return _token(row) if row else None

    def tokens(self) -> List[StudentToken]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_TOKEN_COLUMNS} FROM tokens ORDER BY created, name").fetchall()
        return [_token(r) for r in rows]

    def update_token(self, name: str, limits: TokenLimits) -> bool:
        with self._write() as db:
            return db.execute("UPDATE tokens SET daily_tokens = ?, rpm = ?, concurrent = ?, models = ?, expires = ? "
                              "WHERE name = ? AND revoked IS NULL", (*_limit_values(limits), name)).rowcount == 1

    def revoke_token(self, name: str, now: float) -> bool:
        with self._write() as db:
            return db.execute("UPDATE tokens SET revoked = ? WHERE name = ? AND revoked IS NULL",
                              (now, name)).rowcount == 1

    # -- settings and admin logins --------------------------------------------------------
    def get_setting(self, key: str) -> Optional[str]:
        with self._lock:
            row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_setting(self, key: str, value: Optional[str]) -> None:
        with self._write() as db:
            if value is None:
                db.execute("DELETE FROM settings WHERE key = ?", (key,))
            else:
                db.execute("INSERT INTO settings (key, value) VALUES (?, ?) "
                           "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def login_failures(self, client: str) -> LoginFailures:
        with self._lock:
            row = self._db.execute("SELECT failures, last FROM admin_logins WHERE client = ?", (client,)).fetchone()
        return LoginFailures(*row) if row else LoginFailures()

    def note_login_failure(self, client: str, now: float) -> LoginFailures:
        with self._write() as db:
            db.execute("INSERT INTO admin_logins (client, failures, last) VALUES (?, 1, ?) "
                       "ON CONFLICT (client) DO UPDATE SET failures = failures + 1, last = excluded.last",
                       (client, now))
            return LoginFailures(*db.execute("SELECT failures, last FROM admin_logins WHERE client = ?",
                                             (client,)).fetchone())

    def clear_login_failures(self, client: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM admin_logins WHERE client = ?", (client,))

    # -- admin sessions -------------------------------------------------------------------
    def add_session(self, digest: str, expires: float) -> None:
        with self._write() as db:
            db.execute("DELETE FROM admin_sessions WHERE expires <= ?", (expires - SESSION_KEEP,))
            db.execute("INSERT OR REPLACE INTO admin_sessions (digest, expires) VALUES (?, ?)", (digest, expires))

    def session_valid(self, digest: str, now: float) -> bool:
        with self._lock:
            row = self._db.execute("SELECT expires FROM admin_sessions WHERE digest = ?", (digest,)).fetchone()
        return row is not None and now < row[0]

    def end_session(self, digest: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM admin_sessions WHERE digest = ?", (digest,))

    def end_sessions(self) -> None:
        with self._write() as db:
            db.execute("DELETE FROM admin_sessions")


# Review conversations, token hashes and the admin session secret live here: like the key
# store, only the teacher's account may read them.
_PRIVATE_DIR = 0o700
_PRIVATE_FILE = 0o600


def _private_files(data_dir: Path, db_path: Path) -> None:
    """Data directory 0700 and the database with its WAL/SHM files 0600, made so or fixed so
    (a folder from an older version was world-readable). No-op where modes mean nothing."""
    data_dir.mkdir(mode=_PRIVATE_DIR, parents=True, exist_ok=True)
    if os.name != "posix":
        return
    os.chmod(data_dir, _PRIVATE_DIR)
    # Created here, not by sqlite3.connect, so the file is never readable by others for a moment.
    os.close(os.open(str(db_path), os.O_RDWR | os.O_CREAT, _PRIVATE_FILE))
    for path in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm")):
        if path.exists():
            os.chmod(path, _PRIVATE_FILE)


class _Transaction:
    """``with`` block = one BEGIN IMMEDIATE … COMMIT (ROLLBACK on error)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self._db = db
        self._lock = lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._db

    def __exit__(self, kind, exc, tb) -> None:
        try:
            self._db.execute("COMMIT" if kind is None else "ROLLBACK")
        finally:
            self._lock.release()


_TOKEN_COLUMNS = "name, created, revoked, daily_tokens, rpm, concurrent, models, expires"


def _token(row: tuple) -> StudentToken:
    name, created, revoked, daily, rpm, concurrent, models, expires = row
    return StudentToken(name=name, created=created, revoked=revoked, limits=TokenLimits(
        daily_tokens=daily, rpm=rpm, concurrent=concurrent, models=tuple(json.loads(models)), expires=expires))


def _limit_values(limits: TokenLimits) -> tuple:
    return (limits.daily_tokens, limits.rpm, limits.concurrent, json.dumps(list(limits.models)), limits.expires)


def _row_dict(cursor: sqlite3.Cursor, row: tuple) -> Dict:
    out = dict(zip((d[0] for d in cursor.description), row))
    out["stream"] = bool(out["stream"])
    out["admitted"] = bool(out["admitted"])
    out["flagged"] = bool(out["flagged"])
    return out
