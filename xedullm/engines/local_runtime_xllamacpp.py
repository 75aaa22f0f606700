"""The local model on xllamacpp: llama.cpp's own server core, installed from a ready wheel.

Runs inside the worker process only (``local_worker``). xllamacpp publishes wheels for Windows
x64, macOS (arm64, x86_64) and Linux (x86_64, aarch64) for Python 3.10+, so ``pip install
"xedullm[local]"`` needs no compiler there. Its ``Server`` takes an OpenAI chat request as a
dict and answers with OpenAI's own chunks, using the model's chat template, JSON-schema
grammars and (for templates that carry them) tool calls.

Lanes. One ``Server`` decodes all its parallel slots in one batch with its own thread pool.
Measured on the 2-core target with SmolLM2 and 8 concurrent questions: one Server with 8 slots
on 2 threads made ~180 tokens/s on a quiet machine but fell to ~50 as soon as one other busy
process took a core (llama.cpp's threads wait for each other), while one Server per core, each
on 1 thread with 4 slots, made ~140-155 quiet and ~110 with the busy process. A classroom
server always has something else on the CPU (the web server, a browser), so a model runs in
1-thread lanes, one per core, each request going to the least busy lane.

Slots: 30 students on 2 cores waited a median ~5 s for a first token with 4 slots per lane and
~1 s with 8 (aggregate 123 vs 162 tokens/s), so a lane has 8. Each slot holds its KV cache
(llama.cpp allocates it whole: ~47 MB per 2048 tokens for SmolLM2, ~25 for Qwen2.5-0.5B, ~57 for
Qwen2.5-1.5B), so lanes open as students arrive: one student's ``xedullm ask`` keeps one lane.
One shared (unified) KV cache would save memory, but when it fills every answer fails at once
(tried: 8 long questions on a 8192-token unified cache all ended "Context size has been exceeded").

Admission is ours, not llama.cpp's: a request waits here (cancellable, counted for ``status``)
until a slot is free, so a student who closes the page while waiting never reaches the model.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ..errors import BadRequestError, ConfigurationError, ServerError

PROVIDER = "local"
NAME = "xllamacpp"
SLOTS_PER_LANE = 8
#: one lane per core at most: lanes beyond the cores fight for them (measured: 4 lanes of 4 on 2
#: cores made half the tokens/s of 2 lanes of 8 for 30 students)
LANES_PER_CORE = 1
MAX_LANES = 16
# llama.cpp's log: errors only (the worker's stderr is kept for a crash report, not a diary).
LOG_ERRORS_ONLY = 1

#: the OpenAI request fields passed to llama.cpp as they are (it speaks OpenAI's chat format)
PASSED_THROUGH = ("max_tokens", "temperature", "top_p", "stop", "seed", "response_format", "tools",
                  "tool_choice", "parallel_tool_calls", "frequency_penalty", "presence_penalty",
                  "logprobs", "top_logprobs", "repeat_penalty")

Send = Callable[..., None]


def runtime_version() -> str:
    import xllamacpp

    return getattr(xllamacpp, "__version__", "?")


def _params(path: Path, n_ctx: int, slots: int, threads: int, embedding: bool):
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_ctx = n_ctx * slots          # llama.cpp splits the context among the slots
    params.n_parallel = slots
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    params.warmup = False
    # ggml's extra (repacking) buffer types: the AMX copy of the weights crashed llama.cpp on
    # Sapphire Rapids CPUs (see docs/local-models.md); ordinary CPU kernels run everywhere.
    params.no_extra_bufts = True
    params.verbosity = LOG_ERRORS_ONLY
    if embedding:
        params.embedding = True
        # A chat model has no pooling of its own; the mean of its token vectors is the usual
        # sentence vector (an embedding model's GGUF names its own pooling, which wins).
        params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_MEAN
        params.n_batch = params.n_ubatch = n_ctx  # a whole input in one non-causal batch
    return params


def _load(path: Path, params):
    import xllamacpp

    try:
        return xllamacpp.Server(params)
    except Exception as exc:  # llama.cpp reports a bad file as a plain exception
        raise ConfigurationError(
            f"无法加载模型文件 {path}：它不是可用的 GGUF 模型，请换一个文件，或重新下载："
            f"xedullm models pull 模型名。 / Could not load {path}: it is not a usable GGUF "
            f"model; choose another file or download it again: xedullm models pull NAME.",
            provider=PROVIDER,
        ) from exc


class _Lane:
    def __init__(self, server, slots: int) -> None:
        self.server = server
        self.slots = slots
        self.busy = 0


class LoadedModel:
    """One model file: its lanes, and who waits for a slot."""

    def __init__(self, path: Path, n_ctx: int, n_threads: Optional[int]) -> None:
        self.path = path
        self.n_ctx = n_ctx
        cores = n_threads or os.cpu_count() or 1
        self.max_lanes = max(1, min(cores * LANES_PER_CORE, MAX_LANES))
        self.params = _params(path, n_ctx, SLOTS_PER_LANE, 1, False)
        self.lanes = [_Lane(_load(path, self.params), SLOTS_PER_LANE)]
        self._opening = False
        self._embedder = None
        self._embed_lock = threading.Lock()
        self._cond = threading.Condition()
        self._waiting = 0
        #: tokens generated since loading, cancelled requests included
        self.tokens_generated = 0

    @property
    def max_contexts(self) -> int:
        return self.max_lanes * SLOTS_PER_LANE

    def stats(self) -> Dict[str, Any]:
        with self._cond:
            busy = sum(lane.busy for lane in self.lanes)
            return dict(tokens_generated=self.tokens_generated, busy=busy, waiting=self._waiting,
                        contexts=sum(lane.slots for lane in self.lanes), max_contexts=self.max_contexts,
                        lanes=len(self.lanes),
                        n_ctx=self.n_ctx, n_threads=len(self.lanes),
                        # read back from what llama.cpp was given
                        use_extra_bufts=not self.params.no_extra_bufts)

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _acquire(self, cancel: threading.Event) -> Optional[_Lane]:
        with self._cond:
            self._waiting += 1
            try:
                while not cancel.is_set():
                    if (not self._opening and len(self.lanes) < self.max_lanes
                            and all(lane.busy for lane in self.lanes)):
                        # Every lane is working: the next core gets one, for the students after
                        # this one (this one does not wait for it if a slot is free now).
                        self._opening = True
                        threading.Thread(target=self._open_lane, daemon=True,
                                         name="xedullm-local-lane").start()
                    free = [lane for lane in self.lanes if lane.busy < lane.slots]
                    if free:
                        lane = min(free, key=lambda lane: lane.busy)
                        lane.busy += 1
                        return lane
                    self._cond.wait()
                return None
            finally:
                self._waiting -= 1

    def _open_lane(self) -> None:
        """One more lane (the weights are mapped already; the lane allocates its KV cache)."""
        lane = None
        try:
            lane = _Lane(_load(self.path, self.params), SLOTS_PER_LANE)
        except Exception:   # a lane that cannot open leaves the others serving
            self.max_lanes = len(self.lanes)
        finally:
            with self._cond:
                self._opening = False
                if lane is not None:
                    self.lanes.append(lane)
                self._cond.notify_all()

    def _release(self, lane: _Lane, generated: int) -> None:
        with self._cond:
            lane.busy -= 1
            self.tokens_generated += generated
            self._cond.notify_all()

    # -- chat --------------------------------------------------------------------------
    def chat(self, messages: List[Dict[str, Any]], params: Dict[str, Any], cancel: threading.Event,
             send: Send) -> None:
        body: Dict[str, Any] = {key: params[key] for key in PASSED_THROUGH if params.get(key) is not None}
        body.update(messages=messages, stream=True, stream_options={"include_usage": True})
        lane = self._acquire(cancel)
        if lane is None:
            return
        state = _StreamState(send)
        try:
            def on_chunk(chunk: Dict[str, Any]) -> bool:
                state.take(chunk)
                return cancel.is_set() or state.failed   # True: llama.cpp stops this slot
            lane.server.handle_chat_completions(body, on_chunk)
        finally:
            self._release(lane, state.generated)
        state.finish(cancelled=cancel.is_set())

    # -- embeddings --------------------------------------------------------------------
    def embed(self, texts: List[str]) -> Dict[str, Any]:
        with self._embed_lock:   # one embedding server per model, loaded on first use
            if self._embedder is None:
                self._embedder = _load(self.path, _params(self.path, self.n_ctx, 1, 1, True))
            answer = self._embedder.handle_embeddings({"input": texts})
        if "error" in answer:
            raise _error(answer["error"])
        rows = sorted(answer.get("data") or [], key=lambda row: row.get("index", 0))
        usage = answer.get("usage") or {}
        return {"vectors": [row["embedding"] for row in rows],
                "prompt_tokens": int(usage.get("prompt_tokens") or 0)}


class _StreamState:
    """Turns llama.cpp's OpenAI chunks into the worker's messages."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.generated = 0
        self.failed = False
        self._finish: Optional[str] = None
        self._usage: Optional[List[int]] = None

    def take(self, chunk: Dict[str, Any]) -> None:
        if "error" in chunk:
            self.failed = True
            error = _error(chunk["error"])
            self._send(error={"type": type(error).__name__, "message": str(error), "code": error.code})
            return
        usage = chunk.get("usage")
        if usage:
            self._usage = [int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)]
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            piece: Dict[str, Any] = {}
            if delta.get("content"):
                piece["text"] = delta["content"]
            if delta.get("reasoning_content"):
                piece["reasoning"] = delta["reasoning_content"]
            if delta.get("tool_calls"):
                piece["tool_calls"] = delta["tool_calls"]
            if choice.get("logprobs"):
                piece["logprobs"] = choice["logprobs"]
            if piece:
                self.generated += 1
                self._send(**piece)
            self._finish = choice.get("finish_reason") or self._finish

    def finish(self, cancelled: bool) -> None:
        if self.failed or cancelled:
            return
        prompt, completion = self._usage or [0, self.generated]
        self._send(finish=self._finish or "stop", usage=[prompt, completion])


def _error(fields: Dict[str, Any]):
    kind = fields.get("type")
    message = str(fields.get("message") or "")
    if kind == "exceed_context_size_error":
        n_prompt, n_ctx = fields.get("n_prompt_tokens"), fields.get("n_ctx")
        return BadRequestError(
            f"输入太长：提示词共 {n_prompt} 个 token，超出本地模型的上下文长度 {n_ctx}。"
            f"请缩短输入或清空对话历史（聊天中输入 /clear）。 / The prompt is too long: {n_prompt} "
            f"tokens, more than the local model's context of {n_ctx}. Shorten the input or clear "
            f"the history (/clear in chat).",
            provider=PROVIDER, code="context_length_exceeded",
        )
    if kind == "invalid_request_error" or fields.get("code") == 400:
        return BadRequestError(
            f"本地模型不接受这个请求：{message}。请检查参数后再试。 / The local model refused the "
            f"request: {message}. Check the parameters and try again.", provider=PROVIDER)
    return ServerError(provider=PROVIDER, detail=f"llama.cpp: {message}")


def load(path: Path, n_ctx: int, n_threads: Optional[int]) -> LoadedModel:
    return LoadedModel(path, n_ctx, n_threads)
