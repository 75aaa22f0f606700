"""The local model on llama-cpp-python: the fallback where xllamacpp has no wheel.

xllamacpp's wheels serve Python 3.10+ on Windows x64, macOS and Linux x86_64/aarch64; on an
older Python or another platform the ``local`` extra installs llama-cpp-python instead, which
pip compiles (a C/C++ toolchain, ~10 minutes). Runs inside the worker process only.

Concurrency: a llama.cpp context is not thread-safe, so each generation runs on a context
of its own, taken from a small per-model pool (at most one context per CPU core; further
requests wait their turn). The weights are memory-mapped once and shared; a context adds
only its KV cache and buffers (tens of MB at n_ctx 2048 for SmolLM2).

Threads: measured on the 2-core target. On a quiet machine one request ran at ~110 tokens/s
on 2 threads and ~75 on 1; but as soon as anything else used the CPU the 2-thread context
collapsed to ~5 tokens/s, because llama.cpp's threads spin-wait for each other, while 1
thread kept 50-70. So a generation uses at most half the cores, shared among the busy
contexts and re-balanced between tokens.

What this runtime does not do (xllamacpp does): JSON mode, tool calls, embeddings; they are
refused with an error that says how to get xllamacpp.
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from ..errors import BadRequestError, ConfigurationError, LLMError, ServerError

PROVIDER = "local"
# Lines of llama.cpp's load log that say where the weights went (kept for ``status``).
_BUFFER_LOG_MARKERS = ("model buffer", "buffer type")
_BUFFER_LOG_LIMIT = 64


def turn_off_extra_buffers(llama_cpp) -> Optional[bool]:
    """Make every model this process loads skip ggml's extra (repacking) buffer types.

    Why: ggml's CPU backend may copy the weights at load time into "extra" buffer types laid
    out for special instructions: AMX tiles on Intel Xeon Sapphire Rapids and newer, or
    interleaved CPU_REPACK layouts. On AMX CPUs llama-cpp-python 0.3.36 segfaults inside
    llama_decode on the first answer once the weights sit in the AMX buffer. With the extra
    types off, the weights stay in the memory-mapped file as stored, and decoding uses
    ggml's ordinary CPU kernels, which every CPU runs. For SmolLM2's Q4_1 weights nothing is
    repacked on an AVX2 machine anyway (ggml says so at load), so speed is unchanged
    (bench/local.py compares with llama-cpp-python's defaults), and no second copy of the
    weights is made.

    How: ``llama_cpp.Llama(...)`` has no keyword for ``use_extra_bufts``; it takes the model
    parameters from ``llama_model_default_params()`` and hands them straight to llama.cpp.
    This process belongs to the local engine alone, so it changes that one default, once,
    before any model loads. The field exists since llama.cpp added the switch; returns
    False when it is now off, None when this llama.cpp is too old to have it.
    """
    bindings = llama_cpp.llama_cpp
    if "use_extra_bufts" not in dict(bindings.llama_model_params._fields_):
        return None
    library_default = bindings.llama_model_default_params

    def without_extra_buffers():
        params = library_default()
        params.use_extra_bufts = False
        return params

    bindings.llama_model_default_params = without_extra_buffers
    return False


class _BufferLog:
    """llama.cpp's log lines about buffers; warnings and errors still go to stderr."""

    def __init__(self, llama_cpp) -> None:
        self.lines: List[str] = []

        @llama_cpp.llama_log_callback
        def on_log(level: int, text: bytes, user_data) -> None:
            line = text.decode("utf-8", "replace").strip()
            if any(marker in line for marker in _BUFFER_LOG_MARKERS) and len(self.lines) < _BUFFER_LOG_LIMIT:
                self.lines.append(line)
            elif level in (2, 3):  # GGML_LOG_LEVEL_WARN, GGML_LOG_LEVEL_ERROR
                sys.stderr.write(line + "\n")

        self._callback = on_log  # llama.cpp keeps only the pointer: keep the function alive
        llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))


def _config_error(zh: str, en: str) -> ConfigurationError:
    return ConfigurationError(f"{zh} / {en}", provider=PROVIDER)


