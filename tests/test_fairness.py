"""One student, careless or hostile, cannot freeze, starve or bill the class (issue 14).

Each test reproduces one attack a curious student can make from the classroom LAN, against
our server for real on 127.0.0.1 in front of a fake provider.
"""
from __future__ import annotations

import contextlib
import json
from typing import Any

import httpx
import pytest

from xedullm import Client
from xedullm.server.app import ServerSettings, create_app
from xedullm.server.store.sqlite import SQLiteStore
from xedullm.testing import ServerThread

from conftest import TEACHER_KEY

CODE = "fair-class-7"


class Room:
    def __init__(self, url: str, app: Any, fake: Any) -> None:
        self.url, self.app, self.fake = url, app, fake

    @property
    def store(self):
        return self.app.state.xedullm.classroom.store

    def holds(self) -> int:
        with self.store._lock:
            return self.store._db.execute("SELECT COUNT(*) FROM holds").fetchone()[0]

    def rows(self):
        return list(self.store.rows())


@contextlib.contextmanager
def serving(fake, data_dir=None, **settings):
    client = Client(provider="deepseek", base_url=fake.base_url, api_key=TEACHER_KEY, timeout=10,
                    max_retries=0, verbose=False)
    app = create_app(client, settings=ServerSettings(data_dir=data_dir, **settings))
    try:
        with ServerThread(app) as server:
            yield Room(server.url, app, fake)
    finally:
        app.state.xedullm.classroom.close()
        client.close()


def post(room, raw: Any, key=None, headers=None) -> httpx.Response:
    headers = dict(headers or {})
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = raw if isinstance(raw, (bytes, str)) else json.dumps(raw)
    headers.setdefault("content-type", "application/json")
    return httpx.post(f"{room.url}/v1/chat/completions", content=data, headers=headers, timeout=20)


def hello(content="你好", **body):
    return {"messages": [{"role": "user", "content": content}], **body}


# -- recording never leaves a hold behind -----------------------------------------------------
class ConversationWriteFails(SQLiteStore):
    """A real SQLite store whose write of a row with conversation text fails, as a full disk
    or an encoding error would."""

    def __init__(self, data_dir, error: BaseException) -> None:
        super().__init__(data_dir)
        self.error = error

    def record(self, row, claim_id=None):
        if row.conversation is not None:
            raise self.error
        super().record(row, claim_id)


