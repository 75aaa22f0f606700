#!/usr/bin/env bash
# Third-party programs the interop tests run against, each in a venv of its own, so nothing
# of ours is on their path and nothing of theirs is on ours (tests/test_gradio_interop.py).
#
#   xedu-gradio4    the original XEduLLM as classrooms have it: xedu-python 2.0.0 with
#                   gradio 4.44.1, which pins gradio_client 1.3.0. It is both the old
#                   teacher server (Client(...).run()) and the old student client.
#   xedu-client2    xedu-python 2.0.0 with the current gradio_client (2.x), as a student
#                   who ran `pip install -U gradio_client` has it.
#
# Idempotent: a venv whose stamp matches its pins is left alone. Prints the root on success.
# Usage: bash scripts/interop-venvs.sh [root]   (default: $XEDULLM_INTEROP_VENVS or /tmp/gradio-venvs)
set -euo pipefail

ROOT="${1:-${XEDULLM_INTEROP_VENVS:-/tmp/gradio-venvs}}"
# xedu-python needs onnxruntime<1.16, whose wheels stop at Python 3.11.
PYTHON="${PYTHON:-python3}"
mkdir -p "$ROOT"

make_venv() {
  local name="$1" check="$2"; shift 2
  local dir="$ROOT/$name" stamp="$*"
  if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.pins" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  # pip's output goes to a log, shown only when it fails.
  if ! "$dir/bin/python" -m pip install -q "$@" >"$dir/pip.log" 2>&1; then
    cat "$dir/pip.log" >&2
    echo "interop-venvs: installing $name failed ($*)" >&2
    exit 1
  fi
  # Importing XEdu proves the whole package loads (it imports cv2, onnxruntime, matplotlib).
  MPLBACKEND=Agg "$dir/bin/python" -c "from XEdu.LLM import Client; $check" >/dev/null
  echo "$stamp" > "$dir/.pins"
}

# xedu-python's onnxruntime<1.16 is built against numpy 1, and its tokenizer imports six
# without declaring it: the XEdu installers ship both, so do we. `holidays` is there so that
# the holiday reminder `import XEdu` shows now and then does not run pip.
XEDU="xedu-python==2.0.0 numpy<2 six holidays"
# gradio 4.44.1 (September 2024) with the libraries of its day: it imports
# huggingface_hub.HfFolder (gone in 1.0), calls Starlette's old TemplateResponse signature
# (gone in Starlette 1.0), and its gradio_client fails on the JSON schemas newer pydantic
# writes ("argument of type 'bool' is not iterable"). If gradio fails to import, XEduLLM's
# run() runs `pip install -U gradio` by itself, so the check proves it imports, as 4.44.1.
make_venv xedu-gradio4 "import gradio, gradio_client; assert gradio.__version__ == '4.44.1'" \
  $XEDU "gradio==4.44.1" "gradio_client==1.3.0" "huggingface_hub<0.26" "fastapi<0.116" "pydantic<2.10"
make_venv xedu-client2 "import gradio_client" $XEDU "gradio_client>=2,<3"

echo "$ROOT"
