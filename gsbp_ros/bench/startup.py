"""Node start-up time on the demo scene, from process start to "services up".

Runs the real node (``python -m gsbp_ros.nodes.gsbp_node``) as its own process with the
package's defaults (``config/gsbp.yaml``: DINOv2 and CLIP, whose weights are missing on a
machine without them, plus the demo's label maps), so it measures what a robot without
network sees at every start: scene loading, the missing models reported, the back-projection
(cold) or the cache (warm). Needs the built ROS package on the path (``source
install/setup.bash``); the caller says so when it is not.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

READY = "services up"


def ros_package_available() -> bool:
    try:
        import gsbp_ros.srv  # noqa: F401
    except ImportError:
        return False
    return True


def _start_once(params_file: Path, overrides: list[str], timeout: float) -> float:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "ROS_DOMAIN_ID": str(120 + os.getpid() % 60)}
    cmd = [sys.executable, "-m", "gsbp_ros.nodes.gsbp_node", "--ros-args"]
    cmd += ["--params-file", str(params_file), *overrides]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
    )
    seen: list[str] = []
    try:
        for line in proc.stdout:
            if READY in line:
                return time.monotonic() - t0
            seen.append(line.strip())
            if time.monotonic() - t0 > timeout:
                break
        last = seen[-1] if seen else "(no output)"
        raise RuntimeError(
            f"the node did not report '{READY}' within {timeout:.0f} s (exit "
            f"{proc.poll()}; last line: {last})"
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _params_file() -> Path:
    """The package's config/gsbp.yaml: from the ament index, else beside this module in a
    colcon install (``install/gsbp_ros/lib/pythonX/site-packages`` -> ``share/gsbp_ros``),
    else the source checkout this module lives in."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory("gsbp_ros")))
    except (ImportError, LookupError, OSError):  # OSError: no AMENT_PREFIX_PATH
        pass
    here = Path(__file__).resolve()
    if len(here.parents) > 5:
        candidates.append(here.parents[5] / "share" / "gsbp_ros")
    candidates.append(here.parents[2])
    for root in candidates:
        path = root / "config" / "gsbp.yaml"
        if path.is_file():
            return path
    raise FileNotFoundError(
        "config/gsbp.yaml not found (looked in "
        + ", ".join(str(c / "config") for c in candidates)
        + "): build the package (scripts/build_ros.sh) or run from the source checkout"
    )


def measure_startup(*, repeat: int = 5, timeout: float = 120.0) -> dict:
    """Median start-up times (s): defaults only, the demo's label maps cold, and warm."""
    from gsbp_ros.demo_scene import write_demo_scene

    params = _params_file()
    with tempfile.TemporaryDirectory(prefix="gsbp-startup-") as tmp:
        demo = Path(tmp) / "demo"
        write_demo_scene(demo)
        names = json.loads((demo / "names.json").read_text())["objects"]
        base = [
            "-p",
            f"scene_path:={demo / 'scene.ply'}",
            "-p",
            f"cameras_path:={demo / 'sparse' / '0'}",
            "-p",
            "device:=cpu",
        ]
        labels = [
            "-p",
            f"label_maps_dir:={demo / 'labels' / 'objects'}",
            "-p",
            f"label_names:=[{','.join(repr(n) for n in names)}]",
        ]
        out = {}
        runs = {
            "models missing, no label maps": base,
            "models missing, label maps, cold": [*base, *labels],
        }
        for name, args in runs.items():
            out[name] = [_start_once(params, args, timeout) for _ in range(repeat)]
        cache = ["-p", f"cache_dir:={Path(tmp) / 'cache'}"]
        _start_once(params, [*base, *labels, *cache], timeout)  # fills the cache
        out["models missing, label maps, cache hit"] = [
            _start_once(params, [*base, *labels, *cache], timeout) for _ in range(repeat)
        ]
    return {k: {"median_s": statistics.median(v), "runs_s": v} for k, v in out.items()}
