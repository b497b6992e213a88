#!/usr/bin/env bash
# Create .venv/ with the whole stack (torch CPU, gsplat, transformers, open3d, ROS 2 Kilted
# wheels, colcon) and install gsbp_ros into it. Idempotent: a stamp keyed on the
# requirements skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "setup: Python 3.10+ is required (found $("$PY" --version 2>&1))" >&2
  exit 1
fi

# open3d needs libusb at import time; Debian names it libusb-1.0-0.
if ! ldconfig -p 2>/dev/null | grep -q 'libusb-1.0.so.0'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing libusb-1.0-0 (needed by open3d)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0 >/dev/null
  else
    echo "setup: warning: libusb-1.0-0 is missing; install it (sudo apt-get install libusb-1.0-0) for open3d" >&2
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.gsbp-requirements.sha256
want=$(cat requirements.txt setup.py | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing the Python stack into .venv (about 2 minutes the first time)"
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first and alone: with it in place, nothing else can pull a CUDA build.
  .venv/bin/python -m pip install -q "$(grep -E '^torch==' requirements.txt)"
  .venv/bin/python -m pip install -q -r requirements.txt
  .venv/bin/python -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
fi
# The ROS 2 launch system from ../shared/ros2_launch when it is there (tests run the launch
# file for real); idempotent.
bash scripts/install_ros2_launch.sh
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
