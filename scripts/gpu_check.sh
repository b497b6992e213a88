#!/usr/bin/env bash
# The GPU check, in one script: on a bare CUDA machine (CUDA toolkit with nvcc, PyTorch; no
# network), install what is missing from wheels carried in .whl/, JIT-build gsplat's CUDA
# kernels for the local GPU only, run every CUDA test, then the GPU rows of `gsbp bench`.
# Meant to finish in under 9 minutes on an H100/H200 (the gsplat build is most of it).
#
#   scripts/gpu_check.sh --fetch    # on a machine WITH network: download the wheels to .whl/
#   scripts/gpu_check.sh [OUTDIR]   # on the GPU machine (OUTDIR defaults to $OUT or out/gpu_check)
#
# Everything it prints also lands in OUTDIR: gsplat_build.log, tests.log, bench.md,
# bench.json, summary.txt. Each step reports its own status; the script goes on after a
# failed step so that one run shows everything, and exits non-zero if any step failed.
# The tests and the bench run under `timeout` against one deadline (GPU_CHECK_BUDGET_S,
# default 530 s from the start), so that the summary is written inside the device tool's
# 600 s limit even when a step hangs; the bench saves its JSON after every row.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

GSPLAT_WHEEL_SPEC="gsplat==1.5.3"  # the series the CUDA tests hold (requirements: >=1.5,<1.6)

if [[ "${1:-}" == "--fetch" ]]; then
  PY=${PYTHON:-python3}
  mkdir -p .whl
  # gsplat is pure Python + CUDA sources (JIT-compiled there); its needs (ninja, jaxtyping,
  # rich, numpy, torch) are already on the GPU image.
  "$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    -d .whl "$GSPLAT_WHEEL_SPEC"
  ls -la .whl
  exit 0
fi

OUTDIR=${1:-${OUT:-out/gpu_check}}
mkdir -p "$OUTDIR"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
START=$SECONDS
DEADLINE=$((START + ${GPU_CHECK_BUDGET_S:-530}))
FAILED=()
step() { echo; echo "== $* ($((SECONDS - START)) s)"; }
# seconds left before the deadline, minus a reserve for the summary; at least 1
left() { local s=$((DEADLINE - SECONDS - ${1:-10})); echo $((s > 1 ? s : 1)); }
# A missing device or gsplat build fails the CUDA tests here instead of skipping them.
export GSBP_REQUIRE_GPU=1

step "machine"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  nvcc --version | tail -n 1 || echo "nvcc missing: gsplat cannot JIT-build"
  "$PY" -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
} 2>&1 | tee "$OUTDIR/summary.txt"
if ! "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check: no CUDA device here; nothing to check" | tee -a "$OUTDIR/summary.txt"
  exit 1
fi

step "packages"
if ! "$PY" -c 'import gsplat' 2>/dev/null; then
  if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/gsbp_site .whl/*.whl || FAILED+=("wheels")
    export PYTHONPATH=/tmp/gsbp_site${PYTHONPATH:+:$PYTHONPATH}
  else
    echo "gpu_check: gsplat is missing and .whl/ holds no wheels (run --fetch where pip works)"
    FAILED+=("gsplat missing")
  fi
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
"$PY" - <<'EOF' 2>&1 | tee -a "$OUTDIR/summary.txt"
import importlib
for name in ("gsplat", "numba", "transformers", "safetensors", "scipy", "PIL"):
    try:
        mod = importlib.import_module(name)
        print(f"{name} {getattr(mod, '__version__', '?')}")
    except Exception as exc:
        print(f"{name} MISSING: {type(exc).__name__}: {exc}")
EOF

step "gsplat CUDA kernels (JIT build for this GPU only)"
# The local architecture only, without torch's default extra PTX, on all cores.
TORCH_CUDA_ARCH_LIST=$("$PY" -c 'import torch; m, n = torch.cuda.get_device_capability(); print(f"{m}.{n}")')
export TORCH_CUDA_ARCH_LIST
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
echo "TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST MAX_JOBS=$MAX_JOBS"
BUILD_START=$SECONDS
# A hung build must still leave time for the summary (timeout exits 124).
if timeout "$(left 230)" "$PY" - >"$OUTDIR/gsplat_build.log" 2>&1 <<'EOF'
from gsplat.cuda._backend import _C
import sys
print("gsplat _C:", _C)
sys.exit(0 if _C is not None else 1)
EOF
then
  echo "gsplat kernels built in $((SECONDS - BUILD_START)) s" | tee -a "$OUTDIR/summary.txt"
else
  echo "gsplat kernels FAILED to build after $((SECONDS - BUILD_START)) s; last lines of the log:" \
    | tee -a "$OUTDIR/summary.txt"
  tail -n 40 "$OUTDIR/gsplat_build.log" | tee -a "$OUTDIR/summary.txt"
  FAILED+=("gsplat build")
fi

step "CUDA tests"
# The ROS tests need the colcon install and rclpy, which a GPU image lacks; -m gpu selects
# every CUDA test of the core.
if timeout "$(left 200)" "$PY" -m pytest -q -m gpu -rs --ignore=test/ros -p no:cacheprovider \
  test 2>&1 | tee "$OUTDIR/tests.log"; then
  echo "CUDA tests passed" | tee -a "$OUTDIR/summary.txt"
else
  FAILED+=("CUDA tests")
  echo "CUDA tests FAILED" | tee -a "$OUTDIR/summary.txt"
fi
grep -E "passed|failed|skipped" "$OUTDIR/tests.log" | tail -n 1 >>"$OUTDIR/summary.txt"

step "bench (GPU rows: ours vs the torch engine on CUDA vs the paper's autograd through gsplat)"
# Not the full default plan (7 scenes x 3-4 rows, a 100-view lift, each row a fresh
# process): two scene sizes at one resolution fit the time left; rows land in bench.json
# as they finish, so a cut-off run still reports what it measured.
if timeout "$(left)" "$PY" -m gsbp_ros.cli bench --device cuda --out "$OUTDIR/bench.md" \
  --json "$OUTDIR/bench.json" --sizes 20000,1000000 --resolutions 1440x1080 --views 3 \
  --timeout 90 2>&1 | tee "$OUTDIR/bench.log"; then
  echo "bench done" | tee -a "$OUTDIR/summary.txt"
else
  FAILED+=("bench")
fi

step "done"
echo "total $((SECONDS - START)) s; failed steps: ${FAILED[*]:-none}" | tee -a "$OUTDIR/summary.txt"
[[ ${#FAILED[@]} -eq 0 ]]
