"""Shared fixtures. Keep each group together under its own heading."""
from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence, Tuple

import pytest


# -- isolation ---------------------------------------------------------------------------------
# Every test, and every `xedullm` subprocess it starts, gets an empty home of its own: no key
# store, usage ledger or admin state of the machine's user is read or written. Tests that need
# a particular home still set XEDULLM_HOME themselves.
os.environ["XEDULLM_HOME"] = tempfile.mkdtemp(prefix="xedullm-tests-")
os.environ["XEDULLM_KEYRING"] = "0"
# `xedullm serve` opens the admin page in the teacher's browser on a desktop: never in tests.
os.environ["XEDULLM_NO_BROWSER"] = "1"


# -- the package under test ----------------------------------------------------------------------
# scripts/test_installed.sh runs the tests that load the package's files against the wheel
# installed in a fresh virtualenv, from a copy of tests/ outside the checkout. It sets
# XEDULLM_TEST_INSTALLED=1: then a run that imported any other xedullm stops here, loudly.
import xedullm  # noqa: E402  (after the isolation above)

PACKAGE = Path(xedullm.__file__).resolve().parent
if os.environ.get("XEDULLM_TEST_INSTALLED") == "1":
    _site_packages = Path(sysconfig.get_paths()["purelib"]).resolve()
    if sys.prefix == sys.base_prefix or _site_packages not in PACKAGE.parents:
        pytest.exit(f"XEDULLM_TEST_INSTALLED=1 but xedullm was imported from {PACKAGE}, not from the "
                    f"virtualenv's {_site_packages}: this run would not test the installed wheel.")


# -- `xedullm serve` as its own process (test_server, test_classroom_controls, test_security) ---
ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def serve_process(args: Sequence[str], env: Dict[str, str], until: str,
                  program: Sequence[str] = (sys.executable, "-m", "xedullm"),
                  ) -> Iterator[Tuple[subprocess.Popen, List[str]]]:
    """``xedullm serve ARGS`` in a subprocess: yields it with the lines it printed up to the one
    starting with ``until``; kills it on the way out unless the test stopped it."""
    proc = subprocess.Popen(
        [*program, "serve", *args], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **env))
    try:
        lines: List[str] = []
        while not any(line.startswith(until) for line in lines):
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
            lines.append(line)
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def wait_until(predicate, timeout: float = 10.0, step: float = 0.01) -> float:
    """Poll until ``predicate()`` holds (servers update the store from their own threads); fail
    the test after ``timeout`` instead of hanging. Returns the seconds it took, for reports."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, "condition not reached"
        time.sleep(step)
    return time.monotonic() - started


# Browsers the way the page gets them: a name asks ``POST /api/browser-id`` once per server
# (with ``key``, the class's access code, when it has one) and keeps the id issued. Forgotten
# after each test (see the fixture below): the next test's server may have the same address.
_BROWSER_IDS: Dict[Tuple[str, str], str] = {}


def browser_id(url: str, name: str, key: str = "") -> str:
    if (url, name) not in _BROWSER_IDS:
        import httpx

        auth = {"Authorization": f"Bearer {key}"} if key else {}
        got = httpx.post(f"{url}/api/browser-id", headers=auth, timeout=20)
        assert got.status_code == 200, got.text
        _BROWSER_IDS[(url, name)] = got.json()["browser_id"]
    return _BROWSER_IDS[(url, name)]


def browser_headers(url: str, name: str, key: str = "") -> Dict[str, str]:
    """What the browser called ``name`` sends: its issued id (none where the server keeps none)."""
    issued = browser_id(url, name, key)
    return {"X-Xedullm-Session": issued} if issued else {}


def browser_who(url: str, name: str, key: str = "") -> str:
    """How the ledger names the browser called ``name``."""
    return "browser:" + browser_id(url, name, key).split(".")[0]


@pytest.fixture(autouse=True)
def _forget_browser_ids():
    yield
    _BROWSER_IDS.clear()


# -- hypothesis ----------------------------------------------------------------------------------
# CI replays the same examples every run, so a landing never hinges on a lucky draw; a developer's
# run explores new ones (and keeps what it finds in .hypothesis/).
if os.environ.get("CI"):
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("ci", derandomize=True, database=None)
    _hypothesis_settings.load_profile("ci")


# -- headless Chromium (tests/test_web_page.py, tests/test_admin_page.py) ---------------------
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_admin(context, url: str, password: str):
    """A new page of ``context`` logged in to the teacher's admin page at ``url``."""
    page = context.new_page()
    page.goto(f"{url}/admin")
    page.fill("#password", password)
    page.click("button[type=submit]")
    return page


# -- classroom server (tests/test_server*.py) ---------------------------------------------
TEACHER_KEY = "sk-teacher-7f3a9c21e5b84d06SECRETb1c3"


