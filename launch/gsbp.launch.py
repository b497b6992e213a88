"""Launch the gsbp node, and RViz with config/gsbp.rviz when rviz:=true.

    ros2 launch gsbp_ros gsbp.launch.py scene_path:=/data/scene.ply
    ros2 launch gsbp_ros gsbp.launch.py scene_path:=/data/scene.ply \
        cameras_path:=/data/sparse/0 device:=cuda rviz:=true
    ros2 launch gsbp_ros gsbp.launch.py params_file:=/robot/gsbp.yaml

Every parameter comes from params_file (default: the installed config/gsbp.yaml). The
arguments scene_path, cameras_path and device override it when they differ from their
defaults, which equal config/gsbp.yaml (test/ros/test_params.py checks that).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

# Launch arguments that are node parameters, with the defaults of config/gsbp.yaml.
PARAM_ARGUMENTS = {
    "scene_path": "",
    "cameras_path": "",
    "device": "auto",
}


def _gsbp_node(context, *args, **kwargs):
    overrides = {}
    for name, default in PARAM_ARGUMENTS.items():
        value = LaunchConfiguration(name).perform(context)
        if value != default:
            overrides[name] = value
    parameters = [LaunchConfiguration("params_file").perform(context)]
    if overrides:
        parameters.append(overrides)
    return [
        Node(
            package="gsbp_ros",
            executable="gsbp_node",
            name="gsbp",
            output="screen",
            emulate_tty=True,
            parameters=parameters,
        )
    ]


def generate_launch_description():
    share = get_package_share_directory("gsbp_ros")
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "scene_path",
                default_value="",
                description="3DGS scene: Inria .ply or gsplat checkpoint",
            ),
            DeclareLaunchArgument(
                "cameras_path",
                default_value="",
                description="COLMAP sparse/0 or transforms.json; empty = generated orbit views",
            ),
            DeclareLaunchArgument(
                "device",
                default_value="auto",
                description="Torch device: auto, cpu or cuda",
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value=os.path.join(share, "config", "gsbp.yaml"),
                description="Parameter file of the node",
            ),
            DeclareLaunchArgument(
                "rviz",
                default_value="false",
                description="Start RViz with config/gsbp.rviz",
            ),
            OpaqueFunction(function=_gsbp_node),
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                arguments=["-d", os.path.join(share, "config", "gsbp.rviz")],
                condition=IfCondition(LaunchConfiguration("rviz")),
                output="screen",
            ),
        ]
    )
