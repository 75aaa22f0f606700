"""The ``local`` provider: a GGUF model run on this computer with llama.cpp.

Same engine interface as the HTTP providers (chat / stream / achat / astream / models), no
network. The model itself runs in a worker process (``local_worker``, supervised by
``local_process``): a crash inside llama.cpp ends the answers in flight with a clear error
instead of taking this process down, and the worker is started again. This module never
imports llama.cpp; ``import xedullm`` stays light and works without the ``local`` extra.

Which model: ``model=`` names a local catalog model (``xedullm models``), a .gguf file in the
models folder, or a path; without one, the best model installed (a Chinese-capable Qwen beats
the tiny English SmolLM2, see ``xedullm.models``).
"""
from __future__ import annotations

import asyncio
import importlib.util
import queue
import re
import sys
import threading
import warnings
from pathlib import Path
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional, Set, Tuple

from ..errors import BadRequestError, ConfigurationError, LLMError
from ..types import ChatChunk, ChatRequest, ChatResult, EmbeddingResult, Usage, join_tool_calls
from ..protocols.options import has_tool_turns
from .local_process import DONE, SUPERVISOR

PROVIDER = "local"
#: the model every install can get (``xedullm models pull smollm2``), and the name it answers as
DEFAULT_MODEL = "SmolLM2-135M-Instruct"
INSTALL_HINT = 'pip install "xedullm[local]"'
N_CTX = 2048          # per conversation; keeps memory small on classroom PCs
MAX_TOKENS = 512
# SmolLM2's model card recommends a low temperature; a small model rambles when hotter.
TEMPERATURE = 0.2
TOP_P = 0.9
# Small models fall into loops easily; a mild penalty keeps answers moving.
REPEAT_PENALTY = 1.1
# The OpenAI options the local model takes (protocols/options.py). llama.cpp speaks OpenAI's
# chat format itself: JSON mode and JSON schemas become grammars, and tool calls work where
# the model's chat template carries them (checked per model below).
OPTIONS = {name: name for name in ("seed", "response_format", "tools", "tool_choice", "parallel_tool_calls",
                                   "logprobs", "top_logprobs", "frequency_penalty", "presence_penalty")}
OPTIONS.update(user=None, stream_options=None)
_TOOL_OPTIONS = ("tools", "tool_choice", "parallel_tool_calls")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


class LocalModelAdvice(UserWarning):
    """Advice about the local model (shown once): e.g. a Chinese question to an English model."""


def _config_error(zh: str, en: str) -> ConfigurationError:
    return ConfigurationError(f"{zh} / {en}", provider=PROVIDER)


def default_model() -> str:
    """The local default: the best catalog model installed, else the built-in name."""
    from ..models import default_local_model, find_local_model

    best = default_local_model()
    row = find_local_model(best) if best else None
    return row.label if row else DEFAULT_MODEL


def resolve_model_path(model: Optional[str]) -> Path:
    """A catalog model name, a .gguf in the models folder or any .gguf path, as an existing
    file (a bilingual ConfigurationError saying what to pull or pass otherwise)."""
    from ..models import find_model_file

    return find_model_file(model or default_model())


def _has_wheels(platform: str, machine: str, version: Tuple[int, int]) -> bool:
    """Whether xllamacpp publishes a ready wheel for this platform (checked 2026-12-07:
    cp310-abi3 for win_amd64, macOS arm64/x86_64, manylinux x86_64/aarch64)."""
    machine = machine.lower()
    if version < (3, 10):
        return False
    if platform.startswith("win"):
        return machine in ("amd64", "x86_64")
    if platform == "darwin":
        return machine in ("arm64", "x86_64")
    if platform.startswith("linux"):
        return machine in ("x86_64", "aarch64", "arm64")
    return False


