#!/usr/bin/env python3
"""Executable of the gsbp node (the node itself: :mod:`gsbp_ros.nodes.node`).

    ros2 run gsbp_ros gsbp_node --ros-args --params-file config/gsbp.yaml -p scene_path:=S
    python -m gsbp_ros.nodes.gsbp_node --ros-args --params-file config/gsbp.yaml -p ...
    ros2 launch gsbp_ros gsbp.launch.py scene_path:=S

SIGINT / SIGTERM at any moment end it with exit code 0: the handlers are installed before
the first heavy import (gsbp_ros.nodes.signals).
"""

from __future__ import annotations

import sys

from gsbp_ros.nodes import signals


def main(args: list[str] | None = None) -> int:
    signals.install()
    from gsbp_ros.nodes.node import run  # rclpy, numpy, messages: after the handlers

    return run(sys.argv if args is None else args)


if __name__ == "__main__":
    signals.exit_now(main())  # without the interpreter's teardown (see signals.exit_now)