class LoadedModel:
    """One model file with its pool of contexts."""

    def __init__(self, llama_cpp, path: Path, n_ctx: int, n_threads: int, max_contexts: int) -> None:
        self._llama_cpp = llama_cpp
        self.path = path
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.max_contexts = max_contexts
        first = self._new_context()
        self._free = [first]
        self._all = [first]
        self._busy = 0
        self._waiting = 0
        self._cond = threading.Condition()
        #: tokens sampled since loading, cancelled requests included
        self.tokens_generated = 0
        self._tokenizer = first
        self._format_prompt = _prompt_formatter(first)

    def _new_context(self):
        try:
            return self._llama_cpp.Llama(model_path=str(self.path), n_ctx=self.n_ctx,
                                         n_threads=self.n_threads, n_threads_batch=self.n_threads,
                                         verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            raise _config_error(
                f"无法加载模型文件 {self.path}：它不是可用的 GGUF 模型，请换一个文件。",
                f"Could not load {self.path}: it is not a usable GGUF model; choose another file.",
            ) from exc

    def stats(self) -> Dict[str, Any]:
        with self._cond:
            contexts = list(self._all)
            stats = dict(tokens_generated=self.tokens_generated, busy=self._busy,
                         waiting=self._waiting, contexts=len(contexts),
                         max_contexts=self.max_contexts, n_ctx=self.n_ctx, n_threads=self.n_threads)
        # What llama.cpp was really given, read back from each context's own parameters.
        flags = {getattr(c.model_params, "use_extra_bufts", None) for c in contexts}
        stats["use_extra_bufts"] = True if True in flags else (None if None in flags else False)
        return stats

    def acquire(self, cancel: threading.Event):
        """A context for one generation, or None if ``cancel`` is set while waiting for one."""
        with self._cond:
            self._waiting += 1
            try:
                while not self._free and len(self._all) >= self.max_contexts and not cancel.is_set():
                    self._cond.wait()
            finally:
                self._waiting -= 1
            if cancel.is_set():
                return None
            self._busy += 1
            if self._free:
                return self._free.pop()
            self._all.append(None)  # reserve the slot while the new context loads
        try:
            context = self._new_context()
        except BaseException:
            with self._cond:
                self._all.remove(None)
                self._busy -= 1
                self._cond.notify_all()
            raise
        with self._cond:
            self._all[self._all.index(None)] = context
        return context

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

    def count_prompt(self, messages: List[Dict[str, str]]):
        """(prompt tokens, stop strings, stopping criteria) exactly as generation will use them."""
        formatted = self._format_prompt(messages)
        tokens = self._tokenizer.tokenize(
            formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True
        )
        stop = formatted.stop if isinstance(formatted.stop, list) else [formatted.stop] if formatted.stop else []
        return tokens, stop, formatted.stopping_criteria


def _prompt_formatter(llama) -> Callable[[List[Dict[str, str]]], Any]:
    from llama_cpp import llama_chat_format

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


class Generation:
    """One answer on one context; pieces are sent as they are sampled.

    The generation holds its context until it ends, so a parent that stops reading (closed
    stream, Ctrl-C, cancelled task) never holds one: it sends "cancel" and the sampler stops
    at the next token.
    """

    def __init__(self, model: LoadedModel, messages: List[Dict[str, str]], params: Dict[str, Any],
                 cancel: threading.Event) -> None:
        self.model = model
        self.cancel = cancel
        self.prompt_tokens, stop, self._criteria = model.count_prompt(messages)
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
        self.params = dict(params, stop=list(params.get("stop") or []) + stop)

    def run(self, send: Callable[..., None]) -> None:
        context = self.model.acquire(self.cancel)
        if context is None:
            return
        sampled = [0]
        try:
            if not self.cancel.is_set():
                self._generate(context, sampled, send)
        finally:
            self.model.release(context, sampled[0])

    def _generate(self, context, sampled: List[int], send: Callable[..., None]) -> None:
        from llama_cpp import StoppingCriteriaList, llama_set_n_threads

        cancel = self.cancel
        criteria = self._criteria
        threads = [0]
        position = [0]

        def after_each_token(input_ids, logits) -> bool:
            # llama-cpp-python asks its stopping criteria once per sampled token, on this
            # thread, between two decodes of this context: the place to count, to re-balance
            # threads, and to brake for a closed stream or a cancelled task. It asks once more
            # when the answer ends, with the same tokens as the last time: a position already
            # seen is not a new token. (A logits processor sees each token once too, but makes
            # llama-cpp-python copy the whole vocabulary's logits through numpy every time.)
            if len(input_ids) != position[0]:
                position[0] = len(input_ids)
                sampled[0] += 1
                wanted = self.model.fair_threads()
                if wanted != threads[0]:
                    llama_set_n_threads(context.ctx, wanted, wanted)
                    threads[0] = wanted
            return cancel.is_set() or bool(criteria and criteria(input_ids, logits))

        wanted = self.model.fair_threads()
        llama_set_n_threads(context.ctx, wanted, wanted)
        threads[0] = wanted
        finish = None
        pieces = context.create_completion(
            prompt=self.prompt_tokens, stream=True,
            stopping_criteria=StoppingCriteriaList([after_each_token]), **self.params,
        )
        try:
            for piece in pieces:
                choice = piece["choices"][0]
                finish = choice.get("finish_reason") or finish
                if choice.get("text"):
                    send(text=choice["text"])
                if cancel.is_set():
                    return
        finally:
            pieces.close()
        # The token that ended the answer (end-of-turn) was sampled but is not part of it.
        completion = max(0, sampled[0] - 1) if finish == "stop" else sampled[0]
        send(finish=finish, usage=[len(self.prompt_tokens), completion])


NAME = "llama_cpp"   # as XEDULLM_LOCAL_RUNTIME names it
_NEEDS_XLLAMACPP = ("response_format", "tools", "tool_choice", "parallel_tool_calls", "logprobs",
                    "top_logprobs", "frequency_penalty", "presence_penalty")


def runtime_version() -> str:
    import llama_cpp

    return llama_cpp.__version__


def _needs_xllamacpp(what: str) -> BadRequestError:
    return BadRequestError(
        f"本地模型的 llama-cpp-python 引擎不支持 {what}：请在 Python 3.10 或更新版本上安装 "
        f"xllamacpp（pip install \"xedullm[local]\"），或去掉这个参数。 / The local model's "
        f"llama-cpp-python engine does not support {what}: install xllamacpp on Python 3.10 or "
        f"newer (pip install \"xedullm[local]\"), or leave the option out.",
        provider=PROVIDER, code="unsupported_option",
    )


class _Runtime:
    """What the worker calls: load, then chat / embed / stats for one model file."""

    _llama_cpp = None
    _buffer_log = None
    extra_buffers = None

    @classmethod
    def start(cls) -> None:
        import llama_cpp

        cls._llama_cpp = llama_cpp
        cls.extra_buffers = turn_off_extra_buffers(llama_cpp)
        cls._buffer_log = _BufferLog(llama_cpp)

    @classmethod
    def buffer_log(cls) -> List[str]:
        return list(cls._buffer_log.lines) if cls._buffer_log else []


def load(path: Path, n_ctx: int, n_threads: Optional[int]) -> "PooledModel":
    if _Runtime._llama_cpp is None:
        _Runtime.start()
    cores = os.cpu_count() or 1
    return PooledModel(_Runtime._llama_cpp, path, n_ctx, n_threads or max(1, cores // 2), cores)


class PooledModel(LoadedModel):
    def chat(self, messages: List[Dict[str, Any]], params: Dict[str, Any], cancel: threading.Event,
             send: Callable[..., None]) -> None:
        for name in _NEEDS_XLLAMACPP:
            if params.get(name) is not None:
                raise _needs_xllamacpp(name)
        sampling = {key: params[key] for key in ("max_tokens", "temperature", "top_p", "seed",
                                                 "repeat_penalty") if params.get(key) is not None}
        sampling["stop"] = list(params.get("stop") or [])
        Generation(self, messages, sampling, cancel).run(send)

    def embed(self, texts: List[str]) -> Dict[str, Any]:
        raise _needs_xllamacpp("embeddings")

    def stats(self) -> Dict[str, Any]:
        return dict(super().stats(), buffer_log=_Runtime.buffer_log(), extra_buffers=_Runtime.extra_buffers)