def install_advice(platform: str = sys.platform, machine: Optional[str] = None,
                   version: Optional[Tuple[int, int]] = None) -> str:
    """What to run to get the local engine on this platform, Python and machine."""
    import platform as platform_module

    machine = machine or platform_module.machine()
    version = version or sys.version_info[:2]
    if _has_wheels(platform, machine, version):
        return (f"本地模型引擎还没有安装：请运行 {INSTALL_HINT}（几十秒，不需要编译器），"
                f"然后运行 xedullm models pull smollm2 下载内置模型（约 100 MB）。 / The local model "
                f"engine is not installed: run {INSTALL_HINT} (seconds, no compiler needed), then "
                f"xedullm models pull smollm2 for the built-in model (about 100 MB).")
    why_zh = ("这台电脑的 Python 低于 3.10" if version < (3, 10) else "这个平台") + "没有现成的本地模型引擎安装包，"
    why_en = ("Python older than 3.10" if version < (3, 10) else "this platform") + " has no ready-made local engine package, "
    if platform.startswith("win"):
        tools_zh = "先安装 Visual Studio Build Tools（微软官网免费下载），勾选“使用 C++ 的桌面开发”"
        tools_en = "install Visual Studio Build Tools (free from Microsoft) with 'Desktop development with C++'"
    elif platform == "darwin":
        tools_zh, tools_en = "先运行 xcode-select --install", "run xcode-select --install"
    else:
        tools_zh = "先安装 gcc、g++ 和 cmake（Debian/Ubuntu：sudo apt install build-essential cmake）"
        tools_en = "install gcc, g++ and cmake (Debian/Ubuntu: sudo apt install build-essential cmake)"
    better_zh = "最简单的办法是安装 Python 3.10 或更新版本后再运行 " + INSTALL_HINT
    better_en = "the easiest way is Python 3.10 or newer, then " + INSTALL_HINT
    return (f"{why_zh}{better_zh}。也可以现场编译：1) {tools_zh}；2) 运行 {INSTALL_HINT}（编译约 10 分钟，只需一次）。 / "
            f"On {why_en}{better_en}. Or compile it: 1) {tools_en}; 2) run {INSTALL_HINT} "
            f"(it compiles for about 10 minutes, once).")


def require_engine() -> None:
    """Fail with install advice when no llama.cpp binding is installed (without importing one)."""
    from .local_worker import RUNTIME_PACKAGES

    for package in RUNTIME_PACKAGES.values():
        try:
            if importlib.util.find_spec(package) is not None:
                return
        except (ImportError, ValueError):
            continue
    raise ConfigurationError(install_advice(), provider=PROVIDER)


_advised: Set[str] = set()
_advised_lock = threading.Lock()


def _advise_chinese_model(path: Path, messages: List[Dict[str, Any]]) -> None:
    """Once per process: a Chinese question reached a model that does not speak Chinese."""
    from ..models import find_local_model

    row = find_local_model(path.name)
    if row is None or row.chinese:
        return
    last = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    if last is None or not isinstance(last.get("content"), str) or not _CJK.search(last["content"]):
        return
    with _advised_lock:
        if row.name in _advised:
            return
        _advised.add(row.name)
    from ..models import chinese_model_advice

    warnings.warn(LocalModelAdvice(chinese_model_advice(row.name)), stacklevel=4)


def _template_has_tools(path: Path) -> Optional[bool]:
    from ..models.gguf import chat_template

    template = chat_template(path)
    return None if template is None else "tools" in template


class _Call:
    """One request sent to the worker, as the engine's ``close`` can stop it."""

    def __init__(self, engine: "LocalEngine", message: Dict[str, Any], sink) -> None:
        self.worker = SUPERVISOR.worker()
        self._engine = engine
        engine._calls.add(self)
        self.request_id = self.worker.submit(message, sink)

    def cancel(self) -> None:
        """Stop generating at the next token (the worker still answers DONE)."""
        self.worker.cancel(self.request_id)

    def finished(self) -> None:
        self._engine._calls.discard(self)


