"""Run a package's launch file the way ``ros2 launch PACKAGE FILE name:=value ...`` does.

ros2cli (the ``ros2`` command) is not installed everywhere this package is
tested, but launch and launch_ros are: this script does the few steps of
``ros2 launch`` itself (find the file in the package's installed share
directory, pass ``name:=value`` arguments to an IncludeLaunchDescription,
run a LaunchService that handles SIGINT) so a test can start it as a child
process and signal it like a user at a terminal.

    python test/support/launch_runner.py topreward_ros scorer.launch.py namespace:=robot1
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str]) -> int:
    from ament_index_python.packages import get_package_share_directory
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import AnyLaunchDescriptionSource

    from launch import LaunchDescription, LaunchService

    if len(argv) < 2:
        print("usage: launch_runner.py PACKAGE LAUNCH_FILE [name:=value ...]", file=sys.stderr)
        return 2
    package, file_name, *arguments = argv
    path = os.path.join(get_package_share_directory(package), "launch", file_name)
    parsed = []
    for argument in arguments:
        name, sep, value = argument.partition(":=")
        if not sep:
            print(f"launch arguments take the form name:=value, got {argument!r}", file=sys.stderr)
            return 2
        parsed.append((name, value))
    service = LaunchService(argv=arguments, noninteractive=True)
    service.include_launch_description(
        LaunchDescription([IncludeLaunchDescription(AnyLaunchDescriptionSource(path), launch_arguments=parsed)])
    )
    return service.run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
