#!/usr/bin/env bash
# Idempotent set-up of RLlib in its own virtual environment, for the RLlib client test
# (tests/test_rl_clients.py). Prints the venv's python path last.
#
#   scripts/setup_rllib.sh              # default venv: $HOME/.cache/precision-gym/rllib-venv
#   RLLIB_VENV=/opt/rllib-venv scripts/setup_rllib.sh
#   export PRECISION_GYM_RLLIB_PYTHON="$(scripts/setup_rllib.sh | tail -n 1)"
#
# Why a venv of its own: ray[rllib] pins gymnasium (1.2.2 for Ray 2.5x-2.60) and would downgrade
# the main environment's newest gymnasium. Order matters: torch==2.13.0 (a CPU wheel) FIRST, or
# ray's dependencies pull a CUDA torch; then ray[rllib]; then this project with the extras the
# RLlib test needs (RLLIB_EXTRAS, default webshop: the fast synthetic-catalogue env).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv_lib.sh"
cd "$(dirname "$0")/.."

TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
RAY_SPEC="${RAY_SPEC:-ray[rllib]}"
EXTRAS="${RLLIB_EXTRAS:-webshop}"
VENV="${RLLIB_VENV:-$HOME/.cache/precision-gym/rllib-venv}"
PY="$VENV/bin/python"
STAMP="$VENV/.precision-gym-rllib-torch$TORCH_VERSION-$EXTRAS"

venv_reuse "$VENV" "$STAMP" "import ray.rllib, torch, precision_gym" "RLlib already set up in $VENV"
venv_create "$VENV"
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    "$PY" -m pip install --quiet "torch==$TORCH_VERSION" >&2
fi
"$PY" -m pip install --quiet "$RAY_SPEC" "torch==$TORCH_VERSION" >&2
"$PY" -m pip install --quiet -e ".[$EXTRAS]" "torch==$TORCH_VERSION" >&2
"$PY" -c "import ray, gymnasium, torch; print('ray', ray.__version__, 'gymnasium', gymnasium.__version__, 'torch', torch.__version__)" >&2
venv_finish "$VENV" "$STAMP"
