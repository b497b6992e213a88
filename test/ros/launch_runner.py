"""`ros2 launch PACKAGE FILE NAME:=VALUE ...` (or `--file PATH NAME:=VALUE ...`) through
ros2launch.api, which is what the ros2 CLI's launch verb calls; exits with the launch
service's return code. The tests run it as a process and send it signals."""

from __future__ import annotations

import sys

from ros2launch.api import get_share_file_path_from_package, launch_a_launch_file


def main(argv: list[str]) -> int:
    if argv[0] == "--file":
        path, args = argv[1], argv[2:]
    else:
        path = get_share_file_path_from_package(package_name=argv[0], file_name=argv[1])
        args = argv[2:]
    return launch_a_launch_file(
        launch_file_path=path, launch_file_arguments=args, noninteractive=True
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
