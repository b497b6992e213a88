#!/usr/bin/env bash
# Build the gsbp_ros ament_cmake package (msg/, srv/, Python package, launch, config) with
# colcon from the project's .venv (ROS 2 from PyPI wheels, see shared/ROS2_FROM_PYPI.md).
#
#   scripts/build_ros.sh          # from the repository root; then: source install/setup.bash
#   scripts/build_ros.sh --force  # rebuild even when nothing changed
#
# Idempotent: skips colcon when no file of the repository (as git would check it out)
# changed since the last successful build (content hash in build/.gsbp_ros_stamp). On a
# robot workstation with ROS 2 from apt, use plain `colcon build` instead: nothing here is
# needed there.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
VENV=${GSBP_VENV:-$ROOT/.venv}
FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "build_ros.sh: no virtual environment at $VENV (see README: scripts/setup.sh)" >&2
  exit 1
fi

mkdir -p build
# One build at a time in this checkout (several people and CI may call this at once).
exec 9>build/.gsbp_ros_build.lock
flock 9

# 1. The PyPI message wheels' exported CMake targets name the include folders of the
#    machine that built them (/opt/python/cpXY-cpXY/...). Point them at this venv's Python
#    and numpy include folders. Inside the venv only; a no-op once done.
PY_INC=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
NP_INC=$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')
mapfile -t BAD < <(grep -l '/opt/python/cp' "$VENV"/share/*/cmake/*.cmake 2>/dev/null || true)
if ((${#BAD[@]})); then
  sed -i -E \
    -e "s#/opt/python/cp[0-9]+-cp[0-9]+t?/lib/python[0-9.]+t?/site-packages/numpy/(_core/)?include#${NP_INC}#g" \
    -e "s#/opt/python/cp[0-9]+-cp[0-9]+t?/include/python[0-9.]+t?#${PY_INC}#g" \
    "${BAD[@]}"
  echo "build_ros.sh: fixed include paths in ${#BAD[@]} CMake files of $VENV/share"
fi

# The ROS 2 launch system's message package (launch_ros imports it) is built beside gsbp_ros
# when ../shared/ros2_launch is there (scripts/install_ros2_launch.sh installs the rest), so
# that the tests can run launch/gsbp.launch.py for real. With ROS from apt it is installed.
LAUNCH_SRC=${GSBP_ROS2_LAUNCH_SRC:-../shared/ros2_launch}
EXTRA=()
[[ -d $LAUNCH_SRC/composition_interfaces ]] && EXTRA+=("$LAUNCH_SRC/composition_interfaces")

# 2. Skip when the inputs did not change: the files of the clean copy built below (what git
#    would check out; without git, the package's inputs) and the launch system's messages.
sources() {
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard |
      while IFS= read -r -d '' f; do if [[ -f $f ]]; then printf '%s\0' "$f"; fi; done
  else
    find msg srv gsbp_ros launch config -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0
    printf '%s\0' CMakeLists.txt package.xml
  fi
}
STAMP=build/.gsbp_ros_stamp
HASH=$(
  {
    sources
    if ((${#EXTRA[@]})); then find "${EXTRA[@]}" -type f -print0; fi
  } | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1
)
if [[ $FORCE == 0 && -f $STAMP && "$(cat "$STAMP")" == "$HASH" && -f install/setup.bash ]]; then
  echo "build_ros.sh: up to date (install/)"
  exit 0
fi

# 3. colcon build (quiet; the full log is printed only on failure).
#    CMake refuses to export include folders that lie inside the source tree ("prefixed in
#    the source directory"), and this checkout holds .venv (numpy's include folder) inside
#    the package root. So colcon builds a clean copy of the repository staged under build/:
#    the files git would check out (tracked, plus new files not ignored), nothing built.
#    That makes every build here the plain `colcon build` of a clean clone that a robot
#    workstation does (test/ros/test_packaging.py checks the copy and the install).
SRC=build/ros_src/gsbp_ros
rm -rf "$SRC"
mkdir -p "$SRC"
sources | xargs -0 cp --parents -t "$SRC"
PATHS=("$SRC")
for extra in "${EXTRA[@]}"; do
  dest=build/ros_src/$(basename "$extra")
  rm -rf "$dest"
  cp -r "$extra" "$dest"
  chmod -R u+w "$dest"
  PATHS+=("$dest")
done

# shellcheck disable=SC1091
source "$VENV/bin/activate"
export CMAKE_PREFIX_PATH=$VIRTUAL_ENV AMENT_PREFIX_PATH=$VIRTUAL_ENV
unset COLCON_PREFIX_PATH
START=$EPOCHREALTIME
LOG=build/colcon_build.log
if ! colcon --log-base build/ros_log build --paths "${PATHS[@]}" --build-base build/ros \
    --install-base install --event-handlers console_cohesion+ \
    --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF \
    >"$LOG" 2>&1; then
  cat "$LOG" >&2
  echo "build_ros.sh: colcon build FAILED (log above, also in $LOG)" >&2
  rm -f "$STAMP"
  exit 1
fi
echo "$HASH" >"$STAMP"
awk -v a="$START" -v b="$EPOCHREALTIME" \
  'BEGIN { printf "build_ros.sh: built in %.1f s; now: source install/setup.bash\n", b - a }'
