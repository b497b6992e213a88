"""Fixtures for the ROS 2 tests: the colcon install, the demo scene, node processes, a client.

The node runs as a real separate process from the colcon install (``install/setup.bash``
environment), with its own ROS_DOMAIN_ID and namespace per test session, and this process
talks to it over DDS. Build first: ``scripts/build_ros.sh``. Helpers live in ros_support.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ros_support import (
    DEMO_DENSITY,
    DEMO_VIEWS,
    DOMAIN_ID,
    INSTALL,
    INTERFACES_MISSING,
    ROOT,
    NodeProcess,
    RosClient,
    demo_node_params,
    wait_until_ready,
)


@pytest.fixture(scope="session")
def interfaces() -> None:
    if INTERFACES_MISSING:
        pytest.skip(INTERFACES_MISSING)


@pytest.fixture(scope="session")
def ros_env(interfaces) -> dict[str, str]:
    """The environment of ``source install/setup.bash`` (+ test domain, localhost only)."""
    if not (INSTALL / "setup.bash").is_file():
        pytest.skip("install/ is missing: run scripts/build_ros.sh first")
    out = subprocess.run(
        ["bash", "-c", f"source {INSTALL}/setup.bash >/dev/null && env -0"],
        check=True,
        capture_output=True,
    ).stdout
    env = dict(kv.split("=", 1) for kv in out.decode().split("\0") if "=" in kv)
    # Run the node from the install space only: drop source-tree entries from PYTHONPATH.
    keep = [
        p
        for p in env.get("PYTHONPATH", "").split(os.pathsep)
        if p and Path(p).resolve() not in (ROOT, ROOT / "gsbp_ros")
    ]
    env["PYTHONPATH"] = os.pathsep.join(keep)
    env["ROS_DOMAIN_ID"] = str(DOMAIN_ID)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["PYTHONUNBUFFERED"] = "1"
    env["HF_HUB_OFFLINE"] = "1"  # no model hub here: fail fast instead of timing out
    env["RCUTILS_LOGGING_BUFFERED_STREAM"] = "0"
    return env


@pytest.fixture(scope="session")
def demo(tmp_path_factory) -> dict:
    """The demo scene on disk: {'dir', 'names', 'labels', 'part_labels'}."""
    from gsbp_ros.demo_scene import write_demo_scene

    out = tmp_path_factory.mktemp("demo")
    write_demo_scene(out, num_views=DEMO_VIEWS, density=DEMO_DENSITY)
    return {
        "dir": out,
        "names": json.loads((out / "names.json").read_text()),
        "labels": np.load(out / "labels.npy"),
        "part_labels": np.load(out / "part_labels.npy"),
    }


@pytest.fixture(scope="session")
def nodes(ros_env, demo, tmp_path_factory):
    """Two node processes, started together: 'gsbp' on the demo scene and 'gsbp_broken'
    whose scene file does not exist."""
    work = tmp_path_factory.mktemp("nodes")
    out_dir, cache_dir = work / "output", work / "cache"
    good = NodeProcess("gsbp", ros_env, demo_node_params(demo, out_dir, cache_dir), work)
    # use_sim_time without a /clock publisher: diagnostics must come all the same.
    broken = NodeProcess(
        "gsbp_broken",
        ros_env,
        {"scene_path": str(work / "missing_scene.ply"), "device": "cpu", "use_sim_time": True},
        work,
    )
    yield {
        "good": good,
        "broken": broken,
        "output_dir": out_dir,
        "cache_dir": cache_dir,
        "workdir": work,
    }
    for p in (good, broken):
        code = p.stop()
        if code not in (0, -signal.SIGINT, None):
            print(f"--- {p.name} exited with {code}; log:\n{p.log()[-4000:]}", file=sys.stderr)


@pytest.fixture(scope="session")
def good(nodes, ros_client):
    """The demo node, once it serves (its feature field is then in nodes['cache_dir'])."""
    wait_until_ready(ros_client, nodes["good"])
    return nodes["good"]


@pytest.fixture(scope="session")
def ros_client(interfaces):
    os.environ["ROS_DOMAIN_ID"] = str(DOMAIN_ID)  # read by rcl at init
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    client = RosClient()
    yield client
    client.close()
