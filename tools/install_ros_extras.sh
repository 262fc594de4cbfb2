#!/usr/bin/env bash
# Provide launch, launch_xml, launch_yaml, launch_ros and composition_interfaces
# for the launch-file tests where ROS 2 comes from Python wheels (which do not
# include them).
#
#   tools/install_ros_extras.sh VENV [EXTRAS_DIR]
#
# EXTRAS_DIR (default: $TOPREWARD_ROS_EXTRAS, else shared/ros-extras beside the
# checkout) holds the unmodified upstream source
# archives. Nothing happens when launch_ros already imports (a ROS 2 install
# provides it) or when no archives are found (the launch tests then skip and
# say why). Everything goes into one prefix, VENV/ros-extras, which
# tools/env.sh puts on the paths; the virtualenv's own packages stay as they
# are. A stamp named after a hash of the inputs makes a re-run a no-op, and a
# lock keeps two checkouts sharing the virtualenv from building at once.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:?usage: $0 VENV [EXTRAS_DIR]}"
case "$venv" in /*) ;; *) venv="$root/$venv" ;; esac
export TOPREWARD_VENV="$venv"  # the environment tools/env.sh sets up below
extras="${2:-${TOPREWARD_ROS_EXTRAS:-}}"
if [ -z "$extras" ]; then
  for candidate in "$root/../shared/ros-extras"; do
    if [ -d "$candidate" ]; then extras="$candidate"; break; fi
  done
fi
prefix="$venv/ros-extras"
archives=(launch-jazzy.tar.gz launch_ros-jazzy.tar.gz composition_interfaces-jazzy.tar.gz)

have_launch_ros() {
  # shellcheck disable=SC1091
  (set +u; source "$root/tools/env.sh" && python -c "import launch, launch_ros, composition_interfaces.srv") \
    >/dev/null 2>&1
}

if [ -z "$extras" ] || [ ! -d "$extras" ]; then
  if ! have_launch_ros; then
    echo "launch / launch_ros not installed and no ros-extras source folder found: the launch tests will skip"
  fi
  exit 0
fi
for archive in "${archives[@]}"; do
  if [ ! -f "$extras/$archive" ]; then
    echo "$extras/$archive missing: launch / launch_ros not installed, the launch tests will skip" >&2
    exit 0
  fi
done

stamp="$venv/.ros-extras-$(cat "${archives[@]/#/$extras/}" "$root/requirements/launch.txt" "${BASH_SOURCE[0]}" \
  | sha1sum | cut -c1-12)"
[ -f "$stamp" ] && exit 0

exec 9>"$venv/.ros-extras.lock"
flock 9
[ -f "$stamp" ] && exit 0
if [ ! -d "$prefix" ] && have_launch_ros; then
  exit 0  # a ROS 2 install provides launch_ros: nothing to build
fi

echo "installing launch, launch_ros and composition_interfaces from $extras into $prefix"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for archive in "${archives[@]}"; do
  tar -xzf "$extras/$archive" -C "$work"
done
rm -rf "$prefix"
mkdir -p "$prefix"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --prefix "$prefix")
{
  "${pip[@]}" -r "$root/requirements/launch.txt"
  "${pip[@]}" --no-build-isolation \
    "$work/launch/launch" "$work/launch/launch_xml" "$work/launch/launch_yaml" "$work/launch_ros/launch_ros"
} 2>&1 | { grep -v "is neither a file nor a directory" || true; }
# composition_interfaces is a message package: generated with the same rosidl
# wheels as this package's own messages.
# shellcheck disable=SC1091
(
  set +u; source "$root/tools/env.sh"
  cd "$work"
  colcon --log-base "$work/log" build --merge-install --base-paths "$work/rcl_interfaces/composition_interfaces" \
    --build-base "$work/build" --install-base "$prefix" \
    --cmake-args -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF
) > "$work/colcon.log" 2>&1 || { cat "$work/colcon.log" >&2; exit 1; }
# shellcheck disable=SC1091
if ! (set +u; source "$root/tools/env.sh" && python -c "import launch_ros, composition_interfaces.srv"); then
  echo "launch_ros was installed into $prefix but does not import" >&2
  exit 1
fi
rm -f "$venv"/.ros-extras-*
touch "$stamp"
