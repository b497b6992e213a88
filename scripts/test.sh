#!/usr/bin/env bash
# Run the whole suite against the colcon install (the node tests need its msg/srv modules).
set -euo pipefail
cd "$(dirname "$0")/.."
set +u
# shellcheck disable=SC1091
source install/setup.bash
set -u
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec .venv/bin/python -m pytest -q "$@"
