#!/usr/bin/env bash
# Create the peers' virtual environments for the benchmark harness (bench/run.py):
#   bench/.venv-peers/{saq,arq,streaq,taskiq}, one per library, from PyPI, fully pinned
#   (bench/peers/*.txt). One per library because their pins conflict: arq 0.28 needs
#   redis<6, taskiq-redis 1.2.4 needs redis>=8.
#
#   bash bench/setup_peers.sh [PYTHON]     # PYTHON defaults to python3 (3.11 measured)
#
# Idempotent: an existing environment is brought to the pinned set again.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${1:-python3}"
for lib in saq arq streaq taskiq; do
    venv="$here/.venv-peers/$lib"
    if [ ! -x "$venv/bin/python" ]; then
        "$python" -m venv "$venv"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$here/peers/$lib.txt"
    echo "$lib: $("$venv/bin/python" -m pip freeze --disable-pip-version-check | grep -iE "^(saq|arq|streaq|taskiq-redis)==" )"
done
