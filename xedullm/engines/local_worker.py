"""The local model's own process: llama.cpp runs here and nowhere else.

``local_process.py`` starts this module in a child Python process and talks to it through
its stdin/stdout pipes, one JSON message per line (``local_wire``). If native code crashes
(a segfault inside llama.cpp, an illegal instruction on a CPU it was not built for), only this
process dies: the engine in the parent turns that into one clear error for the answers in
flight and starts a new worker.

The runtime is one module per llama.cpp binding: ``local_runtime_xllamacpp`` (ready wheels,
the default) or ``local_runtime_llama_cpp`` (llama-cpp-python, where xllamacpp has no wheel);
``XEDULLM_LOCAL_RUNTIME`` picks one by name.

In (every message but "cancel" is answered, by its id):
    {"op": "chat",   "id", "path", "n_ctx", "n_threads", "messages", "params"}
    {"op": "embed",  "id", "path", "n_ctx", "n_threads", "texts"}
    {"op": "status", "id", "path"}
    {"op": "cancel", "id"}                      stop that generation at the next token
Out:
    {"hello": {"pid", "runtime", "version"}}    first, once the runtime is imported
    {"hello": {"error", "runtime"}}             instead, if it cannot be; then the worker exits
    {"id", "text" | "reasoning" | "tool_calls" | "logprobs"}   a piece of the answer
    {"id", "finish", "usage": [prompt, completion]}
    {"id", "result": {...}}                     the answer to "embed" or "status"
    {"id", "error": {"type", "message", "code"}}
    {"id", "done": true}                        always last: the request holds nothing any more
"""
from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import IO, Any, Dict, Optional

from ..errors import LLMError, ServerError
from . import local_cpu, local_wire

PROVIDER = "local"
#: runtime name -> module, in the order they are tried
RUNTIMES = {"xllamacpp": "local_runtime_xllamacpp", "llama_cpp": "local_runtime_llama_cpp"}
#: the package each runtime imports (found without importing it)
RUNTIME_PACKAGES = {"xllamacpp": "xllamacpp", "llama_cpp": "llama_cpp"}


def choose_runtime() -> str:
    """The runtime to use: ``XEDULLM_LOCAL_RUNTIME`` if set, else the first one installed."""
    import importlib.util

    wanted = os.environ.get("XEDULLM_LOCAL_RUNTIME", "").strip().lower().replace("-", "_")
    if wanted in RUNTIMES:
        return wanted
    for name, package in RUNTIME_PACKAGES.items():
        try:
            if importlib.util.find_spec(package) is not None:
                return name
        except (ImportError, ValueError):
            continue
    return next(iter(RUNTIMES))


class _Outbox:
    """The one writer of the pipe to the parent, shared by every request thread."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, **message: Any) -> None:
        with self._lock:
            try:
                local_wire.send(self._stream, message)
            except OSError:  # the parent is gone: nobody is left to answer
                os._exit(0)


class Worker:
    """Answers the parent's messages; each request runs on a thread of its own."""

    def __init__(self, runtime, outbox: _Outbox) -> None:
        self._runtime = runtime
        self._outbox = outbox
        self._models: Dict[Path, Any] = {}
        self._models_lock = threading.Lock()
        self._cancels: Dict[int, threading.Event] = {}

    def handle(self, message: Dict[str, Any]) -> None:
        request_id = message.get("id")
        if message.get("op") == "cancel":
            cancel = self._cancels.get(request_id)
            if cancel is not None:
                cancel.set()
                for model in list(self._models.values()):
                    model.wake()
            return
        # Registered before the thread starts, so a "cancel" right behind it is not lost.
        cancel = self._cancels[request_id] = threading.Event()
        threading.Thread(target=self._answer, args=(message, cancel), daemon=True,
                         name=f"xedullm-local-{request_id}").start()

    def _answer(self, message: Dict[str, Any], cancel: threading.Event) -> None:
        request_id = message["id"]

        def send(**fields: Any) -> None:
            self._outbox.send(id=request_id, **fields)

        try:
            op = message.get("op")
            if op == "chat":
                self._model(message).chat(message["messages"], message["params"], cancel, send)
            elif op == "embed":
                send(result=self._model(message).embed(message["texts"]))
            elif op == "status":
                send(result=self._status(message.get("path")))
            else:
                raise ServerError(provider=PROVIDER, detail=f"unknown op {op!r}")
        except LLMError as exc:
            send(error={"type": type(exc).__name__, "message": str(exc), "code": exc.code})
        except Exception as exc:  # a llama.cpp failure must reach the caller, not vanish here
            error = ServerError(provider=PROVIDER, detail=f"{type(exc).__name__}: {exc}")
            send(error={"type": "ServerError", "message": str(error), "code": None})
        finally:
            self._cancels.pop(request_id, None)
            send(done=True)

    def _model(self, message: Dict[str, Any]):
        """The model at ``path``, loaded on first use and kept for the worker's life."""
        path = Path(message["path"])
        with self._models_lock:
            loaded = self._models.get(path)
            if loaded is None:
                loaded = self._models[path] = self._runtime.load(path, message["n_ctx"],
                                                                 message.get("n_threads"))
            return loaded

    def _status(self, path: Optional[str]) -> Dict[str, Any]:
        model = self._models.get(Path(path)) if path else None
        return {
            "pid": os.getpid(),
            "runtime": self._runtime.NAME,
            "version": self._runtime.runtime_version(),
            "model": model.stats() if model else None,
        }


def main() -> None:
    # Ctrl-C in the teacher's or student's terminal reaches this process too (same console):
    # stopping an answer is the parent's job, through "cancel", never a dead worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The messages get a private copy of stdout; anything native code prints to stdout
    # lands in stderr instead of corrupting them.
    outbox = _Outbox(os.fdopen(os.dup(sys.stdout.fileno()), "wb"))
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    name = choose_runtime()
    missing = local_cpu.missing_instructions(name)
    if missing:
        # Importing the library would end this process with an illegal instruction.
        outbox.send(hello={"error": f"cpu lacks {missing}", "runtime": name, "cpu": missing})
        return
    try:
        runtime = importlib.import_module(f"{__package__}.{RUNTIMES[name]}")
        version = runtime.runtime_version()   # imports the native library
    except Exception as exc:  # ImportError, or the native library failing to load
        outbox.send(hello={"error": f"{type(exc).__name__}: {exc}", "runtime": name})
        return
    worker = Worker(runtime, outbox)
    outbox.send(hello={"pid": os.getpid(), "runtime": name, "version": version})
    requests = sys.stdin.buffer
    while True:
        message = local_wire.receive(requests)
        if message is None:
            break
        worker.handle(message)
    # The parent closed the pipe (it stopped us, or it is gone): answers in flight have no
    # reader, so end at once instead of finishing them.
    os._exit(0)


if __name__ == "__main__":
    main()
