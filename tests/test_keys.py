"""Key cleaning, masking, the key store and resolution order, in-process."""
from __future__ import annotations

import json
import os
import stat

import keyring
import keyring.errors
import pytest
from hypothesis import given
from hypothesis import strategies as st
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail, null

from xedullm import Client, ConfigurationError
from xedullm.catalog import PROVIDERS, find_provider
from xedullm.keys import (Credentials, clean_key, key_format_warning, known_secrets, mask_key,
                          missing_key_error, redact, resolve_credentials)
from xedullm.keys.store import (FileKeyStore, KeyringKeyStore, StoredKey, home_dir, keyring_backend,
                              open_store)

DEEPSEEK_KEY = "sk-test-5f1e0c2a9b8d47e6a3c1f0e9d8b7a6c5"
ERNIE_AK = "Ak7Qz2Lm9Np4Rs6Tv8Wx0Yb3"
ERNIE_SK = "Sk1Hj5Kl7Mn9Pq2Rt4Uv6Wy8Zb0Cd3Ef"

ALL_KEY_ENV = {n for p in PROVIDERS for n in (*p.key_env, *p.secret_env)} | {"OPENAI_API_KEY"}


@pytest.fixture(autouse=True)
def clean_env(tmp_path, monkeypatch):
    """No real key from the developer's environment; the file store in a private temp home."""
    for name in ALL_KEY_ENV:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("XEDULLM_HOME", str(home))
    monkeypatch.setenv("XEDULLM_KEYRING", "0")
    return home


def assert_hidden(text: str, *keys: str) -> None:
    for key in keys:
        assert key not in text
        assert key[5:-4] not in text


# -- cleaning and masking ---------------------------------------------------------------

@pytest.mark.parametrize("pasted", [
    DEEPSEEK_KEY, f"  {DEEPSEEK_KEY}\n", f'"{DEEPSEEK_KEY}"', f"'{DEEPSEEK_KEY}'",
    f"“{DEEPSEEK_KEY}”", f"Bearer {DEEPSEEK_KEY}", f"bearer  {DEEPSEEK_KEY}\r\n",
    f"{DEEPSEEK_KEY[:10]}\n{DEEPSEEK_KEY[10:]}",
])
def test_clean_key_strips_what_copy_paste_adds(pasted):
    assert clean_key(pasted) == DEEPSEEK_KEY


@pytest.mark.parametrize("empty", [None, "", "   ", '""', "\n"])
def test_clean_key_empty_is_none(empty):
    assert clean_key(empty) is None


def test_mask_key_shape():
    assert mask_key(DEEPSEEK_KEY) == "sk-te…a6c5"
    assert mask_key("short-key") == "………"
    assert mask_key(None) == ""


@given(st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=12, max_size=120))
def test_mask_never_contains_the_key(key):
    masked = mask_key(key)
    assert key not in masked
    assert len(masked) <= 10


def test_redact_replaces_plain_and_url_encoded_forms():
    key = "sk-a+b/c=d&e0123456789xyz"
    from urllib.parse import quote

    text = f"GET /x?key={quote(key, safe='')} header Bearer {key}"
    out = redact(text, [key, None, ""])
    assert key not in out and quote(key, safe="") not in out
    assert out.count(mask_key(key)) == 2


def test_credentials_and_stored_key_repr_are_masked():
    creds = Credentials(ERNIE_AK, ERNIE_SK, "store")
    stored = StoredKey(ERNIE_AK, ERNIE_SK)
    for text in (repr(creds), str(creds), repr(stored), str(stored)):
        assert_hidden(text, ERNIE_AK, ERNIE_SK)
        assert mask_key(ERNIE_AK) in text


# -- file store -------------------------------------------------------------------------

