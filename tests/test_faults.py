"""The fault matrix: every upstream failure of issue 7, through ``Client``, for each wire
protocol (OpenAI-compatible as DeepSeek, OpenRouter and GLM; DashScope native; ERNIE), sync
and async, streaming and not.

Each call runs in a worker thread that must finish within a generous bound: a hang
detector, not a speed test. After each call the client's connection pool must hold no busy
connection, and once the client is closed the fake must see no open TCP connection.
"""
from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass, field
from typing import Any, List, Optional

import pytest

from xedullm import Client
from xedullm import errors as E
from xedullm.testing import FakeDashScopeServer, FakeErnieServer, FakeOpenAIServer, Fault

KEY = "sk-fault-matrix-0123456789abcdef"
AK, SK = "ak-fault-0123456789", "sk-fault-secret-0123456789"
TARGETS = ["deepseek", "openrouter", "glm", "dashscope", "ernie"]
MODES = ["sync", "async"]
HANG_BOUND = 60.0          # seconds a single call may take before we call it a hang
SHORT = 0.3                # the client timeout in timeout tests
PROMPT = "请用三句话介绍一下长城的历史"
ANSWER = "你好！你刚才说：" + PROMPT
# An in-stream error before any text that the protocol treats as retryable.
RETRYABLE_FRAME = {"deepseek": "server_error", "openrouter": 502, "glm": "500",
                   "dashscope": "InternalError", "ernie": 336100}
# The provider's own in-stream error (protocols.md) and the class it must become.
NATIVE_FRAME = {
    "deepseek": ("server_error", E.ServerError),
    "openrouter": (502, E.ServerError),
    "glm": ("1301", E.ContentFilterError),
    "dashscope": ("DataInspectionFailed", E.ContentFilterError),
    "ernie": (336100, E.ServerError),
}


@dataclass
class Target:
    name: str
    fake: Any

    def client(self, **kwargs) -> Client:
        kwargs.setdefault("verbose", False)
        if self.name == "dashscope":
            return Client(provider="qwen", base_url=self.fake.base_url, api_key=KEY, **kwargs)
        if self.name == "ernie":
            return Client(provider="ernie", base_url=self.fake.base_url, api_key=AK,
                          secret_key=SK, **kwargs)
        return Client(provider=self.name, base_url=self.fake.base_url, api_key=KEY, **kwargs)


@pytest.fixture(scope="module", params=TARGETS)
def target(request):
    name = request.param
    if name == "dashscope":
        fake = FakeDashScopeServer(api_key=KEY)
    elif name == "ernie":
        fake = FakeErnieServer(api_key=AK, secret_key=SK)
    else:
        fake = FakeOpenAIServer(flavor=name, api_key=KEY)
    with fake:
        yield Target(name, fake)


@pytest.fixture
def t(target):
    target.fake.reset()
    yield target
    target.fake.faults.clear()


@pytest.fixture(params=MODES)
def mode(request):
    return request.param


@dataclass
class Outcome:
    pieces: List[str] = field(default_factory=list)
    error: Optional[BaseException] = None
    requests: int = 0
    busy_connections: int = -1

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def _busy(wire) -> int:
    """Answers a wire handed out that were never given back (their connections still held)."""
    return wire.open_replies


