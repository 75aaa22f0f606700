"""Starting the classroom server: pick a port, say where students connect, serve until Ctrl-C."""
from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sys
import threading
from typing import TYPE_CHECKING, Any, List, Optional

from ..errors import ConfigurationError
from .class_address import local_urls, terminal_qr

if TYPE_CHECKING:
    from ..client import Client

_PORT_TRIES = 100


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``port``, or on the next free port after it.

    Binding here, and handing uvicorn the socket, leaves no gap in which another program
    could take the port between checking and serving.
    """
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ConfigurationError(f"端口应是 0 到 65535 的整数，收到 {port!r}。/ "
                                 f"port must be an integer from 0 to 65535, got {port!r}.")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last: Optional[OSError] = None
    for candidate in range(port, min(port + _PORT_TRIES, 65536)) if port else [0]:
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose
        # listening socket says so; without it every reused connection waits ~40 ms (Nagle).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, candidate))
            sock.listen(2048)
            sock.set_inheritable(True)
            return sock
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE:
                raise ConfigurationError(
                    f"无法在 {host}:{candidate} 上启动服务：{exc.strerror}。请检查 host 是否是本机的地址。/ "
                    f"Cannot serve on {host}:{candidate}: {exc.strerror}. Check that host is an address of "
                    f"this computer.") from None
            last = exc
    raise ConfigurationError(
        f"端口 {port} 起的 {_PORT_TRIES} 个端口都被占用，请换一个 port。/ "
        f"Ports {port}–{port + _PORT_TRIES - 1} are all busy; choose another port.") from last


def banner(urls: List[str]) -> str:
    lines = [f"Running on local URL:  {url}" for url in urls]
    first = urls[0]
    lines += [
        f"学生在浏览器打开上面的地址；程序里用 Client(xedu_url='{first}')。按 Ctrl+C 停止。",
        f"Students open the address above in a browser; programs use Client(xedu_url='{first}'). "
        f"Press Ctrl+C to stop.",
    ]
    return "\n".join(lines)


def admin_banner(url: str, classroom: Any, code_given: bool = False) -> str:
    """Where the teacher's admin page is, its password if we made one, the access code in force
    and where it came from (``code_given``: this start; else kept from the last lesson), and
    where data lives."""
    lines = [f"老师管理页 / Teacher's admin page: {url}/admin"]
    if classroom.password_generated:
        lines.append(f"本次管理密码 / Admin password for this run: {classroom.admin_password}")
    code = classroom.access_code
    if code:
        where_zh, where_en = (("本次启动时设置", "set by this start") if code_given else
                              ("沿用上节课保存的访问码", "kept from the last lesson"))
        lines.append(f"访问码 / Access code: {code}（{where_zh} / {where_en}）")
        lines.append("学生需要输入它（或自己的学生令牌）；可在管理页更改或关闭。/ "
                     "Students enter it (or their student token); change or remove it on the admin page.")
    if classroom.require_name:
        lines.append("学生需先填写名字或座号。/ Students give a name or seat number first.")
    if classroom.paused:
        lines.append("课堂已暂停：在管理页点“继续”后学生才能提问。/ "
                     "The class is paused: students can ask once you press Resume on the admin page.")
    lines.append(f"用量记录保存在 / Usage ledger kept in: {classroom.store_location}")
    return "\n".join(lines)


def key_banner(client: "Client", local_url: str) -> str:
    """Where to paste the key, when the server starts without one (else '')."""
    info, provider = client.key_info, client.provider
    if provider is None or not provider.needs_key or info["api_key"]:
        return ""
    return "\n".join([
        f"还没有{provider.label_zh}的密钥：学生会看到“老师还在设置”。请在这台电脑上打开 {local_url}/admin，"
        f"把密钥粘贴到“密钥”框里（或运行 xedullm key set {provider.id}），保存后下一个问题就能回答。",
        f"No {provider.label_en} key yet: students are told the teacher is still setting up. On this computer "
        f"open {local_url}/admin and paste the key in the key box (or run `xedullm key set {provider.id}`); "
        f"the next question after saving is answered.",
        f"获取密钥 / Get a key: {provider.key_url}",
    ])


def connection_protocol(settings: Any) -> type:
    """uvicorn's HTTP protocol with the connection limits of these ServerSettings."""
    from .api.connection_guard import guarded_protocol

    proxies = settings.forwarded_allow_ips
    return guarded_protocol(read_timeout=settings.read_timeout, send_timeout=settings.send_timeout,
                            max_per_address=settings.max_connections_per_address,
                            exempt=frozenset(a.strip() for a in (proxies or "").split(",") if a.strip()))


