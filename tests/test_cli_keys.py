"""The `xedullm` command as a user runs it: real subprocesses, a private temp key store,
fake provider servers on 127.0.0.1. Every command's stdout and stderr is searched for the
keys it handled."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
from dataclasses import dataclass

import pexpect
import pytest
from rich.cells import cell_len

from xedullm.catalog import PROVIDERS
from xedullm.cli import COMMAND_MODULES, build_parser, main
from xedullm.keys import mask_key
from xedullm.testing import FakeErnieServer, FakeOpenAIServer, Fault

GOOD = "sk-test-9a8b7c6d5e4f30211203f4e5d6c7b8a9"
BAD = "sk-test-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
NEW = "sk-test-1357924680acebdf1357924680acebdf"
ENV_KEY = "sk-test-e1e2e3e4e5e6e7e8e9eaebecedeeef00"
GLM_GOOD = "4f3e2d1c0b0a9988.Zy9Xw8Vu7Ts6Rq5P"
ERNIE_AK = "Ak7Qz2Lm9Np4Rs6Tv8Wx0Yb3"
ERNIE_SK = "Sk1Hj5Kl7Mn9Pq2Rt4Uv6Wy8Zb0Cd3Ef"

ALL_KEY_ENV = {n for p in PROVIDERS for n in (*p.key_env, *p.secret_env)} | {"OPENAI_API_KEY"}
# Table borders could split a leaked key across cells; search the text without them too.
_LAYOUT = re.compile(r"[\s\u2500-\u257f]+")


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def all(self) -> str:
        return self.out + self.err


class Cli:
    """Runs `python -m xedullm ...` with a private home and checks that no key leaks."""

    def __init__(self, tmp_path):
        self.home = tmp_path / "home"
        self.keys_file = self.home / "keys.json"
        self.env = {k: v for k, v in os.environ.items() if k not in ALL_KEY_ENV}
        self.env.update(XEDULLM_HOME=str(self.home), XEDULLM_KEYRING="0", COLUMNS="200",
                        PYTHONIOENCODING="utf-8", LANG="en_US.UTF-8")
        self.env.pop("LC_ALL", None)
        self.env.pop("LC_MESSAGES", None)
        self.secrets = {GOOD, BAD, NEW, ENV_KEY, GLM_GOOD, ERNIE_AK, ERNIE_SK}
        self.cwd = tmp_path

    def command(self, *args, env=None):
        return [sys.executable, "-m", "xedullm", *args], {**self.env, **(env or {})}

    def __call__(self, *args, stdin=None, env=None) -> Run:
        cmd, full_env = self.command(*args, env=env)
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, encoding="utf-8",
                              env=full_env, cwd=self.cwd)
        run = Run(proc.returncode, proc.stdout, proc.stderr)
        self.assert_no_key(run.all)
        return run

    def assert_no_key(self, text: str) -> None:
        flat = _LAYOUT.sub("", text)
        for key in self.secrets:
            for piece in (key, key[5:-4]):
                assert piece not in text, f"key material {mask_key(key)} leaked"
                assert piece not in flat, f"key material {mask_key(key)} leaked"

    def stored(self) -> dict:
        return json.loads(self.keys_file.read_text())["keys"]


@pytest.fixture
def cli(tmp_path):
    return Cli(tmp_path)


@pytest.fixture
def deepseek():
    with FakeOpenAIServer(flavor="deepseek", api_key=GOOD) as fake:
        yield fake


def closed_port_url() -> str:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}"


# -- framework --------------------------------------------------------------------------

def test_command_modules_plug_in_by_name():
    assert COMMAND_MODULES[:3] == ("providers", "keys", "models")
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {"providers", "key", "keys", "models"} <= set(sub.choices)


def test_no_command_and_bad_usage_exit_2(cli):
    assert cli().code == 2
    bad = cli("key", "set")
    assert bad.code == 2 and "provider" in bad.err
    assert cli("providers", "--lang", "fr").code == 2


def test_help_exits_0_in_process(capsys):
    assert main(["--help"]) == 0
    assert "providers" in capsys.readouterr().out


def test_unknown_provider_is_a_friendly_error_not_a_traceback(cli):
    run = cli("key", "check", "nosuch")
    assert run.code == 1
    assert "Traceback" not in run.all
    assert "nosuch" in run.err and "deepseek" in run.err


def test_language_follows_locale_and_lang_overrides(cli):
    zh = cli("providers", env={"LANG": "zh_CN.UTF-8"})
    assert zh.code == 0 and "去哪里获取密钥" in zh.out
    en = cli("providers", env={"LANG": "zh_CN.UTF-8", "LC_ALL": "en_US.UTF-8"})
    assert "Where to get a key" in en.out
    assert "Where to get a key" in cli("--lang", "en", "providers", env={"LANG": "zh_CN.UTF-8"}).out
    assert "去哪里获取密钥" in cli("providers", "--lang", "zh").out


# -- providers --------------------------------------------------------------------------

def test_providers_table_lists_every_provider(cli):
    run = cli("providers")
    assert run.code == 0
    for p in PROVIDERS:
        assert p.id in run.out
    assert "xedullm key set" in run.out


# What a terminal shows: no colour codes, no carriage returns.
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")
_SPACE = re.compile(r"\s+")


def in_a_terminal(cli, *args, columns):
    """Output of `xedullm ARGS` in a real pty that many columns wide."""
    cmd, env = cli.command(*args)
    env.pop("COLUMNS")   # the program must find the width from the terminal itself
    child = pexpect.spawn(cmd[0], cmd[1:], env=env, encoding="utf-8", dimensions=(50, columns),
                          timeout=60, cwd=str(cli.cwd))
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    text = _ESCAPES.sub("", child.before)
    cli.assert_no_key(text)
    return text


def assert_guides_whole(out: str, lang: str) -> None:
    """Every key page URL on one line, every step and quota note complete, nothing cut."""
    lines = out.splitlines()
    flat = _SPACE.sub("", out)
    assert "…" not in out and "..." not in out
    for p in PROVIDERS:
        if p.key_url:
            assert any(p.key_url in line for line in lines), p.key_url
        for note in ((p.key_steps_zh, p.free_quota_zh) if lang == "zh" else (p.key_steps_en, p.free_quota_en)):
            assert _SPACE.sub("", note) in flat, note


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_providers_piped_at_80_columns_are_blocks_with_whole_urls(cli, lang):
    run = cli("providers", "--lang", lang, env={"COLUMNS": "80"})
    assert run.code == 0
    lines = run.out.splitlines()
    for p in PROVIDERS:
        if p.key_url:
            assert p.key_url in [line.strip() for line in lines]     # alone on its line
        # Piped output is not wrapped: each note is on one line, ready for grep.
        assert (p.key_steps_zh if lang == "zh" else p.key_steps_en) in run.out
    assert_guides_whole(run.out, lang)
    assert "┃" not in run.out and "│" not in run.out

    detail = cli("providers", "ernie", "--lang", lang, env={"COLUMNS": "80"})
    ernie = next(p for p in PROVIDERS if p.id == "ernie")
    assert ernie.key_url in [line.strip() for line in detail.out.splitlines()]
    assert ernie.base_url in [line.strip() for line in detail.out.splitlines()]


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_providers_in_an_80_column_terminal_wrap_words_never_urls(cli, lang):
    out = in_a_terminal(cli, "providers", "--lang", lang, columns=80)
    assert_guides_whole(out, lang)
    urls = {p.key_url for p in PROVIDERS if p.key_url}
    assert urls <= {line.strip() for line in out.splitlines()}
    # Everything but a URL longer than the terminal fits, so the terminal never breaks a word.
    too_wide = [line for line in out.splitlines() if cell_len(line) >= 80 and line.strip() not in urls]
    assert too_wide == []
    assert "┃" not in out


def test_providers_in_a_wide_terminal_are_a_table_with_whole_cells(cli):
    out = in_a_terminal(cli, "providers", "--lang", "en", columns=220)
    assert "┃" in out and "Where to get a key" in out
    lines = out.splitlines()
    for p in PROVIDERS:
        if p.key_url:
            assert any(p.key_url in line for line in lines)
        # A table wraps a note across lines of its cell: each of its words is still whole.
        for word in (p.key_steps_en + " " + p.free_quota_en).split():
            assert word in out, word
    assert "…" not in out


def test_provider_detail_shows_where_the_key_comes_from(cli):
    run = cli("providers", "幻方")
    assert run.code == 0
    for needed in ("deepseek", "https://api.deepseek.com", "DEEPSEEK_API_KEY", "deepseek-chat",
                   "openai", "none (run: xedullm key set deepseek)"):
        assert needed in run.out

    assert cli("key", "set", "deepseek", "--stdin", stdin=GOOD + "\n").code == 0
    run = cli("providers", "DeepSeek")
    assert mask_key(GOOD) in run.out and "saved on this computer" in run.out

    run = cli("providers", "deepseek", env={"DEEPSEEK_API_KEY": ENV_KEY})
    assert mask_key(ENV_KEY) in run.out and "environment variable DEEPSEEK_API_KEY" in run.out
    assert mask_key(GOOD) not in run.out


# -- set / list / remove / path ---------------------------------------------------------

def test_set_stores_privately_and_shows_only_the_mask(cli):
    run = cli("key", "set", "deepseek", "--stdin", stdin=f'  "Bearer {GOOD}"\r\n')
    assert run.code == 0
    assert mask_key(GOOD) in run.out and str(cli.keys_file) in run.out
    assert cli.stored() == {"deepseek": {"api_key": GOOD, "secret_key": None}}
    assert stat.S_IMODE(cli.keys_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.home.stat().st_mode) == 0o700
    assert sorted(p.name for p in cli.home.iterdir()) == ["keys.json"]


def test_set_ernie_needs_both_keys(cli):
    run = cli("key", "set", "ernie", "--stdin", stdin=ERNIE_AK + "\n")
    assert run.code == 1 and "Secret Key" in run.err
    assert not cli.keys_file.exists()

    assert cli("key", "set", "百度", "--stdin", stdin=f"{ERNIE_AK}\n{ERNIE_SK}\n").code == 0
    assert cli.stored() == {"ernie": {"api_key": ERNIE_AK, "secret_key": ERNIE_SK}}
    listed = cli("key", "list")
    assert mask_key(ERNIE_AK) in listed.out and mask_key(ERNIE_SK) in listed.out


def test_empty_input_saves_nothing(cli):
    run = cli("key", "set", "deepseek", "--stdin", stdin="\n  \n")
    assert run.code == 1 and "nothing was saved" in run.err
    assert not cli.keys_file.exists()


def test_odd_looking_key_warns_but_is_saved(cli):
    odd = "ak-2468ace013579bdf2468ace013579bdf"
    cli.secrets.add(odd)
    run = cli("key", "set", "deepseek", "--stdin", stdin=odd)
    assert run.code == 0 and "usually start with sk-" in run.err
    assert cli.stored()["deepseek"]["api_key"] == odd


def test_list_shows_sources_and_which_key_is_in_use(cli):
    assert "No keys configured yet" in cli("key", "list").out
    cli("key", "set", "deepseek", "--stdin", stdin=GOOD)
    run = cli("key", "list", env={"DEEPSEEK_API_KEY": ENV_KEY})
    assert run.code == 0
    rows = [line for line in run.out.splitlines() if "deepseek" in line]
    assert len(rows) == 2
    env_row = next(r for r in rows if "DEEPSEEK_API_KEY" in r)
    store_row = next(r for r in rows if "saved on this computer" in r)
    assert mask_key(ENV_KEY) in env_row and "yes" in env_row
    assert mask_key(GOOD) in store_row and "yes" not in store_row


def test_set_warns_when_an_env_var_overrides_the_store(cli):
    run = cli("key", "set", "deepseek", "--stdin", stdin=GOOD, env={"DEEPSEEK_API_KEY": ENV_KEY})
    assert run.code == 0 and "DEEPSEEK_API_KEY" in run.err and "precedence" in run.err


def test_remove_then_remove_again(cli):
    cli("key", "set", "deepseek", "--stdin", stdin=GOOD)
    run = cli("key", "remove", "深度求索")
    assert run.code == 0 and "platform.deepseek.com" in run.out
    assert cli.stored() == {}
    assert stat.S_IMODE(cli.keys_file.stat().st_mode) == 0o600
    assert cli("key", "remove", "deepseek").code == 1


def test_path_names_the_file_store(cli):
    run = cli("key", "path")
    assert run.code == 0 and str(cli.keys_file) in run.out and "0600" in run.out


def test_keyless_provider_is_refused_politely(cli):
    run = cli("key", "set", "local", "--stdin", stdin=GOOD)
    assert run.code == 1 and "needs no key" in run.err
    assert not cli.keys_file.exists()


# -- check ------------------------------------------------------------------------------

def test_check_good_key(cli, deepseek):
    cli("key", "set", "deepseek", "--stdin", stdin=GOOD)
    run = cli("key", "check", "deepseek", "--base-url", deepseek.base_url)
    assert run.code == 0 and "Result: valid" in run.out
    assert mask_key(GOOD) in run.out


def test_check_bad_key(cli, deepseek):
    cli("key", "set", "deepseek", "--stdin", stdin=BAD)
    run = cli("key", "check", "deepseek", "--base-url", deepseek.base_url)
    assert run.code == 1 and "Result: wrong key" in run.err
    assert "xedullm key rotate deepseek" in run.err


def test_check_uses_the_env_key_first(cli, deepseek):
    cli("key", "set", "deepseek", "--stdin", stdin=BAD)
    run = cli("key", "check", "deepseek", "--base-url", deepseek.base_url,
              env={"DEEPSEEK_API_KEY": GOOD})
    assert run.code == 0 and "environment variable DEEPSEEK_API_KEY" in run.out


def test_check_no_balance(cli):
    # GLM has no model list, so the check is a one-token answer that meets the fault.
    with FakeOpenAIServer(flavor="glm", api_key=GLM_GOOD) as fake:
        fake.faults.append(Fault.quota())
        cli("key", "set", "glm", "--stdin", stdin=GLM_GOOD)
        run = cli("key", "check", "glm", "--base-url", fake.base_url)
    assert run.code == 1 and "Result: no balance" in run.err


def test_check_glm_good_key_with_one_token(cli):
    with FakeOpenAIServer(flavor="glm", api_key=GLM_GOOD) as fake:
        cli("key", "set", "glm", "--stdin", stdin=GLM_GOOD)
        run = cli("key", "check", "glm", "--base-url", fake.base_url)
        assert run.code == 0 and "Result: valid" in run.out
        # The cheapest call that proves a key: one request, one token.
        assert [r["json"]["max_tokens"] for r in fake.chat_requests] == [1]


def test_check_server_down(cli):
    cli("key", "set", "deepseek", "--stdin", stdin=GOOD)
    run = cli("key", "check", "deepseek", "--base-url", closed_port_url())
    assert run.code == 1 and "Result: network problem" in run.err


def test_check_ernie_good_and_bad(cli):
    with FakeErnieServer(api_key=ERNIE_AK, secret_key=ERNIE_SK) as fake:
        cli("key", "set", "ernie", "--stdin", stdin=f"{ERNIE_AK}\n{ERNIE_SK}")
        good = cli("key", "check", "ernie", "--base-url", fake.base_url)
        bad = cli("key", "check", "ernie", "--base-url", fake.base_url,
                  env={"QIANFAN_AK": ERNIE_AK, "QIANFAN_SK": ERNIE_SK[::-1]})
    assert good.code == 0 and "Result: valid" in good.out
    assert bad.code == 1 and "Result: wrong key" in bad.err


def test_check_without_any_key_prints_the_key_guide(cli):
    run = cli("key", "check", "moonshot")
    assert run.code == 1 and "Traceback" not in run.all
    for needed in ("xedullm key set moonshot", "MOONSHOT_API_KEY", "platform.moonshot.cn"):
        assert needed in run.err
    assert run.err.index("没有找到") < run.err.index("No API key found")


# -- rotate -----------------------------------------------------------------------------

def test_rotate_keeps_the_old_key_when_the_new_one_fails(cli, deepseek):
    cli("key", "set", "deepseek", "--stdin", stdin=GOOD)
    run = cli("key", "rotate", "deepseek", "--stdin", "--base-url", deepseek.base_url, stdin=BAD)
    assert run.code == 1
    assert "platform.deepseek.com/api_keys" in run.out and mask_key(GOOD) in run.out
    assert "Result: wrong key" in run.err and "not changed" in run.err
    assert cli.stored()["deepseek"]["api_key"] == GOOD


def test_rotate_keeps_the_old_key_when_the_network_fails(cli):
    cli("key", "set", "deepseek", "--stdin", stdin=GOOD)
    run = cli("key", "rotate", "deepseek", "--stdin", "--base-url", closed_port_url(), stdin=NEW)
    assert run.code == 1 and "network problem" in run.err
    assert cli.stored()["deepseek"]["api_key"] == GOOD


def test_rotate_replaces_after_verifying(cli):
    with FakeOpenAIServer(flavor="deepseek", api_key=NEW) as fake:
        cli("key", "set", "deepseek", "--stdin", stdin=GOOD)
        run = cli("key", "rotate", "deepseek", "--stdin", "--base-url", fake.base_url, stdin=NEW)
    assert run.code == 0 and "Result: valid" in run.out and mask_key(NEW) in run.out
    assert cli.stored()["deepseek"]["api_key"] == NEW
    assert stat.S_IMODE(cli.keys_file.stat().st_mode) == 0o600


def test_rotate_refuses_the_same_key(cli, deepseek):
    cli("key", "set", "deepseek", "--stdin", stdin=GOOD)
    run = cli("key", "rotate", "deepseek", "--stdin", "--base-url", deepseek.base_url, stdin=GOOD)
    assert run.code == 1 and "already saved" in run.err
    assert deepseek.requests == []


# -- models -----------------------------------------------------------------------------

def test_models_lists_the_providers_models(cli, deepseek):
    cli("key", "set", "deepseek", "--stdin", stdin=GOOD)
    run = cli("models", "deepseek", "--base-url", deepseek.base_url)
    assert run.code == 0
    assert "deepseek-chat" in run.out.splitlines()


def test_models_with_a_wrong_key_is_a_clean_error(cli, deepseek):
    run = cli("models", "deepseek", "--base-url", deepseek.base_url, env={"DEEPSEEK_API_KEY": BAD})
    assert run.code == 1 and "Traceback" not in run.all and run.err.strip()


# -- Ctrl-C -----------------------------------------------------------------------------

@pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery to a child is POSIX-only")
def test_ctrl_c_at_the_prompt_exits_130(cli):
    cmd, env = cli.command("key", "set", "deepseek")
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=cli.cwd)
    # The hint line is printed (and flushed) just before the hidden prompt waits for input.
    for line in proc.stdout:
        if "Input is hidden" in line:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate()
    assert proc.returncode == 130 and "Cancelled" in err
    assert not cli.keys_file.exists()