def ask(t: Target, mode: str, stream: bool, *, timeout: float = 5.0, max_retries: int = 1,
        prompt: str = PROMPT) -> Outcome:
    """One inference through a fresh Client in a worker thread; records what came out."""
    out = Outcome()
    before = len(t.fake.chat_requests)
    client = t.client(timeout=timeout, max_retries=max_retries)

    def sync_call() -> None:
        try:
            if stream:
                for piece in client.inference(prompt, stream=True):
                    out.pieces.append(piece)
            else:
                out.pieces.append(client.inference(prompt))
        except Exception as exc:  # noqa: BLE001 - the outcome is what we assert on
            out.error = exc
        out.busy_connections = _busy(client._get_engine().wire)
        client.close()

    async def async_call() -> None:
        try:
            if stream:
                async for piece in await client.ainference(prompt, stream=True):
                    out.pieces.append(piece)
            else:
                out.pieces.append(await client.ainference(prompt))
        except Exception as exc:  # noqa: BLE001
            out.error = exc
        out.busy_connections = _busy(client._get_engine().awire)
        await client._get_engine().aclose()

    worker = threading.Thread(
        target=sync_call if mode == "sync" else lambda: asyncio.run(async_call()), daemon=True)
    worker.start()
    worker.join(HANG_BOUND)
    assert not worker.is_alive(), "the client hung past its timeout"
    out.requests = len(t.fake.chat_requests) - before
    assert out.busy_connections == 0, "a connection was left in use after the call"
    assert t.fake.wait_for(lambda: t.fake.active_connections == 0, timeout=10), \
        "a TCP connection stayed open after client.close()"
    if out.error is not None:
        assert KEY not in str(out.error) and SK not in str(out.error)
    return out


def ok(out: Outcome, requests: int = 1, text: str = ANSWER) -> None:
    assert out.error is None, f"unexpected {out.error!r}"
    assert out.text == text
    assert out.requests == requests


def failed(out: Outcome, cls, requests: int) -> None:
    assert isinstance(out.error, cls), f"expected {cls.__name__}, got {out.error!r}"
    assert out.requests == requests


# -- rate limits and server errors -----------------------------------------------------
@pytest.mark.parametrize("stream", [False, True])
def test_429_with_retry_after_is_retried_then_succeeds(t, mode, stream):
    t.fake.faults.append(Fault.rate_limited(retry_after=0.05))
    ok(ask(t, mode, stream), requests=2)


@pytest.mark.parametrize("stream", [False, True])
def test_429_without_retry_after_backs_off_then_succeeds(t, mode, stream):
    t.fake.faults.append(Fault.rate_limited(retry_after=None))
    ok(ask(t, mode, stream), requests=2)


def test_429_past_the_retries_is_a_rate_limit_error(t, mode):
    t.fake.faults.extend([Fault.rate_limited(retry_after=0.01)] * 2)
    failed(ask(t, mode, True, max_retries=1), E.RateLimitError, requests=2)


def test_a_long_retry_after_is_not_waited_for(t, mode):
    # Retry-After beyond the transport's cap: the caller hears about it now, once.
    t.fake.faults.append(Fault.status(429, headers={"Retry-After": "3600"}))
    out = ask(t, mode, False, max_retries=2)
    failed(out, E.RateLimitError, requests=1)


@pytest.mark.parametrize("code,stream", [(500, False), (502, True), (503, False), (503, True)])
def test_5xx_then_success(t, mode, stream, code):
    t.fake.faults.append(Fault.status(code))
    ok(ask(t, mode, stream), requests=2)


@pytest.mark.parametrize("stream", [False, True])
def test_503_forever_is_a_server_error_after_the_retries(t, mode, stream):
    t.fake.faults.extend([Fault.status(503)] * 2)
    out = ask(t, mode, stream, max_retries=1)
    failed(out, E.ServerError, requests=2)
    assert out.pieces == []


