#!/usr/bin/env bash
# Set up a fresh machine for precision-gym: torch first (a local CPU wheel), then the project.
#   bash scripts/setup.sh            # core + alfworld + webshop + sb3 + llm + dev extras
#   EXTRAS=alfworld,dev bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
EXTRAS=${EXTRAS:-all}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  echo "[setup] installing torch==${TORCH_VERSION} first (an unpinned torch would pull CUDA wheels)"
  "$PY" -m pip install --quiet "torch==${TORCH_VERSION}"
else
  echo "[setup] torch $("$PY" -c 'import torch; print(torch.__version__)') already installed"
fi
echo "[setup] installing precision-gym[${EXTRAS}]"
"$PY" -m pip install --quiet -e ".[${EXTRAS}]"
"$PY" -c "import precision_gym, agents, training; print('[setup] precision-gym', precision_gym.__version__, 'ready')"