@pytest.mark.parametrize("error", [RuntimeError("disk I/O error"),
                                   UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")],
                         ids=["runtime", "unicode"])
def test_a_failing_ledger_write_still_releases_the_hold_and_writes_a_row(teacher_fake, tmp_path, error):
    store = ConversationWriteFails(tmp_path, error)
    with serving(teacher_fake, store=store, review=True, daily_budget=20000) as room:
        assert post(room, hello("第一个问题")).status_code == 200
        assert room.holds() == 0
        [row] = room.rows()
        assert row["outcome"] == "ok" and row["charged"] > 0 and row["conversation"] is None
        # Nothing of the budget stays frozen: a classmate is answered.
        assert post(room, hello("同学的问题")).status_code == 200


# -- text and numbers checked at the edge -------------------------------------------------------
def test_a_lone_surrogate_is_a_400_naming_the_field_and_holds_nothing(teacher_fake, tmp_path):
    with serving(teacher_fake, tmp_path, review=True, daily_budget=20000) as room:
        cases = {
            "messages[0].content": b'{"messages": [{"role": "user", "content": "hi \\ud800"}]}',
            "stop": b'{"messages": [{"role": "user", "content": "hi"}], "stop": "\\udfff"}',
            "model": b'{"messages": [{"role": "user", "content": "hi"}], "model": "m\\ud83d"}',
        }
        for param, raw in cases.items():
            reply = post(room, raw)
            assert reply.status_code == 400, reply.text
            error = reply.json()["error"]
            assert error["param"] == param and " / " in error["message"]
        assert room.holds() == 0 and teacher_fake.chat_requests == []
        # A correct pair (an emoji) is fine, and classmates are not refused.
        assert post(room, b'{"messages": [{"role": "user", "content": "\\ud83d\\ude00"}]}').status_code == 200


@pytest.mark.parametrize("field,raw", [
    ("max_tokens", "1000000000000000000000000000000"),
    ("max_tokens", str(2 ** 31)),
    ("max_completion_tokens", str(10 ** 20)),
    ("temperature", "NaN"),
    ("temperature", "Infinity"),
    ("top_p", "-Infinity"),
    ("temperature", "1e400"),
])
def test_absurd_numbers_are_a_400_naming_the_field(teacher_fake, tmp_path, field, raw):
    with serving(teacher_fake, tmp_path, daily_budget=20000) as room:
        reply = post(room, '{"messages": [{"role": "user", "content": "hi"}], "%s": %s}' % (field, raw))
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["param"] == field
        assert room.holds() == 0 and teacher_fake.chat_requests == []


# -- redaction catches the key in every form a provider may echo --------------------------------
def _redaction_cases():
    import base64
    from urllib.parse import quote

    key = "sk-fair-3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
    basic = base64.b64encode(f"user:{key}".encode()).decode()
    return key, {
        "upper case": f"Invalid key {key.upper()} provided",
        "mixed case": f"key={key[:12].upper()}{key[12:]}",
        "url-encoded": f"GET /v1?key={quote(key, safe='')}&x=1",
        "base64": f"token {base64.b64encode(key.encode()).decode()}",
        "base64 inside Basic auth": f"Authorization: Basic {basic}",
        "base64url": f"t={base64.urlsafe_b64encode(b'xy' + key.encode()).decode()}",
        "partly masked": f"Incorrect API key provided: {key[:20]}****************{key[-4:]}",
        "tail fragment": f"key ending ...{key[-14:]} is wrong",
    }


@pytest.mark.parametrize("form", list(_redaction_cases()[1]))
def test_redact_catches_each_form_of_the_key(form):
    from xedullm.keys import redact

    key, cases = _redaction_cases()
    out = redact(cases[form], [key])
    assert not any(key[i:i + 10].lower() in out.lower() for i in range(len(key) - 9)), out
    import base64
    for pad in range(3):
        encoded = base64.b64encode(b"u" * pad + key.encode()).decode()[4:-4]
        assert encoded not in out and encoded.replace("+", "-").replace("/", "_") not in out, out
    assert "sk-fa…6b5c" in out


def test_redact_leaves_text_without_the_key_alone():
    from xedullm.keys import redact

    key, _ = _redaction_cases()
    text = "模型 deepseek-chat 出错了 / Upstream error 429: slow down, sk-other-0123"
    assert redact(text, [key, None, "abc"]) == text
    # Text whose lower-case form is longer (İ) keeps its positions right.
    assert redact(f"İİ {key} İ", [key]) == "İİ sk-fa…6b5c İ"


# -- the classroom data is the teacher's alone --------------------------------------------------
def _mode(path) -> int:
    import stat
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(__import__("os").name != "posix", reason="file modes exist only on POSIX")
def test_the_data_directory_and_database_files_are_private_on_creation_and_on_open(tmp_path):
    import os
    from pathlib import Path

    old = os.umask(0o022)   # the usual umask: new files world-readable unless we say otherwise
    try:
        data = tmp_path / "fresh" / "server"
        store = SQLiteStore(data)
        store.set_setting("k", "v")
        files = [data / "classroom.sqlite3", Path(f"{data}/classroom.sqlite3-wal"), Path(f"{data}/classroom.sqlite3-shm")]
        assert _mode(data) == 0o700 and [_mode(f) for f in files] == [0o600] * 3
        store.close()
        # A folder left world-readable by an older version is fixed when opened.
        os.chmod(data, 0o755)
        for f in files:
            if f.exists():
                os.chmod(f, 0o644)
        store = SQLiteStore(data)
        store.set_setting("k", "w")
        assert _mode(data) == 0o700
        assert [_mode(f) for f in files if f.exists()] == [0o600] * len([f for f in files if f.exists()])
        store.close()
    finally:
        os.umask(old)
