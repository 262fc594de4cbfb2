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
# virtualenv from building at once; the new prefix is swapped in whole.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:?usage: $0 VENV [EXTRAS_DIR]}"
case "$venv" in /*) ;; *) venv="$root/$venv" ;; esac
export TOPREWARD_VENV="$venv"  # the environment tools/env.sh sets up below
extras="${2:-${TOPREWARD_ROS_EXTRAS:-}}"
if [ -z "$extras" ] && [ -d "$root/../shared/ros-extras" ]; then
  extras="$root/../shared/ros-extras"
fi
prefix="$venv/ros-extras-rosbag2"
archive_name=rosbag2_interfaces-jazzy.tar.gz

have_rosbag2_interfaces() {
  # shellcheck disable=SC1091
  (set +u; source "$root/tools/env.sh" && python -c "import rosbag2_interfaces.srv") >/dev/null 2>&1
}

if [ -z "$extras" ] || [ ! -f "$extras/$archive_name" ]; then
  if ! have_rosbag2_interfaces; then
    echo "rosbag2_interfaces not installed and no ${extras:-ros-extras}/$archive_name found:" \
      "the stop_on_success tests with the recorder's service types will skip"
  fi
  exit 0
fi
stamp="$venv/.ros-extras-rosbag2-$(cat "$extras/$archive_name" "${BASH_SOURCE[0]}" | sha1sum | cut -c1-12)"
[ -f "$stamp" ] && exit 0

exec 9>"$venv/.ros-extras-rosbag2.lock"
flock 9
[ -f "$stamp" ] && exit 0
if [ ! -d "$prefix" ] && have_rosbag2_interfaces; then
  exit 0  # a ROS 2 install provides it: nothing to build
fi

echo "installing rosbag2_interfaces from $extras into $prefix"
work="$(mktemp -d)"
staging="$venv/.ros-extras-rosbag2-new.$$"
trap 'rm -rf "$work" "$staging" "$venv/.ros-extras-rosbag2-old.$$"' EXIT
tar -xzf "$extras/$archive_name" -C "$work"
rm -rf "$staging"
mkdir -p "$staging"
# shellcheck disable=SC1091
(
  set +u; source "$root/tools/env.sh"
  cd "$work"
  colcon --log-base "$work/log" build --merge-install --base-paths "$work/rosbag2_interfaces" \
    --build-base "$work/build" --install-base "$staging" \
    --cmake-args -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF
) > "$work/colcon.log" 2>&1 || { cat "$work/colcon.log" >&2; exit 1; }
if [ -d "$prefix" ]; then
  mv "$prefix" "$venv/.ros-extras-rosbag2-old.$$"
fi
mv "$staging" "$prefix"
rm -rf "$venv/.ros-extras-rosbag2-old.$$"
if ! have_rosbag2_interfaces; then
  echo "rosbag2_interfaces was installed into $prefix but does not import:" >&2
  # shellcheck disable=SC1091
  (set +u; source "$root/tools/env.sh" && python -c "import rosbag2_interfaces.srv") >&2 || true
  exit 1
fi
rm -f "$venv"/.ros-extras-rosbag2-[0-9a-f]*
touch "$stamp"