class LocalEngine:
    """Engine for provider ``local``: any GGUF file, by catalog name or path."""

    def __init__(self, model: Optional[str] = None, *, n_ctx: int = N_CTX,
                 n_threads: Optional[int] = None) -> None:
        self.model = (model or default_model()).strip()
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self._calls: Set[_Call] = set()
        # Fail now, with advice, rather than at the first question. The engine first: after a
        # plain `pip install xedullm` the model is missing too, and the advice brings both.
        require_engine()
        resolve_model_path(self.model)

    def __repr__(self) -> str:
        return f"LocalEngine(model={self.model!r})"

    @property
    def worker_pid(self) -> Optional[int]:
        """The pid of the model's worker process, or None before the first request."""
        return SUPERVISOR.pid

    def _message(self, op: str, model: Optional[str], **fields: Any) -> Dict[str, Any]:
        path = resolve_model_path(model or self.model)
        return dict(op=op, path=str(path), n_ctx=self.n_ctx, n_threads=self.n_threads, **fields)

    def _chat_message(self, req: ChatRequest) -> Dict[str, Any]:
        message = self._message("chat", req.model, messages=req.messages)
        path = Path(message["path"])
        option = next((name for name in _TOOL_OPTIONS if req.extra.get(name) is not None), None)
        turn = has_tool_turns(req.messages)
        if (option or turn is not None) and _template_has_tools(path) is False:
            error = BadRequestError(
                f"本地模型 {path.name} 的对话模板不支持工具调用（tools）：请去掉 tools 和工具调用的消息，"
                f"或换用支持工具的模型，例如 xedullm models pull qwen2.5-1.5b。 / The chat template of "
                f"the local model {path.name} has no tool calls: leave out tools and tool-call messages, "
                f"or use a model that has them, e.g. xedullm models pull qwen2.5-1.5b.",
                provider=PROVIDER, code="unsupported_parameter")
            error.param = option or f"messages[{turn}]"   # the field the server's 400 names
            raise error
        _advise_chinese_model(path, req.messages)
        params: Dict[str, Any] = {name: req.extra[name] for name in OPTIONS if OPTIONS[name] and name in req.extra}
        params.update(
            max_tokens=req.max_tokens or MAX_TOKENS,
            temperature=TEMPERATURE if req.temperature is None else req.temperature,
            top_p=TOP_P if req.top_p is None else req.top_p,
            stop=list(req.stop or []),
            repeat_penalty=req.extra.get("repeat_penalty", REPEAT_PENALTY),
        )
        message["params"] = params
        return message

    # -- sync --------------------------------------------------------------------------
    def stream(self, req: ChatRequest) -> Iterator[ChatChunk]:
        pieces: "queue.Queue[object]" = queue.Queue()
        call = _Call(self, self._chat_message(req), pieces.put)
        item: object = None
        try:
            while True:
                item = pieces.get()
                if item is DONE:
                    return
                if isinstance(item, LLMError):
                    raise item
                yield item
        finally:
            if item is not DONE:
                # The sampler stops within one token; waiting for it means that when close()
                # returns, the model is free for the next request.
                call.cancel()
                while item is not DONE:
                    item = pieces.get()
            call.finished()

    def chat(self, req: ChatRequest) -> ChatResult:
        return _collect(self.stream(req), req.model or self.model)

    def _ask(self, message: Dict[str, Any]) -> Any:
        """One answer from the worker (for embed and status requests)."""
        answers: "queue.Queue[object]" = queue.Queue()
        call = _Call(self, message, answers.put)
        result, error = None, None
        try:
            while True:
                item = answers.get()
                if item is DONE:
                    break
                if isinstance(item, LLMError):
                    error = item
                else:
                    result = item
        finally:
            call.finished()
        if error is not None:
            raise error
        return result

    # -- async -------------------------------------------------------------------------
    async def astream(self, req: ChatRequest) -> AsyncIterator[ChatChunk]:
        loop = asyncio.get_running_loop()
        pieces: "asyncio.Queue[object]" = asyncio.Queue()

        def deliver(item: object) -> None:
            # Raises RuntimeError once the loop is closed; the worker is then told to stop.
            loop.call_soon_threadsafe(pieces.put_nowait, item)

        call = _Call(self, self._chat_message(req), deliver)
        item: object = None
        try:
            while True:
                item = await pieces.get()
                if item is DONE:
                    return
                if isinstance(item, LLMError):
                    raise item
                yield item
        finally:
            if item is not DONE:
                call.cancel()
                # Wait (without blocking the loop) until the generation has really stopped.
                while item is not DONE:
                    item = await pieces.get()
            call.finished()

    async def achat(self, req: ChatRequest) -> ChatResult:
        collected = _Collected(req.model or self.model)
        async for chunk in self.astream(req):
            collected.add(chunk)
        return collected.result()

    # -- models ------------------------------------------------------------------------
    def models(self) -> List[str]:
        """The local models this computer has (catalog names as their model names), this
        engine's own model included."""
        from ..models import installed_models

        names = [m.model.label if m.model else m.name for m in installed_models()]
        if self.model not in names:
            names.append(self.model)
        return names

    async def amodels(self) -> List[str]:
        return self.models()

    # -- embeddings ----------------------------------------------------------------------
    def embed(self, texts: List[str], model: Optional[str] = None) -> EmbeddingResult:
        """Vectors for ``texts`` (mean of the model's token vectors, as llama.cpp's embedding
        mode gives them), with the prompt tokens they took as usage."""
        name = model or self.model
        answer = self._ask(self._message("embed", name, texts=list(texts)))
        tokens = answer["prompt_tokens"]
        return EmbeddingResult(vectors=answer["vectors"], usage=Usage(tokens, 0, tokens), model=name)

    async def aembed(self, texts: List[str], model: Optional[str] = None) -> EmbeddingResult:
        return await asyncio.get_running_loop().run_in_executor(None, self.embed, texts, model)

    # -- the worker's state ----------------------------------------------------------------
    def status(self, model: Optional[str] = None) -> Dict[str, Any]:
        """The worker's state: pid, runtime (xllamacpp or llama_cpp) and its version, and for
        ``model`` if loaded: tokens generated, slots busy, requests waiting, slots at most."""
        return self._ask({"op": "status", "path": str(resolve_model_path(model or self.model))})

    # -- closing -----------------------------------------------------------------------
    def close(self) -> None:
        """Stop this engine's answers still generating. The worker stays for other engines
        (one per process, like a loaded model) and ends with the process."""
        for call in list(self._calls):
            call.cancel()

    async def aclose(self) -> None:
        self.close()


