"""The engine's side of the local model's worker process.

Why a process: llama.cpp is native code, and a crash inside it (a segfault) kills whatever
process it runs in. In a worker of its own it takes down only the answers in flight: each
gets one clear bilingual error, a new worker is started at once, and ``xedullm serve`` or
``xedullm chat`` keeps running.

Why a plain child process with pipes (not ``multiprocessing``): it starts the same way on
Windows, macOS and Linux, never re-imports the user's script (``multiprocessing``'s spawn
runs the main module again in the child, which breaks a student's script that has no
``if __name__ == "__main__":`` guard), and needs no signals: the worker learns that its
parent is gone when its stdin reaches end-of-file, and the parent learns that the worker
died when its stdout does.

One worker serves the whole process (every Client and engine), as the in-process model
cache did; it loads each model once, on first use, and keeps it until the process exits.
"""
from __future__ import annotations

import atexit
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from .. import errors
from ..errors import ConfigurationError, LLMError, ServerError
from ..types import ChatChunk, Usage
from . import local_wire

PROVIDER = "local"
#: What a sink receives last for every request.
DONE = object()
# Runs the worker from the same xedullm the parent imported, wherever that came from: the
# package's folder takes the place of the current directory at the head of sys.path.
_BOOTSTRAP = "import sys; sys.path[0] = sys.argv[1]; from xedullm.engines.local_worker import main; main()"
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_STDERR_TAIL = 600


class LocalWorkerCrashed(ServerError):
    """The worker process died while answering (a crash inside llama.cpp)."""

    #: the classroom server shows students this message as it is: it says what to do
    student_facing = True
    advice = ("本地模型进程意外退出，已重新启动，请再试一次。",
              "The local model's process stopped unexpectedly and has been restarted: please ask again.")


class LocalWorkerUnavailable(ServerError):
    """The worker process could not even start."""

    advice = ("本地模型进程无法启动：请重新安装本地模型引擎（pip install --force-reinstall "
              "\"xedullm[local]\"），然后再试。",
              "The local model's process could not start: reinstall the local engine "
              "(pip install --force-reinstall \"xedullm[local]\"), then try again.")


class LocalCPUUnsupported(ConfigurationError):
    """This CPU lacks the instructions (AVX2) the engine's ready-made library needs."""

    advice = ("这台电脑的 CPU 不支持本地模型引擎所需的 AVX2 指令（多见于 2013 年以前或低端的 CPU）。"
              "可以：1) 改用在线模型（xedullm providers 查看如何获取密钥）；2) 连接老师的课堂服务器；"
              "3) 在这台电脑上安装 C++ 编译工具后运行 pip install llama-cpp-python，"
              "再设置环境变量 XEDULLM_LOCAL_RUNTIME=llama_cpp。",
              "This computer's CPU lacks the AVX2 instructions the local engine needs (common on "
              "CPUs from before 2013 and on low-end models). Either 1) use an online model "
              "(xedullm providers shows how to get a key); 2) connect to the teacher's classroom "
              "server; or 3) install a C++ compiler, run pip install llama-cpp-python, and set "
              "XEDULLM_LOCAL_RUNTIME=llama_cpp.")


Sink = Callable[[object], None]


class WorkerProcess:
    """One running worker: sends requests, routes each answer to the sink that asked for it."""

    def __init__(self, on_exit: Callable[["WorkerProcess"], None]) -> None:
        self._on_exit = on_exit
        self._stderr = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-c", _BOOTSTRAP, _PACKAGE_ROOT],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            # No console window of its own on Windows (a teacher's pythonw app, the server).
            creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),
        )
        self.pid = self.process.pid
        self.hello: Optional[Dict[str, Any]] = None
        self.stopping = False
        self._sinks: Dict[int, Sink] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()        # guards _sinks and alive
        self._write_lock = threading.Lock()
        self.alive = True
        threading.Thread(target=self._read, name=f"xedullm-local-reader-{self.pid}", daemon=True).start()

    # -- sending -------------------------------------------------------------------------
    def submit(self, message: Dict[str, Any], sink: Sink) -> int:
        """Send ``message`` as a new request; its answers go to ``sink``, DONE last."""
        with self._lock:
            request_id = next(self._ids)
            registered = self.alive
            if registered:
                self._sinks[request_id] = sink
        if not registered:
            # Died just before: answer as the reader answered the others.
            sink(self._exit_error())
            sink(DONE)
            return request_id
        self._send(dict(message, id=request_id))
        return request_id

    def cancel(self, request_id: int) -> None:
        self._send({"op": "cancel", "id": request_id})

    def _send(self, message: Dict[str, Any]) -> None:
        try:
            with self._write_lock:
                local_wire.send(self.process.stdin, message)
        except (OSError, ValueError):
            pass  # the worker is gone: the reader fails the request when its stdout ends

    def stop(self) -> None:
        """Close the worker's stdin (it exits at once) and wait for it."""
        self.stopping = True
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    # -- receiving -----------------------------------------------------------------------
    def _read(self) -> None:
        stdout = self.process.stdout
        while True:
            message = local_wire.receive(stdout)
            if message is None:
                break
            if "hello" in message:
                self.hello = message["hello"]
                continue
            self._route(message)
        self.process.wait()
        with self._lock:
            self.alive = False
            sinks, self._sinks = self._sinks, {}
        error = self._exit_error()
        for sink in sinks.values():
            _deliver(sink, error)
            _deliver(sink, DONE)
        self._on_exit(self)

    def _route(self, message: Dict[str, Any]) -> None:
        request_id = message.get("id")
        with self._lock:
            sink = self._sinks.get(request_id)
            if message.get("done"):
                self._sinks.pop(request_id, None)
        if sink is None:
            return
        if not _deliver(sink, _item(message)):
            self.cancel(request_id)  # nobody listens any more: stop generating for nobody

    def _exit_error(self) -> LLMError:
        hello = self.hello or {}
        if hello.get("cpu") or _illegal_instruction(self.process.returncode):
            return LocalCPUUnsupported(provider=PROVIDER,
                                       detail=_describe_exit(self.process.returncode))
        if hello.get("error"):
            return runtime_broken(hello["error"], hello.get("runtime"))
        detail = f"{_describe_exit(self.process.returncode)}{self._stderr_tail()}"
        if self.hello is None:
            return LocalWorkerUnavailable(provider=PROVIDER, detail=detail)
        return LocalWorkerCrashed(provider=PROVIDER, detail=detail)

    def _stderr_tail(self) -> str:
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - _STDERR_TAIL))
            tail = self._stderr.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""
        return f"; stderr: {tail}" if tail else ""