def test_file_store_round_trip_and_private_modes(clean_env):
    store = open_store()
    assert isinstance(store, FileKeyStore)
    assert store.path == clean_env / "keys.json" == home_dir() / "keys.json"
    assert store.get("deepseek") is None and store.items() == {}

    store.set("deepseek", DEEPSEEK_KEY)
    store.set("ernie", ERNIE_AK, ERNIE_SK)
    assert stat.S_IMODE(clean_env.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.get("deepseek") == StoredKey(DEEPSEEK_KEY, None)
    assert FileKeyStore().get("ernie") == StoredKey(ERNIE_AK, ERNIE_SK)
    assert set(store.items()) == {"deepseek", "ernie"}
    # Atomic replace leaves no temp file behind.
    assert sorted(p.name for p in clean_env.iterdir()) == ["keys.json"]

    assert store.remove("deepseek") is True
    assert store.remove("deepseek") is False
    assert store.get("deepseek") is None
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert json.loads(store.path.read_text())["keys"] == {
        "ernie": {"api_key": ERNIE_AK, "secret_key": ERNIE_SK}}


def test_file_store_stays_0600_under_a_permissive_umask(clean_env):
    old = os.umask(0)
    try:
        FileKeyStore().set("deepseek", DEEPSEEK_KEY)
    finally:
        os.umask(old)
    assert stat.S_IMODE((clean_env / "keys.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(clean_env.stat().st_mode) == 0o700


def test_file_store_repairs_a_world_readable_file(clean_env):
    store = FileKeyStore()
    store.set("deepseek", DEEPSEEK_KEY)
    os.chmod(store.path, 0o644)
    assert store.get("deepseek").api_key == DEEPSEEK_KEY
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_damaged_file_says_what_to_do_without_quoting_it(clean_env):
    clean_env.mkdir()
    (clean_env / "keys.json").write_text('{"keys": {"deepseek": {"api_key": "' + DEEPSEEK_KEY)
    with pytest.raises(ConfigurationError) as info:
        FileKeyStore().get("deepseek")
    message = str(info.value)
    assert "xedullm key set" in message and str(clean_env / "keys.json") in message
    assert_hidden(message, DEEPSEEK_KEY)


# -- keyring store ----------------------------------------------------------------------

class MemoryKeyring(KeyringBackend):
    """A working keyring backend held in memory, standing in for the OS keyring."""

    priority = 1

    def __init__(self):
        super().__init__()
        self.entries = {}

    def get_password(self, service, username):
        return self.entries.get((service, username))

    def set_password(self, service, username, password):
        self.entries[(service, username)] = password

    def delete_password(self, service, username):
        if self.entries.pop((service, username), None) is None:
            raise keyring.errors.PasswordDeleteError(username)


class LockedKeyring(MemoryKeyring):
    def get_password(self, service, username):
        raise keyring.errors.KeyringLocked(f"locked while reading {DEEPSEEK_KEY}")


@pytest.fixture
def os_keyring(monkeypatch):
    previous = keyring.get_keyring()
    backend = MemoryKeyring()
    keyring.set_keyring(backend)
    monkeypatch.delenv("XEDULLM_KEYRING")
    yield backend
    keyring.set_keyring(previous)


def test_keyring_is_used_when_a_backend_works(os_keyring):
    store = open_store()
    assert isinstance(store, KeyringKeyStore) and store.kind == "keyring"
    assert "MemoryKeyring" in store.location()
    store.set("ernie", ERNIE_AK, ERNIE_SK)
    store.set("deepseek", DEEPSEEK_KEY)
    assert os_keyring.entries == {("xedullm", "ernie"): ERNIE_AK,
                                  ("xedullm", "ernie.secret_key"): ERNIE_SK,
                                  ("xedullm", "deepseek"): DEEPSEEK_KEY}
    assert store.items() == {"ernie": StoredKey(ERNIE_AK, ERNIE_SK),
                             "deepseek": StoredKey(DEEPSEEK_KEY)}
    assert resolve_credentials(find_provider("ernie")) == Credentials(ERNIE_AK, ERNIE_SK, "store")
    assert store.remove("ernie") is True and store.remove("ernie") is False
    assert os_keyring.entries == {("xedullm", "deepseek"): DEEPSEEK_KEY}


def test_keyring_disabled_by_env_var(os_keyring, monkeypatch):
    monkeypatch.setenv("XEDULLM_KEYRING", "0")
    assert keyring_backend() is None
    assert isinstance(open_store(), FileKeyStore)


@pytest.mark.parametrize("backend", [fail.Keyring(), null.Keyring()])
def test_placeholder_keyrings_mean_no_backend(backend, monkeypatch):
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    monkeypatch.delenv("XEDULLM_KEYRING")
    try:
        assert keyring_backend() is None
        assert isinstance(open_store(), FileKeyStore)
    finally:
        keyring.set_keyring(previous)


def test_empty_chainer_means_no_backend(monkeypatch):
    previous = keyring.get_keyring()
    monkeypatch.setattr(chainer.ChainerBackend, "backends", [])
    keyring.set_keyring(chainer.ChainerBackend())
    monkeypatch.delenv("XEDULLM_KEYRING")
    try:
        assert keyring_backend() is None
    finally:
        keyring.set_keyring(previous)


def test_locked_keyring_gives_advice_not_the_backend_message(monkeypatch):
    previous = keyring.get_keyring()
    keyring.set_keyring(LockedKeyring())
    monkeypatch.delenv("XEDULLM_KEYRING")
    try:
        with pytest.raises(ConfigurationError) as info:
            resolve_credentials(find_provider("deepseek"))
    finally:
        keyring.set_keyring(previous)
    assert "XEDULLM_KEYRING=0" in str(info.value)
    assert_hidden(str(info.value), DEEPSEEK_KEY)


# -- resolution order -------------------------------------------------------------------

def test_precedence_argument_then_env_then_store(monkeypatch):
    deepseek = find_provider("deepseek")
    assert resolve_credentials(deepseek) == Credentials(None, None, "none")

    FileKeyStore().set("deepseek", "sk-stored-0000000000000000")
    assert resolve_credentials(deepseek) == Credentials("sk-stored-0000000000000000", None, "store")

    monkeypatch.setenv("DEEPSEEK_API_KEY", ' "sk-env-11111111111111111"\n')
    assert resolve_credentials(deepseek) == Credentials("sk-env-11111111111111111", None,
                                                        "env:DEEPSEEK_API_KEY")

    assert resolve_credentials(deepseek, "Bearer sk-arg-2222222222222222") == \
        Credentials("sk-arg-2222222222222222", None, "argument")


def test_first_env_name_wins(monkeypatch):
    glm = find_provider("glm")
    monkeypatch.setenv("GLM_API_KEY", "later.key0000000000")
    assert resolve_credentials(glm).source == "env:GLM_API_KEY"
    monkeypatch.setenv("ZHIPUAI_API_KEY", "first.key1111111111")
    assert resolve_credentials(glm) == Credentials("first.key1111111111", None, "env:ZHIPUAI_API_KEY")


def test_ernie_secret_comes_with_its_source(monkeypatch):
    ernie = find_provider("文心一言")
    FileKeyStore().set("ernie", ERNIE_AK, ERNIE_SK)
    assert resolve_credentials(ernie) == Credentials(ERNIE_AK, ERNIE_SK, "store")
    monkeypatch.setenv("QIANFAN_AK", "env-ak-000000000000")
    monkeypatch.setenv("QIANFAN_SK", "env-sk-000000000000")
    assert resolve_credentials(ernie) == Credentials("env-ak-000000000000", "env-sk-000000000000",
                                                     "env:QIANFAN_AK")
    assert resolve_credentials(ernie, "arg-ak-0000000000", "arg-sk-0000000000") == \
        Credentials("arg-ak-0000000000", "arg-sk-0000000000", "argument")


def test_keyless_provider_never_reads_the_store(clean_env):
    clean_env.mkdir()
    (clean_env / "keys.json").write_text("damaged")
    assert resolve_credentials(find_provider("local")) == Credentials(None, None, "none")


def test_client_uses_the_store_and_never_shows_the_key():
    FileKeyStore().set("deepseek", DEEPSEEK_KEY)
    client = Client(provider="深度求索", verbose=False)
    assert client._credentials.source == "store"
    assert mask_key(DEEPSEEK_KEY) in repr(client)
    assert_hidden(repr(client), DEEPSEEK_KEY)


@pytest.mark.parametrize("pid", ["openrouter", "moonshot", "deepseek", "glm", "ernie", "qwen"])
def test_missing_key_error_is_the_bilingual_key_guide(pid):
    p = find_provider(pid)
    err = missing_key_error(p)
    assert isinstance(err, ConfigurationError) and err.provider == pid
    message = str(err)
    for needed in (p.key_url, p.key_env[0], f"xedullm key set {pid}", p.free_quota_zh, p.free_quota_en):
        assert needed in message
    if p.needs_secret:
        assert p.secret_env[0] in message and "secret_key=" in message
    assert message.index(p.key_steps_zh) < message.index(p.key_steps_en)


def test_client_without_any_key_raises_the_key_guide():
    with pytest.raises(ConfigurationError) as info:
        Client(provider="qwen", verbose=False)
    assert "xedullm key set qwen" in str(info.value) and "DASHSCOPE_API_KEY" in str(info.value)


# -- format warnings --------------------------------------------------------------------

@pytest.mark.parametrize("pid, key", [
    ("deepseek", DEEPSEEK_KEY), ("openrouter", "sk-or-v1-0123456789abcdef"),
    ("glm", "0123abcd4567ef89.AbCdEf0123456789"), ("ernie", ERNIE_AK), ("ernie", "anything-at-all-1"),
    ("qwen", "sk-test-0123456789abcdef0123"), ("moonshot", "'sk-test-0123456789abcdef0123'\n"),
])
def test_plausible_keys_get_no_warning(pid, key):
    assert key_format_warning(find_provider(pid), key) is None


@pytest.mark.parametrize("pid, key", [
    ("deepseek", "ak-5f1e0c2a9b8d47e6a3c1f0e9d8b7a6c5"),
    ("deepseek", "sk-or-v1-0123456789abcdef0123456789"),
    ("openrouter", DEEPSEEK_KEY),
    ("glm", "0123abcd4567ef89AbCdEf0123456789"),
    ("qwen", "sk-0123456789，abcdef0123"),
    ("ernie", "Ak7Qz2Lm9Np4Rs6Tv8Wx0Yb3中文"),
])
def test_implausible_keys_get_a_masked_bilingual_warning(pid, key):
    warning = key_format_warning(find_provider(pid), key)
    assert warning and " / " in warning
    assert_hidden(warning, key)


def test_known_secrets_cover_env_and_store(monkeypatch):
    FileKeyStore().set("ernie", ERNIE_AK, ERNIE_SK)
    monkeypatch.setenv("MOONSHOT_API_KEY", DEEPSEEK_KEY)
    assert {ERNIE_AK, ERNIE_SK, DEEPSEEK_KEY} <= set(known_secrets())


def test_errors_from_a_rejected_key_never_contain_it():
    from xedullm import AuthenticationError
    from xedullm.testing import FakeOpenAIServer

    wrong = "sk-test-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    with FakeOpenAIServer(flavor="openai", api_key="sk-the-right-one-000000") as fake:
        client = Client(provider="deepseek", base_url=fake.base_url, api_key=wrong,
                        max_retries=0, verbose=False)
        for call in (client.support_model, lambda: client.inference("hi")):
            with pytest.raises(AuthenticationError) as info:
                call()
            err = info.value
            for text in (str(err), repr(err), err.message, str(err.detail)):
                assert_hidden(text, wrong)
