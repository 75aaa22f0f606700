"""The one settings table: what `serve` accepts, what the admin page may change, what is kept in
the store (surviving a restart, shared by servers on one store), and where the store is."""
from __future__ import annotations

import contextlib
import subprocess
import sys

import httpx
import pytest

from xedullm import ConfigurationError
from xedullm.server.settings import ADMIN_EDITABLE, SETTINGS
from xedullm.server.store import open_store

from test_admin_page import PASSWORD, change, teacher
from test_classroom_controls import serving, wait_until


def _info(url):
    return httpx.get(f"{url}/api/info").json()


def test_every_setting_with_a_flag_is_a_serve_flag_and_a_run_keyword():
    help_text = subprocess.run([sys.executable, "-m", "xedullm", "serve", "--help"], capture_output=True,
                               text=True, encoding="utf-8", env={"COLUMNS": "200", "PATH": ""}).stdout
    for setting in SETTINGS:
        if setting.flag:
            assert setting.option in help_text, setting.name
    from xedullm import Client

    with pytest.raises(ConfigurationError) as caught:
        Client(provider="local", verbose=False).run(host="127.0.0.1", port=0, max_concurent=5)
    assert "max_concurent" in str(caught.value) and "max_concurrent" in str(caught.value)


def test_a_bad_flag_value_is_refused_with_the_settings_own_words():
    done = subprocess.run([sys.executable, "-m", "xedullm", "serve", "--daily-budget", "0"],
                          capture_output=True, text=True, encoding="utf-8")
    assert done.returncode == 2 and "daily_budget" in done.stderr and "至少 1" in done.stderr


def test_admin_changes_survive_a_restart_and_unknown_keys_are_named(teacher_fake, tmp_path):
    with serving(teacher_fake, tmp_path, admin_password=PASSWORD) as r:
        http = teacher(r.url)
        refused = change(http, "/admin/api/settings", {"holiday": True, "review": True})
        assert refused.status_code == 400 and "holiday" in refused.json()["error"]["message"]
        assert _info(r.url)["system_prompt"] is None
        bad = change(http, "/admin/api/settings", {"daily_budget": "lots"})
        assert bad.status_code == 400 and "daily_budget" in bad.json()["error"]["message"]
        ok = change(http, "/admin/api/settings", {"system_prompt": "你是一位物理老师", "model": "deepseek-reasoner",
                                                  "daily_budget": 5000})
        assert ok.status_code == 200
    with serving(teacher_fake, tmp_path, admin_password=PASSWORD) as again:
        info = _info(again.url)
        assert info["system_prompt"] == "你是一位物理老师" and info["model"] == "deepseek-reasoner"
        settings = teacher(again.url).get("/admin/api/overview").json()["settings"]
        assert settings["daily_budget"] == 5000
        again.fake.reset()
        httpx.post(f"{again.url}/v1/chat/completions", timeout=20,
                   json={"messages": [{"role": "user", "content": "hi"}]}).raise_for_status()
        sent = again.fake.chat_requests[-1]["json"]
        assert sent["model"] == "deepseek-reasoner"
        assert sent["messages"][0] == {"role": "system", "content": "你是一位物理老师"}


def test_two_servers_on_one_store_see_each_others_changes(teacher_fake, tmp_path):
    with contextlib.ExitStack() as stack:
        one = stack.enter_context(serving(teacher_fake, tmp_path, admin_password=PASSWORD))
        two = stack.enter_context(serving(teacher_fake, tmp_path, admin_password=PASSWORD))
        assert change(teacher(one.url), "/admin/api/settings", {"system_prompt": "只用中文回答"}).status_code == 200
        wait_until(lambda: _info(two.url)["system_prompt"] == "只用中文回答")


def test_the_admin_page_can_change_exactly_the_admin_settings():
    assert set(ADMIN_EDITABLE) == {s.name for s in SETTINGS if s.admin}
    assert {"model", "system_prompt", "daily_budget", "review"} <= set(ADMIN_EDITABLE)
    assert not {"admin_password", "store", "data_dir"} & set(ADMIN_EDITABLE)


def test_the_store_is_chosen_by_url(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'class'}")  # an absolute path: four slashes
    try:
        assert store.location.startswith(str(tmp_path / "class"))
    finally:
        store.close()
    with pytest.raises(ConfigurationError) as caught:
        open_store("redis://127.0.0.1:6379/0")
    message = str(caught.value)
    assert "redis" in message and "sqlite://" in message and "不认识" in message


def test_a_restart_without_flags_keeps_what_the_teacher_turned_on(teacher_fake, tmp_path):
    with serving(teacher_fake, tmp_path, admin_password=PASSWORD) as r:
        assert change(teacher(r.url), "/admin/api/settings", {"review": True}).status_code == 200
    with serving(teacher_fake, tmp_path, admin_password=PASSWORD) as again:
        assert teacher(again.url).get("/admin/api/overview").json()["settings"]["review"] is True
    with serving(teacher_fake, tmp_path, admin_password=PASSWORD, review=False) as told:
        assert teacher(told.url).get("/admin/api/overview").json()["settings"]["review"] is False