def make_server(client: "Client", sock: socket.socket, **options: Any):
    """A uvicorn server for ``client`` on ``sock``; options go to ServerSettings."""
    import uvicorn

    from .app import create_app
    from .settings import server_settings
    from .store.contract import default_data_dir

    settings = server_settings(**options)
    if settings.store is None and settings.data_dir is None:
        # A real classroom always keeps its ledger, so limits hold across restarts.
        settings.data_dir = default_data_dir()
    app = create_app(client, settings=settings)
    proxies = settings.forwarded_allow_ips
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        # Open answers end themselves at shutdown (see below); this only bounds the wait.
        timeout_graceful_shutdown=5,
        timeout_keep_alive=15,
        http=connection_protocol(settings),
        # Nothing here speaks WebSocket; an upgraded connection would leave the guard's counts.
        ws="none",
        # X-Forwarded-For is believed only from the proxies the teacher names (docs/district.md);
        # uvicorn's default would believe 127.0.0.1, so a student on this computer could be anyone.
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or "",
    )
    state = app.state.xedullm

    class ClassroomServer(uvicorn.Server):
        async def shutdown(self, sockets=None):
            # Ctrl-C: answers still streaming close with a "server stopped" message at once,
            # so the lesson ends promptly and no student is cut off without a word.
            state.stop()
            await super().shutdown(sockets=sockets)

    server = ClassroomServer(config)
    server.classroom = state.classroom
    server.access_code_given = settings.access_code is not None   # else kept from the last lesson
    return server


def run_client_server(client: "Client", host: str = "0.0.0.0", port: int = 7860, **options: Any) -> None:
    """Serve ``client`` to the class until Ctrl-C (what ``Client.run`` and ``xedullm serve`` call)."""
    _show_server_log()
    open_browser = bool(options.pop("open_browser", False))
    sock = bind_socket(host, port)
    server = None
    try:
        server = make_server(client, sock, **options)
        urls = local_urls(host, sock.getsockname()[1])
        print(banner(urls), flush=True)
        qr = terminal_qr(urls[0], getattr(sys.stdout, "encoding", None))
        if qr:
            print(f"扫码打开 / Scan to open {urls[0]}:\n{qr}", flush=True)
        print(admin_banner(urls[0], server.classroom, server.access_code_given), flush=True)
        waiting = key_banner(client, _loopback_url(host, sock.getsockname()[1]))
        if waiting:
            print(waiting, flush=True)
        if open_browser and desktop_session():
            _open_admin_page(f"{_loopback_url(host, sock.getsockname()[1])}/admin")
        if _loop_running():
            # Jupyter already runs an event loop in this thread: serve from another thread
            # and stop it when the cell is interrupted.
            _serve_in_thread(server, sock)
        else:
            try:
                server.run(sockets=[sock])
            except KeyboardInterrupt:
                pass  # uvicorn has already shut down cleanly and re-raised the signal
    finally:
        sock.close()
        if server is not None:
            server.classroom.close()
    print("服务已停止。/ Server stopped.", flush=True)


def desktop_session(env: Optional[Any] = None) -> bool:
    """Whether a browser can open on the teacher's screen: not over SSH, not with
    ``XEDULLM_NO_BROWSER`` set (tests, CI), and on Linux/BSD only with a display."""
    import os

    env = os.environ if env is None else env
    if env.get("XEDULLM_NO_BROWSER", "").strip() not in ("", "0") or env.get("CI"):
        return False
    if env.get("SSH_CONNECTION") or env.get("SSH_TTY") or env.get("SSH_CLIENT"):
        return False
    if sys.platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))
    return True


def _loopback_url(host: str, port: int) -> str:
    # The admin page from this machine: loopback where we listen on all interfaces, so the key
    # box accepts keys (admin/key_routes.py).
    if host in ("", "0.0.0.0"):
        return f"http://127.0.0.1:{port}"
    if host == "::":
        return f"http://[::1]:{port}"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _open_admin_page(url: str) -> None:
    import webbrowser

    def open_it() -> None:
        try:
            webbrowser.open(url)
        except Exception:  # noqa: BLE001 - no browser is no reason to stop the lesson
            pass

    threading.Thread(target=open_it, daemon=True).start()


def _show_server_log() -> None:
    """Upstream errors go to the teacher's console (key-free), with the time they happened."""
    log = logging.getLogger("xedullm.server")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _serve_in_thread(server: Any, sock: socket.socket) -> None:
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.5)
    except KeyboardInterrupt:
        server.should_exit = True
        thread.join()
