#!/usr/bin/env bash
# What a teacher installs is what we test: builds the wheel, checks it holds every file of the
# package, installs it (not editable) into a fresh virtualenv with the 'local' and 'test'
# extras, then runs the README's main job and the tests that load the package's own files
# (pages, scripts, styles) against that install, from outside the checkout.
# Usage: bash scripts/test_installed.sh   (scripts/test.sh first: its .models folder is reused)
set -euo pipefail
cd "$(dirname "$0")/.."
checkout="$PWD"
PYTHON="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# A PYTHONPATH pointing at a checkout (as developers export it) would defeat the whole run.
unset PYTHONPATH

# 1. A fresh virtualenv, and the wheel, built from a copy of the files git knows (tracked or
#    new, not ignored) so that a stale build/ directory cannot slip files into it.
venv="$work/venv"
"$PYTHON" -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
mkdir "$work/src"
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  git ls-files -co --exclude-standard -z | tar -cf - --null --ignore-failed-read -T - | tar -xf - -C "$work/src"
else
  tar -cf - --exclude='./.venv*' --exclude=./build --exclude=./dist --exclude='*.egg-info' . | tar -xf - -C "$work/src"
fi
"$venv/bin/python" -m pip wheel -q --no-deps "$work/src" -w "$work/dist"
wheel="$(ls "$work"/dist/xedullm-*.whl)"

# 2. Every file of the packages (pages, scripts, styles, fonts included) is in it.
"$venv/bin/python" - "$wheel" "$work/src" <<'EOF'
import pathlib, sys, zipfile
wheel, src = sys.argv[1], pathlib.Path(sys.argv[2])
inside = set(zipfile.ZipFile(wheel).namelist())
wanted = [p.relative_to(src).as_posix() for top in ("xedullm", "XEdu") for p in (src / top).rglob("*")
          if p.is_file() and "__pycache__" not in p.parts]
missing = sorted(set(wanted) - inside)
if missing:
    sys.exit("The wheel lacks these files (add them to [tool.setuptools.package-data]):\n  " + "\n  ".join(missing))
pages = [n for n in inside if "/static/" in n]
for folder in ("xedullm/server/web/static/", "xedullm/server/admin/static/"):
    if not any(n.startswith(folder) for n in pages):
        sys.exit(f"The wheel has nothing under {folder}")
print(f"wheel {pathlib.Path(wheel).name}: all {len(wanted)} package files, {len(pages)} of them page files")
EOF

# 3. The wheel installed as a user installs it (not editable), plus the test tools.
"$venv/bin/python" -m pip install -q "$wheel[local,test]"

# 4. The README's main job with the installed command: no key anywhere, the local model answers.
mkdir "$work/home" "$work/run"
cd "$work/run"
XEDULLM_HOME="$work/home" XEDULLM_MODELS_DIR= XEDULLM_KEYRING=0 "$venv/bin/xedullm" models pull smollm2
XEDULLM_HOME="$work/home" XEDULLM_MODELS_DIR= XEDULLM_KEYRING=0 bash "$checkout/scripts/no_keys.sh" "$venv/bin/python" \
    "$venv/bin/xedullm" ask "你好，请用一句话介绍你自己" | tee "$work/answer.txt"
test -s "$work/answer.txt"
"$venv/bin/python" -c "from XEdu.LLM import Client"   # old XEduLLM programs' import

# 5. The tests that read the package's files, from a copy of tests/ outside the checkout;
#    conftest stops the run if xedullm is not the one in the virtualenv's site-packages.
cp -r "$checkout/tests" "$checkout/pyproject.toml" "$work/run/"
XEDULLM_MODELS_DIR="${XEDULLM_MODELS_DIR:-$checkout/.models}" XEDULLM_TEST_INSTALLED=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider \
    tests/test_page_assets.py tests/test_server.py tests/test_admin_page.py tests/test_web_page.py \
    tests/test_classroom_controls.py