# -- timeouts --------------------------------------------------------------------------
@pytest.fixture
def full_backlog():
    """127.0.0.1:PORT that listens but never completes a handshake: its accept queue is
    full and nobody accepts, so a connect attempt waits until the client's timeout."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(s)
    yield port
    for s in fillers:
        s.close()
    listener.close()


@pytest.mark.parametrize("target", ["deepseek", "dashscope", "ernie"], indirect=True)  # one per protocol
@pytest.mark.parametrize("stream", [False, True])
def test_connect_timeout(target, full_backlog, mode, stream):
    base = f"http://127.0.0.1:{full_backlog}"
    path = {"dashscope": "/api/v1", "ernie": ""}.get(target.name, "/v1")
    dead = Target(target.name, target.fake)
    client_kwargs = dict(timeout=SHORT, max_retries=1, verbose=False)
    if target.name == "dashscope":
        client = Client(provider="qwen", base_url=base + path, api_key=KEY, **client_kwargs)
    elif target.name == "ernie":
        client = Client(provider="ernie", base_url=base, api_key=AK, secret_key=SK, **client_kwargs)
    else:
        client = Client(provider=target.name, base_url=base + path, api_key=KEY, **client_kwargs)
    dead.client = lambda **_: client
    out = ask(dead, mode, stream, timeout=SHORT)
    assert isinstance(out.error, E.APITimeoutError), repr(out.error)
    assert out.pieces == []


@pytest.mark.parametrize("stream", [False, True])
def test_read_timeout_before_the_first_byte_is_retried(t, mode, stream):
    t.fake.faults.append(Fault.stall(30))
    ok(ask(t, mode, stream, timeout=SHORT), requests=2)


@pytest.mark.parametrize("stream", [False, True])
def test_read_timeout_before_the_first_byte_forever(t, mode, stream):
    t.fake.faults.extend([Fault.stall(30)] * 2)
    failed(ask(t, mode, stream, timeout=SHORT), E.APITimeoutError, requests=2)


def test_read_timeout_between_chunks_after_text_is_not_retried(t, mode):
    t.fake.faults.append(Fault.stall_between(30, after=4))
    out = ask(t, mode, True, timeout=SHORT, max_retries=2)
    failed(out, E.APITimeoutError, requests=1)
    assert out.pieces and ANSWER.startswith(out.text)


def test_read_timeout_after_headers_before_text_is_retried(t, mode):
    t.fake.faults.append(Fault.stall_between(30, after=0))
    ok(ask(t, mode, True, timeout=SHORT), requests=2)


def test_read_timeout_in_a_non_stream_body_is_retried(t, mode):
    t.fake.faults.append(Fault.stall_between(30))
    ok(ask(t, mode, False, timeout=SHORT), requests=2)


@pytest.mark.parametrize("stream", [False, True])
def test_keepalives_only_past_the_timeout_time_out(t, mode, stream):
    # Comments (stream) or blank lines (non-stream) keep the socket busy but are not an
    # answer: the client gives up after its timeout instead of waiting them out.
    t.fake.faults.extend([Fault.keepalive_only(30, interval=0.05)] * 2)
    failed(ask(t, mode, stream, timeout=SHORT), E.APITimeoutError, requests=2)


@pytest.mark.parametrize("stream", [False, True])
def test_keepalives_shorter_than_the_timeout_are_harmless(t, mode, stream):
    t.fake.faults.append(Fault.keepalive_only(0.3, interval=0.05))
    ok(ask(t, mode, stream, timeout=3.0))


# -- broken streams --------------------------------------------------------------------
def test_disconnect_before_text_is_retried(t, mode):
    t.fake.faults.append(Fault.disconnect_after(0))
    ok(ask(t, mode, True), requests=2)


def test_disconnect_after_text_is_raised_after_the_text(t, mode):
    t.fake.faults.append(Fault.disconnect_after(4))
    out = ask(t, mode, True, max_retries=2)
    failed(out, E.APIConnectionError, requests=1)
    assert out.pieces and ANSWER.startswith(out.text)


def test_disconnect_in_a_non_stream_body_is_retried(t, mode):
    t.fake.faults.append(Fault.disconnect_after(0))
    ok(ask(t, mode, False), requests=2)


def test_malformed_chunk_after_text_is_a_server_error_without_retry(t, mode):
    t.fake.faults.append(Fault.malformed_chunk(after=4))
    out = ask(t, mode, True, max_retries=2)
    failed(out, E.ServerError, requests=1)
    assert out.pieces and ANSWER.startswith(out.text)


@pytest.mark.parametrize("stream", [False, True])
def test_malformed_json_before_text_is_retried(t, mode, stream):
    t.fake.faults.append(Fault.malformed_chunk(after=0))
    ok(ask(t, mode, stream), requests=2)


def test_error_frame_after_text_is_the_providers_class_without_retry(t, mode):
    code, cls = NATIVE_FRAME[t.name]
    t.fake.faults.append(Fault.error_frame(after=4, code=code))
    out = ask(t, mode, True, max_retries=2)
    failed(out, cls, requests=1)
    assert out.pieces and ANSWER.startswith(out.text)


@pytest.mark.parametrize("stream", [False, True])
def test_retryable_error_frame_before_text_is_retried(t, mode, stream):
    t.fake.faults.append(Fault.error_frame(after=0, code=RETRYABLE_FRAME[t.name]))
    ok(ask(t, mode, stream), requests=2)


@pytest.mark.parametrize("target", ["glm", "dashscope"], indirect=True)  # moderation frames
@pytest.mark.parametrize("stream", [False, True])
def test_content_filter_frame_is_never_retried(t, mode, stream):
    code, cls = NATIVE_FRAME[t.name]
    t.fake.faults.append(Fault.error_frame(after=0, code=code))
    failed(ask(t, mode, stream, max_retries=2), cls, requests=1)


# -- odd but valid answers -------------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True])
def test_huge_answer_arrives_whole(t, mode, stream):
    n = 400_000
    t.fake.faults.append(Fault.huge(n, piece_chars=2048))
    out = ask(t, mode, stream)
    assert out.error is None, repr(out.error)
    assert len(out.text) == n and out.text.startswith("很长的回答。long answer.")


@pytest.mark.parametrize("stream", [False, True])
def test_invalid_utf8_is_replaced_not_fatal(t, mode, stream):
    t.fake.faults.append(Fault.invalid_utf8(after=2))
    out = ask(t, mode, stream)
    assert out.error is None, repr(out.error)
    assert out.requests == 1
    assert "坏\ufffd" in out.text and out.text.replace("坏\ufffd\ufffd字", "") == ANSWER


@pytest.mark.parametrize("stream", [False, True])
def test_crlf_line_ends(t, mode, stream):
    t.fake.faults.append(Fault.crlf())
    ok(ask(t, mode, stream))


@pytest.mark.parametrize("stream", [False, True])
def test_leading_blank_lines(t, mode, stream):
    t.fake.faults.append(Fault.leading_blank_lines(5))
    ok(ask(t, mode, stream))


def test_stream_without_done_ends_at_eof(t, mode):
    t.fake.faults.append(Fault.no_done() + Fault.crlf())
    ok(ask(t, mode, True))


def test_closing_a_stream_early_releases_the_connection(t, mode):
    t.fake.token_delay = 0.02
    try:
        client = t.client(timeout=5.0)

        def sync_call():
            pieces = client.inference(PROMPT, stream=True)
            next(pieces)
            pieces.close()
            assert _busy(client._get_engine().wire) == 0
            client.close()

        async def async_call():
            pieces = await client.ainference(PROMPT, stream=True)
            await pieces.__anext__()
            await pieces.aclose()
            assert _busy(client._get_engine().awire) == 0
            await client._get_engine().aclose()

        errors: List[BaseException] = []

        def run():
            try:
                sync_call() if mode == "sync" else asyncio.run(async_call())
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        worker = threading.Thread(target=run, daemon=True)
        worker.start()
        worker.join(HANG_BOUND)
        assert not worker.is_alive() and not errors, errors
        assert t.fake.wait_for(lambda: t.fake.streams_cancelled == 1)
        assert t.fake.wait_for(lambda: t.fake.active_connections == 0, timeout=10)
    finally:
        t.fake.token_delay = 0.0