class _Collected:
    """Streamed pieces joined into one answer: text, reasoning, tool calls, log-probabilities."""

    def __init__(self, model: str) -> None:
        self._model = model
        self._text: List[str] = []
        self._reasoning: List[str] = []
        self._tool_calls: List[Dict[str, Any]] = []
        self._logprobs: List[Dict[str, Any]] = []
        self._finish: Optional[str] = None
        self._usage = None

    def add(self, chunk: ChatChunk) -> None:
        self._text.append(chunk.text)
        self._reasoning.append(chunk.reasoning)
        join_tool_calls(self._tool_calls, chunk.tool_calls)
        if chunk.logprobs:
            self._logprobs.extend(chunk.logprobs.get("content") or [])
        self._finish = chunk.finish_reason or self._finish
        self._usage = chunk.usage or self._usage

    def result(self) -> ChatResult:
        return ChatResult(text="".join(self._text), model=self._model, finish_reason=self._finish,
                          usage=self._usage, reasoning="".join(self._reasoning),
                          tool_calls=self._tool_calls,
                          logprobs={"content": self._logprobs} if self._logprobs else None)


def _collect(chunks: Iterator[ChatChunk], model: str) -> ChatResult:
    collected = _Collected(model)
    for chunk in chunks:
        collected.add(chunk)
    return collected.result()


def make_engine(model: Optional[str] = None) -> LocalEngine:
    """The engine ``Client(provider='local', model=...)`` uses."""
    return LocalEngine(model)
