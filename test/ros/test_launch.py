"""launch/gsbp.launch.py run for real: the ROS 2 launch system (ros2launch.api, what `ros2
launch` calls) from ../shared/ros2_launch, installed into the venv by scripts/setup.sh, starts
the installed gsbp_node; this test talks to it over DDS and sends the launch signals.

Skipped, saying why, only where ../shared/ros2_launch does not exist (a robot workstation has
`ros2 launch` itself); where it exists, the launch system must be installed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
from pathlib import Path

import pytest
import yaml
from ros_support import (
    INSTALL,
    PYTHON,
    ROOT,
    LoggedProcess,
    all_parameters,
    demo_node_params,
    descendants,
    running,
    wait_for,
    wait_until_ready,
)

pytestmark = pytest.mark.ros

LAUNCH_SRC = Path(os.environ.get("GSBP_ROS2_LAUNCH_SRC", ROOT.parent / "shared" / "ros2_launch"))
RUNNER = Path(__file__).with_name("launch_runner.py")
RVIZ_WARNING = "rviz:=true but RViz is not installed (no package rviz2)"


@pytest.fixture(scope="module")
def launch_env(ros_env) -> dict[str, str]:
    if not (LAUNCH_SRC / "launch_ros").is_dir():
        pytest.skip(
            f"no ROS 2 launch system sources at {LAUNCH_SRC} (../shared/ros2_launch): the "
            "launch file is not run here; with ROS 2 from apt use `ros2 launch`"
        )
    missing = [m for m in ("launch", "launch_ros", "ros2launch") if not importlib.util.find_spec(m)]
    assert not missing, (
        f"{LAUNCH_SRC} exists but {missing} are not installed in the venv: run "
        "scripts/setup.sh (it calls scripts/install_ros2_launch.sh)"
    )
    assert (INSTALL / "composition_interfaces").is_dir(), (
        "composition_interfaces is not built: run scripts/build_ros.sh"
    )
    return ros_env


class Launch(LoggedProcess):
    """One launch as its own process group (a terminal's Ctrl-C reaches the whole group)."""

    def __init__(self, env, workdir: Path, name: str, args: list[str], *, file=None):
        self.name = name
        self.fqn = ""
        self.log_path = workdir / f"{name}.log"
        target = ["--file", str(file)] if file else ["gsbp_ros", "gsbp.launch.py"]
        # its own session: a terminal's Ctrl-C reaches the whole group
        self._start([PYTHON, str(RUNNER), *target, *args], env, workdir, start_new_session=True)

    def interrupt(self, *, whole_group: bool) -> int:
        """SIGINT to the launch process (or to its whole group, as Ctrl-C in a terminal);
        its exit code. launch escalates to SIGTERM / SIGKILL after 5 s each."""
        if whole_group:
            os.killpg(self.proc.pid, signal.SIGINT)
        else:
            self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=60)
        self._log.close()
        return code

    def kill(self) -> None:
        """Clean-up after a failed test: nothing of this launch may survive the test."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        if not self._log.closed:
            self._log.close()


def _write_params(path: Path, values: dict) -> Path:
    """A ROS 2 params file (under /**) with ``values`` ("a.b" names nested)."""
    tree: dict = {}
    for name, value in values.items():
        *parents, leaf = name.split(".")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": tree}}))
    return path


def _assert_all_gone(pids: list[int]) -> None:
    wait_for(lambda: not running(pids), 30, f"processes {running(pids)} to end")


def test_arguments_reach_the_node_and_sigint_ends_everything(
    launch_env, good, nodes, demo, ros_client, tmp_path
):
    """scene_path, device (= its default, against a params file saying cuda), params_file,
    namespace, log_level and rviz (not installed here) reach the node; a service call
    succeeds; SIGINT to the launch ends everything with exit code 0."""
    values = demo_node_params(demo, tmp_path / "output", nodes["cache_dir"])
    scene = values.pop("scene_path")
    values["device"] = "cuda"  # no CUDA here: configure would fail if device:=auto were lost
    params_file = _write_params(tmp_path / "robot.yaml", values)
    ns = f"gsbp_launch_{os.getpid()}"
    args = [
        f"scene_path:={scene}",
        "device:=auto",
        f"params_file:={params_file}",
        f"namespace:={ns}",
        "log_level:=warn",
        "rviz:=true",
    ]
    launch = Launch(launch_env, tmp_path, "launch_args", args)
    launch.fqn = f"/{ns}/gsbp"
    try:
        res = wait_until_ready(ros_client, launch)
        assert res.success, res.message
        got = all_parameters(ros_client, launch.fqn)
        assert got["device"] == "auto"
        assert got["scene_path"] == scene
        assert got["cameras_path"] == values["cameras_path"]  # from the params file
        assert got["label_names"] == values["label_names"]
        assert got["autostart"] is True  # not given: the params file's (default) value
        pids = descendants(launch.proc.pid)
        assert pids, "the launch runs no process"
        code = launch.interrupt(whole_group=False)
    finally:
        launch.kill()
    out = launch.log()
    assert code == 0, out[-4000:]
    _assert_all_gone(pids)
    assert out.count(RVIZ_WARNING) == 1, out[-4000:]
    assert "Traceback" not in out, out[-4000:]
    # log_level:=warn: the node's warnings (inactive sources) show, its info lines do not.
    assert "[WARN]" in out and "feature source 'dinov2' inactive" in out
    assert "configuring: scene" not in out and "services up" not in out


def test_ctrl_c_during_start_up_and_an_empty_scene_path(launch_env, demo, ros_client, tmp_path):
    """Two launches: one includes gsbp.launch.py with scene_path '' (over a params file that
    names a scene): the node stays up and says "scene_path is not set"; the other is
    interrupted while back-projecting. Ctrl-C (SIGINT to the process group) ends both with
    exit code 0, no traceback and no process left."""
    from gsbp_ros.srv import Segment

    named = _write_params(
        tmp_path / "named.yaml", {"scene_path": str(demo["dir"] / "scene.ply"), "device": "cpu"}
    )
    ns_empty, ns_slow = f"gsbp_empty_{os.getpid()}", f"gsbp_slow_{os.getpid()}"
    parent = tmp_path / "robot.launch.py"
    arguments = {"scene_path": "", "params_file": str(named), "namespace": ns_empty}
    parent.write_text(
        "import os\n"
        "from ament_index_python.packages import get_package_share_directory\n"
        "from launch import LaunchDescription\n"
        "from launch.actions import IncludeLaunchDescription\n"
        "from launch.launch_description_sources import PythonLaunchDescriptionSource\n\n\n"
        "def generate_launch_description():\n"
        "    share = get_package_share_directory('gsbp_ros')\n"
        "    source = PythonLaunchDescriptionSource(\n"
        "        os.path.join(share, 'launch', 'gsbp.launch.py'))\n"
        f"    arguments = {arguments!r}\n"
        "    return LaunchDescription([IncludeLaunchDescription(\n"
        "        source, launch_arguments=arguments.items())])\n"
    )
    maps = tmp_path / "no_label_maps"
    maps.mkdir()
    slow = _write_params(
        tmp_path / "slow.yaml",
        {
            "cameras_path": "orbit",  # the demo folder's own cameras would be found otherwise
            "device": "cpu",
            "feature_sources": ["labels"],
            "label_maps_dir": str(maps),
            "label_names": demo["names"]["objects"],
            "num_generated_views": 5000,
            "generated_view_size": 128,
        },
    )
    empty = Launch(launch_env, tmp_path, "launch_empty", [], file=parent)
    empty.fqn = f"/{ns_empty}/gsbp"
    projecting = Launch(
        launch_env,
        tmp_path,
        "launch_slow",
        [
            f"scene_path:={demo['dir'] / 'scene.ply'}",
            f"params_file:={slow}",
            f"namespace:={ns_slow}",
        ],
    )
    try:

        def failed():
            req = Segment.Request(positive=["mug"])
            res = ros_client.call(Segment, f"{empty.fqn}/segment", req, timeout=120)
            return res if "start-up failed" in res.message else None

        res = wait_for(failed, 120, "the empty scene_path's failure")
        assert res.message.startswith(
            "not ready: unconfigured: start-up failed: scene_path is not set: "
        ), res.message
        assert all_parameters(ros_client, empty.fqn)["scene_path"] == ""
        projecting.wait_for_log("back-projecting: ", timeout=180)
        pids = descendants(empty.proc.pid) + descendants(projecting.proc.pid)
        codes = [launch.interrupt(whole_group=True) for launch in (empty, projecting)]
    finally:
        empty.kill()
        projecting.kill()
    for launch, code in zip((empty, projecting), codes):
        out = launch.log()
        assert code == 0, f"{launch.name}:\n{out[-4000:]}"
        assert "Traceback" not in out, f"{launch.name}:\n{out[-4000:]}"
    _assert_all_gone(pids)


def test_bad_launch_arguments_start_nothing(launch_env, tmp_path):
    """A value the launch file cannot use fails the launch before any process starts."""
    launch = Launch(launch_env, tmp_path, "launch_bad", ["scene_path:=x.ply", "rviz:=maybe"])
    try:
        code = launch.proc.wait(timeout=120)
    finally:
        launch.kill()
    out = launch.log()
    assert code != 0
    assert "launch argument rviz must be true or false, got 'maybe'" in out, out[-3000:]
    assert "process started" not in out, out[-3000:]


def test_launch_argument_values(launch_env):
    """How the launch file reads its arguments: booleans as ROS users write them, the quoted
    empty string as empty (`ros2 launch` rejects `name:=`)."""
    spec = importlib.util.spec_from_file_location(
        "gsbp_launch_file",
        INSTALL / "gsbp_ros" / "share" / "gsbp_ros" / "launch" / "gsbp.launch.py",
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for text in ("true", "True", "yes", "1", "on"):
        assert module._flag("rviz", text) is True
    for text in ("false", "no", "0", "off"):
        assert module._flag("rviz", text) is False
    with pytest.raises(ValueError, match="rviz must be true or false, got 'maybe'"):
        module._flag("rviz", "maybe")
    assert module._parameter_value("scene_path", "''").value == ""
    assert module._parameter_value("scene_path", '""').value == ""
    assert module._parameter_value("scene_path", "2024").value == "2024"  # a path, not a number
    assert module._parameter_value("autostart", "no").value is False
