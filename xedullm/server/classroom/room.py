"""The classroom's controls while the server runs: the store, the budgets, the access code.

The store is synchronous; the server reaches it through its own threads (``Store.workers``:
one for SQLite), so a slow disk or a lock held by another server process never stalls the
event loop. Where holds are leases (``Store.lease``), this server renews the holds of the
answers it is running until each is recorded.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import logging
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable, Deque, List, Optional, Set, Tuple

from ...errors import LLMError, ServerError
from ...pictures import without_pictures
from .answer_sizes import AnswerSizes
from .browser_ids import BrowserIds
from .guess_throttle import GuessThrottle
from .ledger import LedgerEntry
from .live_settings import LiveSettings
from ..settings import BY_NAME
from ..store.contract import DEFAULT_HOLD, LedgerRow, Store

log = logging.getLogger("xedullm.server")

UNRECORDED_RETRY = 5.0     # seconds between tries to write rows the store refused
UNRECORDED_MAX = 10_000    # beyond this many, the oldest are given up (and logged)
# How long a finished request's row may wait to be written together with the next ones. Each
# trip to the store thread costs several times the write itself (a thread wake-up and a loop
# wake-up), so one trip carries every row handed over meanwhile. Nothing reads stale counts:
# any other store call takes the waiting rows with it, ahead of itself (Classroom.submit).
ROW_BATCH_DELAY = 0.1
BROWSER_IDS_DEFAULT = BY_NAME["browser_ids_per_address"].default


def today(now: Optional[float] = None) -> str:
    """The local date budgets count: a class day starts at the teacher's midnight."""
    if now is None:
        now = time.time()
    start, end, day = _day_known
    if start <= now < end:   # every request asks; working the date out costs more than the rest
        return day
    return _learn_day(now)


_day_known: Tuple[float, float, str] = (0.0, 0.0, "")


def _learn_day(now: float) -> str:
    global _day_known
    local = time.localtime(now)
    # Midnight to midnight in local time; mktime works out a summer-time change between them.
    start = time.mktime((local.tm_year, local.tm_mon, local.tm_mday, 0, 0, 0, 0, 0, -1))
    end = time.mktime((local.tm_year, local.tm_mon, local.tm_mday + 1, 0, 0, 0, 0, 0, -1))
    day = time.strftime("%Y-%m-%d", local)
    _day_known = (start, end, day)
    return day