def _deliver(sink: Sink, item: object) -> bool:
    """Hand ``item`` to ``sink``; False if the sink can no longer take it (its loop closed)."""
    try:
        sink(item)
    except RuntimeError:
        return False
    return True


def _item(message: Dict[str, Any]) -> object:
    """A worker message as what the engine yields or raises."""
    if message.get("done"):
        return DONE
    piece = {key: message[key] for key in _PIECES if key in message}
    if piece:
        return ChatChunk(**piece)
    if "finish" in message:
        prompt, completion = message["usage"]
        return ChatChunk(finish_reason=message["finish"], usage=Usage(prompt, completion, prompt + completion))
    if "error" in message:
        return _error(message["error"])
    return message.get("result")


def _error(fields: Dict[str, Any]) -> LLMError:
    cls = getattr(errors, str(fields.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, LLMError)):
        cls = ServerError
    return cls(fields.get("message"), provider=PROVIDER, code=fields.get("code"))


#: the answer pieces a worker message may carry, by their ChatChunk field names
_PIECES = ("text", "reasoning", "tool_calls", "logprobs")
#: SIGILL on POSIX; STATUS_ILLEGAL_INSTRUCTION on Windows
_ILLEGAL_INSTRUCTION = (-getattr(signal, "SIGILL", 4), 0xC000001D)


def _illegal_instruction(code: Optional[int]) -> bool:
    return code in _ILLEGAL_INSTRUCTION


def _describe_exit(code: Optional[int]) -> str:
    if code is not None and code < 0:
        try:
            return f"退出信号 / killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"退出信号 / killed by signal {-code}"
    if code is not None and code > 0xFFFF:  # a Windows exception code, e.g. 0xC0000005
        return f"退出码 / exit code 0x{code:08X}"
    return f"退出码 / exit code {code}"


def runtime_broken(reason: str, runtime: Optional[str]) -> ConfigurationError:
    package = runtime or "xllamacpp"
    if package == "llama_cpp":
        package = "llama-cpp-python"
    return ConfigurationError(
        f"本地模型引擎 {package} 已安装，但无法加载（{reason}）。请重新安装：pip install "
        f"--force-reinstall --no-cache-dir {package} / The local engine {package} is installed "
        f"but cannot be loaded ({reason}). Reinstall it: pip install --force-reinstall "
        f"--no-cache-dir {package}",
        provider=PROVIDER,
    )


class Supervisor:
    """Keeps one worker for the process: started on first use, started again after a crash."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._worker: Optional[WorkerProcess] = None
        self._exit_hook = False

    def worker(self) -> WorkerProcess:
        with self._lock:
            if self._worker is None or not self._worker.alive:
                try:
                    self._worker = WorkerProcess(self._worker_exited)
                except OSError as exc:  # no Python to start, no pipes left, ...
                    raise LocalWorkerUnavailable(provider=PROVIDER, detail=str(exc)) from exc
                if not self._exit_hook:
                    atexit.register(self.stop)
                    self._exit_hook = True
            return self._worker

    @property
    def pid(self) -> Optional[int]:
        """The pid of the running worker, if any (what a test or a teacher's tool may watch)."""
        worker = self._worker
        return worker.pid if worker is not None and worker.alive else None

    def _worker_exited(self, dead: WorkerProcess) -> None:
        with self._lock:
            if self._worker is not dead:
                return
            # A worker that was running fine crashed: start the next one now, so the error's
            # "restarted" is true and the next question does not wait for Python to start.
            # One that never got going is not retried in a loop; the next request tries again.
            restart = (not dead.stopping and dead.hello is not None and not dead.hello.get("error")
                       and not _illegal_instruction(dead.process.returncode))
            self._worker = WorkerProcess(self._worker_exited) if restart else None

    def stop(self) -> None:
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()

    def forget(self) -> None:
        """In a forked child: the parent's worker and its pipes belong to the parent."""
        self._lock = threading.Lock()
        self._worker = None


SUPERVISOR = Supervisor()
if hasattr(os, "register_at_fork"):  # POSIX; a forked server worker starts a worker of its own
    os.register_at_fork(after_in_child=SUPERVISOR.forget)
