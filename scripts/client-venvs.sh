#!/usr/bin/env bash
# Third-party OpenAI clients, each in a venv of its own, for tests/test_third_party_clients.py:
# they talk to `xedullm serve` the way students' programs do, so their versions must not mix
# with ours. Idempotent: a venv whose stamp matches its requirements is left as it is.
# Usage: bash scripts/client-venvs.sh   (prints the folder that holds the venvs)
set -euo pipefail

ROOT="${XEDULLM_CLIENT_VENVS:-${XDG_CACHE_HOME:-$HOME/.cache}/xedullm/client-venvs}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$ROOT"

# name|pip requirements|a module that must import afterwards
CLIENTS=(
  "openai|openai pydantic|openai"
  "langchain-openai|langchain-openai|langchain_openai"
  "litellm|litellm|litellm"
)

for row in "${CLIENTS[@]}"; do
  IFS='|' read -r name reqs module <<<"$row"
  venv="$ROOT/$name"
  stamp="$venv/.xedullm-stamp"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$reqs" ] && "$venv/bin/python" -c "import $module" 2>/dev/null; then
    continue
  fi
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  # shellcheck disable=SC2086 # the requirements are a word list on purpose
  "$venv/bin/python" -m pip install -q $reqs
  "$venv/bin/python" -c "import $module"
  printf '%s' "$reqs" >"$stamp"
done
echo "$ROOT"
