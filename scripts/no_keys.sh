#!/usr/bin/env bash
# Runs a command as a user with no provider key in the environment: every variable the
# catalog reads a key from is unset (the list comes from xedullm.catalog, so a new provider or
# alias is covered the day it is added).
# Usage: bash scripts/no_keys.sh PYTHON COMMAND [ARGS...]   (PYTHON: one that imports xedullm)
set -euo pipefail
python="$1"; shift
names="$("$python" -c 'from xedullm.catalog import GENERIC_OPENAI, PROVIDERS
print(" ".join(sorted({n for p in (*PROVIDERS, GENERIC_OPENAI) for n in (*p.key_env, *p.secret_env)})))')"
[ -n "$names" ] || { echo "no key variables found in xedullm.catalog" >&2; exit 1; }
unset_args=()
for name in $names; do unset_args+=(-u "$name"); done
exec env "${unset_args[@]}" "$@"
