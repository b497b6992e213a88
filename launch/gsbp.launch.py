"""Launch the gsbp node (a lifecycle node that configures and activates itself unless
autostart:=false), and RViz with config/gsbp.rviz when rviz:=true.

    ros2 launch gsbp_ros gsbp.launch.py scene_path:=/data/scene.ply
    ros2 launch gsbp_ros gsbp.launch.py scene_path:=/data/scene.ply \
        cameras_path:=/data/sparse/0 device:=cuda rviz:=true
    ros2 launch gsbp_ros gsbp.launch.py params_file:=/robot/gsbp.yaml namespace:=arm \
        log_level:=debug

Parameters come from params_file (default: the installed config/gsbp.yaml). The arguments
named like node parameters (PARAM_ARGUMENTS) override it whenever they are given, also with
a value equal to a default; when they are not given, the params file's value holds (their
default is the marker FROM_PARAMS_FILE). ``ros2 launch`` rejects an empty ``name:=``: give
an empty string as ``scene_path:="''"`` (or '' from an including launch file).

rviz:=true where RViz is not installed logs one warning and runs the node alone. The node's
exit ends the launch (RViz included), so nothing is left behind.
"""

import os
import tempfile
from pathlib import Path

from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.logging import get_logger
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from gsbp_ros.nodes.params import PARAMS_BY_NAME

#: Launch arguments that set node parameters of the same name (see the module docstring).
PARAM_ARGUMENTS = ("scene_path", "cameras_path", "device", "autostart")
#: Default of those arguments: "not given, keep the params file's value".
FROM_PARAMS_FILE = "(from params_file)"
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _flag(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value not in _TRUE + _FALSE:
        raise ValueError(f"launch argument {name} must be true or false, got {text!r}")
    return value in _TRUE


def _parameter_value(name: str, text: str) -> ParameterValue:
    """The node parameter ``name`` from its launch argument's text (typed as the table says;
    the quoted empty strings ``''`` and ``""`` are the empty string)."""
    kind = PARAMS_BY_NAME[name].type
    if kind == "bool":
        return ParameterValue(_flag(name, text), value_type=bool)
    if text in ("''", '""'):
        text = ""
    return ParameterValue(text, value_type=str)


def _namespaced_rviz_config(config: str, namespace: str) -> str:
    """config/gsbp.rviz with the node's topics (/gsbp/...) moved into ``namespace``."""
    ns = "/" + namespace.strip("/")
    text = Path(config).read_text().replace("Value: /gsbp/", f"Value: {ns}/gsbp/")
    path = Path(tempfile.gettempdir()) / f"gsbp{ns.replace('/', '_')}.rviz"
    path.write_text(text)
    return str(path)


def _actions(context, *args, **kwargs):
    """The node (and RViz): everything is checked before anything starts."""
    names = (*PARAM_ARGUMENTS, "params_file", "namespace", "log_level", "rviz")
    arg = {name: LaunchConfiguration(name).perform(context) for name in names}
    params_file = arg["params_file"]
    if not os.path.isfile(params_file):
        raise RuntimeError(f"params_file {params_file!r} does not exist")
    level = arg["log_level"].strip().lower()
    if level not in LOG_LEVELS:
        raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    overrides = {
        name: _parameter_value(name, arg[name])
        for name in PARAM_ARGUMENTS
        if arg[name] != FROM_PARAMS_FILE
    }
    namespace = arg["namespace"].strip("/")
    actions = [
        Node(
            package="gsbp_ros",
            executable="gsbp_node",
            name="gsbp",
            namespace=namespace,
            output="screen",
            emulate_tty=True,
            parameters=[params_file, overrides] if overrides else [params_file],
            ros_arguments=["--log-level", level],
            on_exit=Shutdown(reason="gsbp_node exited"),
        )
    ]
    if _flag("rviz", arg["rviz"]):
        try:
            get_package_share_directory("rviz2")
        except PackageNotFoundError:
            get_logger("gsbp.launch").warning(
                "rviz:=true but RViz is not installed (no package rviz2): running the node "
                "without it; install it with: sudo apt install ros-$ROS_DISTRO-rviz2"
            )
            return actions
        config = os.path.join(get_package_share_directory("gsbp_ros"), "config", "gsbp.rviz")
        if namespace:
            config = _namespaced_rviz_config(config, namespace)
        actions.append(
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                namespace=namespace,
                arguments=["-d", config],
                output="screen",
            )
        )
    return actions


def generate_launch_description():
    share = get_package_share_directory("gsbp_ros")
    parameter_arguments = [
        DeclareLaunchArgument(
            name,
            default_value=FROM_PARAMS_FILE,
            description=f"Node parameter {name}: {PARAMS_BY_NAME[name].description} "
            f"Not given: the params_file's value ({PARAMS_BY_NAME[name].default!r} in "
            "config/gsbp.yaml).",
        )
        for name in PARAM_ARGUMENTS
    ]
    return LaunchDescription(
        [
            *parameter_arguments,
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(share, "config", "gsbp.yaml"),
                description="Parameter file of the node (copy config/gsbp.yaml and edit it)",
            ),
            DeclareLaunchArgument(
                "namespace",
                default_value="",
                description="Namespace of the node (and RViz): /<namespace>/gsbp/...",
            ),
            DeclareLaunchArgument(
                "log_level",
                default_value="info",
                description=f"Log level of the node: {', '.join(LOG_LEVELS)}",
            ),
            DeclareLaunchArgument(
                "rviz",
                default_value="false",
                description="Start RViz with config/gsbp.rviz (true/false); without RViz "
                "installed: one warning and the node alone",
            ),
            OpaqueFunction(function=_actions),
        ]
    )
