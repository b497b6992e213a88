#!/usr/bin/env bash
# Install the ROS 2 launch system (launch, launch_xml, launch_yaml, launch_ros, ros2launch) from
# ../shared/ros2_launch into .venv, so that the tests run launch/gsbp.launch.py for real.
# PyPI has no wheels of it; on a robot workstation it comes from apt (ros-$ROS_DISTRO-launch-ros)
# and nothing here is needed. Its message package composition_interfaces is built by
# scripts/build_ros.sh next to gsbp_ros.
#
#   scripts/install_ros2_launch.sh      # called by scripts/setup.sh; idempotent (stamp)
#
# Without ../shared/ros2_launch (override: GSBP_ROS2_LAUNCH_SRC) it does nothing and the
# launch tests skip, saying why.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SRC=${GSBP_ROS2_LAUNCH_SRC:-../shared/ros2_launch}
VENV=${GSBP_VENV:-.venv}
# Not launch_testing (and launch_testing_ros): its pytest plugin does not load under pytest 9
# (a `path` hook argument pytest removed) and would break every pytest run in the venv.
PKGS=(launch launch_xml launch_yaml launch_ros ros2launch)
# osrf_pycommon is the only Python dependency of the launch system that the ROS 2 wheels do
# not bring; lark (its substitution grammar) comes with ros-rosidl-parser's lark-parser.
OSRF_PYCOMMON=osrf-pycommon==2.0.2

if [[ ! -d $SRC/launch_ros ]]; then
  echo "install_ros2_launch: no $SRC: the launch tests will be skipped"
  exit 0
fi

# The sources' content (not their build leftovers) keys the stamp.
want=$(
  cd "$SRC" &&
    find "${PKGS[@]}" -type f ! -path '*/build/*' ! -path '*.egg-info/*' -print0 |
    LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
)
stamp=$VENV/.gsbp-ros2-launch.sha256
# (found, not imported: launch_ros imports composition_interfaces, built later by build_ros.sh)
FOUND='import importlib.util as u, sys
sys.exit(not all(u.find_spec(m) for m in ("launch", "launch_ros", "ros2launch", "osrf_pycommon")))'
if [[ "$(cat "$stamp" 2>/dev/null)" == "$want" ]] &&
  "$VENV/bin/python" -c "$FOUND" 2>/dev/null; then
  exit 0
fi

echo "install_ros2_launch: installing the ROS 2 launch system from $SRC into $VENV"
# pip builds in the source folder: build from a private copy (the shared one may be read-only
# or used by others at the same time).
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for p in "${PKGS[@]}"; do
  cp -r "$SRC/$p" "$tmp/$p"
  chmod -R u+w "$tmp/$p"
  rm -rf "$tmp/$p/build" "$tmp/$p"/*.egg-info
done
if ! "$VENV/bin/python" -c 'import lark' 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q --no-deps lark
fi
# --no-deps: their ROS dependencies (rclpy, ament_index_python, ...) are the ros-* wheels.
# Quiet (setuptools warns about their old setup.py style); the log is printed on failure.
log=$tmp/pip.log
if ! "$VENV/bin/python" -m pip install --no-deps "$OSRF_PYCOMMON" "${PKGS[@]/#/$tmp/}" \
  >"$log" 2>&1; then
  cat "$log" >&2
  echo "install_ros2_launch: pip install FAILED" >&2
  exit 1
fi
"$VENV/bin/python" -c "$FOUND"
echo "$want" >"$stamp"
echo "install_ros2_launch: done"
