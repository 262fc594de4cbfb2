#!/usr/bin/env bash
# Provide rosbag2_interfaces (the service types of `ros2 bag record`: SplitBagfile,
# Pause, Resume, IsPaused, Snapshot) for the stop_on_success tests, where ROS 2
# comes from Python wheels (which do not include them).
#
#   tools/install_rosbag2_interfaces.sh VENV [EXTRAS_DIR]
#
# EXTRAS_DIR (default: $TOPREWARD_ROS_EXTRAS, else shared/ros-extras beside the
# checkout) holds the unmodified upstream archive rosbag2_interfaces-jazzy.tar.gz.
# The messages are generated with colcon from the same rosidl wheels as the
# package's own messages (~40 s), into their own prefix, VENV/ros-extras-rosbag2,
# which tools/env.sh puts on the paths. Nothing happens when rosbag2_interfaces
# already imports (a ROS 2 install provides it) or when the archive is not found
# (the tests that need it then skip and say why). A stamp named after a hash of
# the inputs makes a re-run a no-op; a lock keeps two checkouts sharing the
# virtualenv from building at once; the new prefix is swapped in whole
# (tools/ros_extras_lib.sh).
set -euo pipefail
# shellcheck source=tools/ros_extras_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/ros_extras_lib.sh"
extras_args "$@"
name=ros-extras-rosbag2
archive_name=rosbag2_interfaces-jazzy.tar.gz

have_rosbag2_interfaces() {
  in_env python -c "import rosbag2_interfaces.srv" >/dev/null 2>&1
}

if [ -z "$extras" ] || [ ! -f "$extras/$archive_name" ]; then
  if ! have_rosbag2_interfaces; then
    echo "rosbag2_interfaces not installed and no ${extras:-ros-extras}/$archive_name found:" \
      "the stop_on_success tests with the recorder's service types will skip"
  fi
  exit 0
fi
stamp="$(extras_stamp "$name" "$extras/$archive_name")"
[ -f "$stamp" ] && exit 0

extras_lock "$name"
[ -f "$stamp" ] && exit 0
if [ ! -d "$venv/$name" ] && have_rosbag2_interfaces; then
  exit 0  # a ROS 2 install provides it: nothing to build
fi

echo "installing rosbag2_interfaces from $extras into $venv/$name"
extras_stage "$name"
tar -xzf "$extras/$archive_name" -C "$work"
colcon_messages "$work/rosbag2_interfaces"
extras_swap "$name"
if ! have_rosbag2_interfaces; then
  echo "rosbag2_interfaces was installed into $venv/$name but does not import:" >&2
  in_env python -c "import rosbag2_interfaces.srv" >&2 || true
  exit 1
fi
extras_done "$name" "$stamp"
