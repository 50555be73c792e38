# Shared by the set-up scripts of the side virtual environments (setup_vllm_cpu.sh,
# setup_rllib.sh): source it. Each script prints its venv's python path last.
#
#   venv_reuse VENV STAMP CHECK MESSAGE  exit 0 (printing the python) when STAMP exists and the
#                                        python code CHECK runs in VENV
#   venv_create VENV                     create VENV with $BASE_PYTHON (default python3) when
#                                        absent, then upgrade its pip
#   venv_finish VENV STAMP               mark VENV set up and print its python

venv_reuse() {
    local py="$1/bin/python"
    if [[ -f "$2" ]] && "$py" -c "$3" >/dev/null 2>&1; then
        echo "$4" >&2
        echo "$py"
        exit 0
    fi
}

venv_create() {
    local py="$1/bin/python"
    if [[ ! -x "$py" ]]; then
        "${BASE_PYTHON:-python3}" -m venv "$1"
    fi
    "$py" -m pip install --quiet --upgrade pip >&2
}

venv_finish() {
    touch "$2"
    echo "$1/bin/python"
}