class Classroom:
    """The store, the live settings and the secrets of one class, reached from the event loop."""

    def __init__(self, store: Store, settings: LiveSettings, *, admin_password: Optional[str] = None) -> None:
        self.store = store
        self.settings = settings
        self.guesses = GuessThrottle()   # wrong tokens/access codes per address (guess_throttle.py)
        # An empty box on the admin page (None) means the setting's default.
        self.browser_ids = BrowserIds(store, lambda: settings.get("browser_ids_per_address") or BROWSER_IDS_DEFAULT,
                                      today)
        self.password_generated = not admin_password
        # Generated passwords are easy to read aloud and type: 12 characters, no 0/O or 1/l.
        self.admin_password = admin_password or "".join(
            secrets.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(12))
        self._worker = ThreadPoolExecutor(max_workers=store.workers, thread_name_prefix="xedullm-store")
        self.running: Set[str] = set()   # claim ids of answers this server holds budget for
        # Rows the store could not take (it was away); written by settle_forever. Their holds
        # stay in `running`, renewed, so the budget keeps counting them meanwhile.
        self.unrecorded: Deque[Tuple[LedgerRow, Optional[str]]] = collections.deque(maxlen=UNRECORDED_MAX)
        self.answer_sizes = AnswerSizes()
        self.answer_sizes.seed(reversed([r["completion_tokens"] for r in store.recent(AnswerSizes.SAMPLES)
                                         if r.get("outcome") == "ok"
                                         and not (r.get("model") or "").startswith("embedding:")]))
        self._released: Optional[asyncio.Event] = None
        # Rows handed over (queue_row) and not yet on their way to the store thread.
        self._rows: List[Tuple[LedgerRow, Optional[str]]] = []
        self._rows_due: Optional[asyncio.TimerHandle] = None
        self._rows_loop: Optional[asyncio.AbstractEventLoop] = None
        self._rows_writing: Set["asyncio.Future[None]"] = set()

    @property
    def hold_for(self) -> float:
        """Seconds a new hold lasts: the store's lease (renewed while running), else DEFAULT_HOLD."""
        return self.store.lease or DEFAULT_HOLD

    async def released(self, timeout: float) -> None:
        """Wait until some request here gives back its hold, or ``timeout`` seconds."""
        if self._released is None:   # made inside the server's loop (Python 3.9 binds it there)
            self._released = asyncio.Event()
        try:
            await asyncio.wait_for(self._released.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    def note_released(self) -> None:
        if self._released is not None:
            self._released.set()
            self._released = asyncio.Event()

    @property
    def store_location(self) -> str:
        return self.store.location

    @property
    def access_code(self) -> Optional[str]:
        # Read per request, so a code the teacher changes on the admin page ends the old one at once.
        return self.settings.get("access_code")

    @property
    def paused(self) -> bool:
        return bool(self.settings.get("paused"))

    @property
    def require_name(self) -> bool:
        return bool(self.settings.get("require_name"))

    @property
    def daily_budget(self) -> Optional[int]:
        return self.settings.get("daily_budget")

    @property
    def per_student_daily(self) -> Optional[int]:
        return self.settings.get("per_student_daily")

    @property
    def review(self) -> bool:
        return bool(self.settings.get("review"))

    async def settle_forever(self) -> None:
        """Every few seconds: write the ledger rows the store refused while it was away, then
        renew the holds of answers still running (stores with leases)."""
        lease = self.store.lease
        while True:
            await asyncio.sleep(lease / 3 if lease else UNRECORDED_RETRY)
            try:
                while self.unrecorded:
                    row, claim_id = self.unrecorded[0]
                    await self.call(self.store.record, row, claim_id)
                    self.unrecorded.popleft()
                    self.running.discard(claim_id)
                if lease:
                    await self.call(self.store.renew, list(self.running), time.time() + lease)
            except StoreUnavailable:
                pass  # logged by call(); the next round tries again, well within the lease

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await self.submit(fn, *args)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        """``fn(*args)`` handed to the store's threads now; await the result as with :meth:`call`.

        With one thread (``in_order``) calls run in the order they were handed over, so
        whatever is submitted later, by any request, sees what this one wrote. Rows still
        waiting in :meth:`queue_row` go first, for the same reason."""
        if self._rows:
            self._send_rows()
        return self._submit_now(fn, *args)

    def _submit_now(self, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(self._worker, fn, *args)
        except Exception as exc:  # noqa: BLE001 - the threads are gone (closing): as if the store failed
            future = loop.create_future()
            future.set_exception(exc)
        return _store_result(future)

    @property
    def in_order(self) -> bool:
        return self.store.workers == 1

    # -- ledger rows, several to a trip (in-order stores only: see StoreLedger) -------------
    def queue_row(self, row: LedgerRow, claim_id: Optional[str]) -> None:
        """A finished request's row, written within ROW_BATCH_DELAY with the others handed
        over meanwhile, or sooner, ahead of the next store call. Its hold (``claim_id``) is
        given back once it is written."""
        self._rows.append((row, claim_id))
        loop = asyncio.get_running_loop()
        # A timer of another loop (one that ended: tests' clients run a loop per request) never fires.
        if self._rows_due is None or self._rows_loop is not loop:
            if self._rows_due is not None:
                self._rows_due.cancel()
            self._rows_due, self._rows_loop = loop.call_later(ROW_BATCH_DELAY, self._send_rows), loop

    def _send_rows(self) -> None:
        if self._rows_due is not None:
            self._rows_due.cancel()
            self._rows_due = None
        rows, self._rows = self._rows, []
        if rows:
            writing = asyncio.ensure_future(self._settle_rows(self._submit_now(_record_each, self.store, rows), rows))
            self._rows_writing.add(writing)
            writing.add_done_callback(self._rows_writing.discard)

    async def _settle_rows(self, written: Awaitable[List[Optional[BaseException]]],
                           rows: List[Tuple[LedgerRow, Optional[str]]]) -> None:
        try:
            try:
                failures: List[Optional[BaseException]] = await written
            except StoreUnavailable as exc:   # the thread itself is gone (closing)
                failures = [exc] * len(rows)
            for (row, claim_id), failure in zip(rows, failures):
                if failure is None:
                    self.running.discard(claim_id)
                else:
                    await self.record_again(row, claim_id, failure)
        finally:
            # Requests waiting for held budget look again (see ClassroomPolicy.admit).
            self.note_released()

    async def record_again(self, row: LedgerRow, claim_id: Optional[str], failure: BaseException) -> None:
        """A row the store refused: once more without the conversation text (the likeliest
        cause), which still counts the tokens and gives back the hold; if the store is away,
        kept for settle_forever, since a row never written would hold its budget for ever."""
        if not isinstance(failure, StoreUnavailable):
            log.error("记录用量失败，改记一行不含对话的记录 / Recording failed, writing a row without the "
                      "conversation: %s: %s", type(failure).__name__, failure)
        row = dataclasses.replace(row, conversation=None)
        try:
            await self.call(self.store.record, row, claim_id)
        except Exception:  # noqa: BLE001 - the store is away: kept to be written once it is back
            if len(self.unrecorded) == self.unrecorded.maxlen:
                log.error("课堂数据库离线太久，最早的一条用量记录未能保存 / The store was away too long: "
                          "the oldest unsaved ledger row is given up")
                self.running.discard(self.unrecorded[0][1])
            self.unrecorded.append((row, claim_id))
            return
        self.running.discard(claim_id)

    async def write_rows(self) -> None:
        """Every row handed over, written now (the server is stopping)."""
        self._send_rows()
        if self._rows_writing:
            await asyncio.gather(*self._rows_writing, return_exceptions=True)

    def close(self) -> None:
        rows, self._rows = self._rows, []
        if rows:   # the loop ended before write_rows: written here, without it
            for (row, claim_id), failure in zip(rows, self._worker.submit(_record_each, self.store, rows).result()):
                if failure is not None:
                    log.error("关闭时记录用量失败 / Recording usage at shutdown failed: %s: %s",
                              type(failure).__name__, failure)
        self._worker.shutdown(wait=True)
        self.store.close()


def _record_each(store: Store, rows: List[Tuple[LedgerRow, Optional[str]]]) -> List[Optional[BaseException]]:
    """On the store thread: all rows in one transaction where the store can (record_many);
    where it cannot, or that fails, each in its own, so one the store refuses costs no other.
    What went wrong with each (None: written)."""
    if len(rows) > 1:
        try:
            store.record_many(rows)
            return [None] * len(rows)
        except Exception:  # noqa: BLE001 - NotImplementedError, or one bad row: one at a time
            pass
    failures: List[Optional[BaseException]] = []
    for row, claim_id in rows:
        try:
            store.record(row, claim_id)
            failures.append(None)
        except Exception as exc:  # noqa: BLE001 - a full disk or a locked file: retried by the caller
            failures.append(exc)
    return failures


async def _store_result(future: "asyncio.Future[Any]") -> Any:
    try:
        return await future
    except (LLMError, ValueError):
        raise
    except Exception as exc:  # noqa: BLE001 - a full disk or a locked file must not look like a bug
        log.error("课堂数据出错 / Classroom store error: %s: %s", type(exc).__name__, exc)
        raise StoreUnavailable() from None


class StoreUnavailable(ServerError):
    """Answered as 503 (see api/openai_format.py): the server is fine, its store is away."""

    student_facing = True

    def __init__(self) -> None:
        super().__init__("服务器的用量记录暂时不可用，请几秒后再试；一直这样请告诉老师。/ "
                         "The server's usage ledger is unavailable right now; try again in a few seconds, and "
                         "tell your teacher if it persists.", retry_after=5)


# Ends after which the provider has read (and bills) the prompt though it reported no usage.
_BILLED_WITHOUT_USAGE = ("ok", "disconnected", "upstream_timeout", "server_stopping")


class StoreLedger:
    """Writes each request's ledger row and releases what its admission held."""

    def __init__(self, classroom: Classroom) -> None:
        self._classroom = classroom

    async def record(self, entry: LedgerEntry) -> None:
        """Hand over the entry's row. With one store thread (``in_order``) that is all: the row
        is written, and its hold given back, ahead of anything asked of the store later, so
        nobody need wait for it (Classroom.queue_row). Otherwise it is written before this returns."""
        room = self._classroom
        try:
            row, claim_id = self._row(entry)
        except BaseException:
            room.note_released()
            raise
        if room.in_order:
            room.queue_row(row, claim_id)
            return
        try:
            try:
                await room.call(room.store.record, row, claim_id)
            except Exception as exc:  # noqa: BLE001 - whatever failed, the hold must not outlive the request
                await room.record_again(row, claim_id, exc)
                return
            room.running.discard(claim_id)
        finally:
            room.note_released()

    def _row(self, entry: LedgerEntry) -> Tuple[LedgerRow, Optional[str]]:
        ticket = entry.ticket
        usage = entry.usage
        if usage is not None:
            charged = usage.total_tokens
        elif ticket is not None and (entry.answer or entry.reasoning or
                                     entry.upstream and entry.outcome in _BILLED_WITHOUT_USAGE):
            # Upstream reported nothing (the student left, even before the first character, or
            # the answer was cut): charge what we can see, prompt characters (as the hold
            # estimates them) plus the reasoning and answer characters already sent, an upper
            # bound in practice. The row's token columns stay empty: the export calls it estimated.
            charged = ticket.prompt_chars + len(entry.answer) + len(entry.reasoning)
        else:
            charged = 0
        conversation = None
        if self._classroom.review and entry.messages is not None:
            messages = entry.messages
            if not self._classroom.settings.get("store_pictures"):
                messages = without_pictures(messages)   # that one was sent, not the picture
            conversation = json.dumps({"messages": messages, "answer": entry.answer}, ensure_ascii=False)
        row = LedgerRow(
            started=entry.started, day=today(entry.started), latency=entry.latency, who=entry.who,
            model=entry.model, stream=entry.stream, status=entry.status, outcome=entry.outcome,
            admitted=ticket is not None,
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            total_tokens=usage.total_tokens if usage else None,
            charged=charged, conversation=conversation, name=entry.name, flagged=entry.flagged,
            provider=entry.provider, fallback_reason=entry.fallback_reason)
        claim_id = ticket.claim_id if ticket else None
        # Vectors have no answer: an embedding row (model 'embedding:…') says nothing of answer sizes.
        if ticket is not None and entry.outcome == "ok" and usage is not None and \
                not (entry.model or "").startswith("embedding:"):
            self._classroom.answer_sizes.note(ticket.prompt_chars, usage.prompt_tokens, usage.completion_tokens)
        return row, claim_id


def own_usage(classroom: Classroom, caller: Any) -> dict:
    """``GET /v1/usage``: the caller's own tokens today and their limits, nobody else's."""
    limits = caller.token.limits if caller.token else None
    daily = limits.daily_tokens if limits and limits.daily_tokens is not None else classroom.per_student_daily
    day = today()
    return {"who": caller.who, "day": day, "used_tokens": classroom.store.used(day, caller.who),
            "daily_limit": daily, "requests_per_minute": limits.rpm if limits else None,
            "concurrent": limits.concurrent if limits else None}