@dataclass(eq=False)
class Classroom:
    url: str          # http://127.0.0.1:PORT of our server
    client: Any       # the teacher's Client the server wraps
    fake: Any         # the fake provider behind it
    app: Any

    @property
    def state(self):
        return self.app.state.xedullm

    def upstream_bodies(self):
        """The JSON bodies the provider received for chat calls, oldest first."""
        return [r["json"] for r in self.fake.chat_requests]


@pytest.fixture
def teacher_fake():
    """A DeepSeek-flavoured fake provider that accepts TEACHER_KEY."""
    from xedullm.testing import FakeOpenAIServer

    with FakeOpenAIServer(flavor="deepseek", api_key=TEACHER_KEY) as fake:
        yield fake


def rows_written(app: Any) -> None:
    """Every ledger row the running server has handed over, written now. Rows travel to the
    store a batch at a time (classroom/room.py); tests that read the store directly, rather
    than through the server, wait for them here."""
    room = app.state.xedullm.classroom
    loop = room._rows_loop
    if loop is not None and not loop.is_closed():
        asyncio.run_coroutine_threadsafe(room.write_rows(), loop).result(10)


@pytest.fixture
def classroom_server(teacher_fake):
    """Factory: ``classroom_server(system=None, api_key=TEACHER_KEY, model=None, base_url=None,
    timeout=10, guarded=True, **settings)`` starts our server for real on 127.0.0.1 in front of the fake."""
    from xedullm import Client
    from xedullm.server.app import ServerSettings, create_app
    from xedullm.server.runner import connection_protocol
    from xedullm.testing.server_thread import ServerThread

    with contextlib.ExitStack() as stack:
        def start(system=None, api_key=TEACHER_KEY, model=None, base_url=None, timeout=10.0, guarded=True,
                  **settings):
            # No retries: each upstream fault reaches the server exactly once.
            client = Client(provider="deepseek", base_url=base_url or teacher_fake.base_url,
                            api_key=api_key, model=model, timeout=timeout, max_retries=0, verbose=False)
            stack.callback(client.close)
            if system:
                client.set_system(system)
            server_settings = ServerSettings(**settings)
            app = create_app(client, settings=server_settings)
            # guarded: the connection guard `xedullm serve` runs (per-address caps, deadlines, and
            # its disconnect notice); else uvicorn's plain protocol, as under any other ASGI server.
            http = connection_protocol(server_settings) if guarded else "auto"
            server = stack.enter_context(ServerThread(app, http=http))
            return Classroom(url=server.url, client=client, fake=teacher_fake, app=app)

        yield start


# -- PostgreSQL (tests/test_store_contract.py, tests/test_district.py) ---------------------------
# One throwaway cluster per test session (scripts/postgres-for-tests.sh), or the one scripts/test.sh
# started and exported. Each test gets a schema of its own. Skipped only where PostgreSQL cannot
# be had; under CI a missing PostgreSQL fails instead.
@dataclass(eq=False)
class Postgres:
    url: str          # the cluster's URL (with its password: never print it)
    dir: str          # its folder, for restart/stop

    def script(self, command: str) -> None:
        subprocess.run(["bash", str(ROOT / "scripts" / "postgres-for-tests.sh"), command, self.dir],
                       check=True, capture_output=True)

    def new_schema_url(self) -> str:
        import secrets

        import psycopg

        name = f"t_{secrets.token_hex(6)}"
        with psycopg.connect(self.url, autocommit=True) as db:
            db.execute(f"CREATE SCHEMA {name}")
        sep = "&" if "?" in self.url else "?"
        return f"{self.url}{sep}options=-csearch_path%3D{name}"


def _unavailable(why: str):
    if os.environ.get("CI"):
        pytest.fail(f"PostgreSQL is required in CI: {why}")
    pytest.skip(f"PostgreSQL not available here: {why}")


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        _unavailable("pip install -e '.[test]' (psycopg, psycopg-pool)")
    url, folder = os.environ.get("XEDULLM_TEST_POSTGRES_URL"), os.environ.get("XEDULLM_TEST_POSTGRES_DIR")
    if url and folder:
        yield Postgres(url, folder)
        return
    script = str(ROOT / "scripts" / "postgres-for-tests.sh")
    subprocess.run(["bash", script, "install"], capture_output=True)
    started = subprocess.run(["bash", script, "start"], capture_output=True, text=True)
    if started.returncode != 0:
        _unavailable(started.stderr.strip()[-300:])
    found = dict(line.split(" ", 1)[1].split("=", 1) for line in started.stdout.splitlines()
                 if line.startswith("export "))
    cluster = Postgres(found["XEDULLM_TEST_POSTGRES_URL"], found["XEDULLM_TEST_POSTGRES_DIR"])
    try:
        yield cluster
    finally:
        subprocess.run(["bash", script, "stop", cluster.dir], capture_output=True)
        subprocess.run(["rm", "-rf", cluster.dir])
