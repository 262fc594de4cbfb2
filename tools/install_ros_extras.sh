#!/usr/bin/env bash
# Provide launch, launch_xml, launch_yaml, launch_ros and composition_interfaces
# for the launch-file tests, and the `ros2` command line (ros2cli with its pkg,
# run, node, service, param, topic and lifecycle verbs, ros2launch, and
# rosidl_runtime_py which they use) for the command-line tests, where ROS 2
# comes from Python wheels (which do not include them).
#
#   tools/install_ros_extras.sh VENV [EXTRAS_DIR]
#
# EXTRAS_DIR (default: $TOPREWARD_ROS_EXTRAS, else shared/ros-extras beside the
# checkout) holds the unmodified upstream source archives. Nothing happens
# when launch_ros and ros2cli already work (a ROS 2 install provides them) or
# when the launch archives are not found (the launch and command-line tests
# then skip and say why); without the ros2cli archives only launch is
# installed (the command-line tests skip). Everything goes into one prefix,
# VENV/ros-extras (the `ros2` command in its bin/), which tools/env.sh puts on
# the paths; the virtualenv's own packages stay as they are. A stamp named
# after a hash of the inputs makes a re-run a no-op, a lock keeps two
# checkouts sharing the virtualenv from building at once, and a new prefix is
# built beside the old one and swapped in, so a test run using the old one in
# the meantime keeps working (tools/ros_extras_lib.sh).
set -euo pipefail
# shellcheck source=tools/ros_extras_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/ros_extras_lib.sh"
extras_args "$@"
root="$extras_root"
name=ros-extras
prefix="$venv/$name"
launch_archives=(launch-jazzy.tar.gz launch_ros-jazzy.tar.gz composition_interfaces-jazzy.tar.gz)
cli_archives=(rosidl_runtime_py-jazzy.tar.gz ros2cli-jazzy.tar.gz ros2launch-jazzy.tar.gz)
cli_packages=(ros2cli ros2pkg ros2run ros2node ros2service ros2param ros2topic ros2lifecycle)

# What a ROS 2 install (or an earlier run) provides, in the environment tests get.
have_launch_ros() {
  in_env python -c "import launch, launch_ros, composition_interfaces.srv" >/dev/null 2>&1
}
ros2cli_runs() {
  python -c "import ros2cli, ros2launch, rosidl_runtime_py" && ros2 --help
}
have_ros2cli() {
  in_env ros2cli_runs >/dev/null 2>&1
}

if [ -z "$extras" ] || [ ! -d "$extras" ]; then
  if ! have_launch_ros || ! have_ros2cli; then
    echo "launch / launch_ros / ros2cli not installed and no ros-extras source folder found:" \
      "the launch and ros2 command-line tests will skip"
  fi
  exit 0
fi
for archive in "${launch_archives[@]}"; do
  if [ ! -f "$extras/$archive" ]; then
    echo "$extras/$archive missing: launch / launch_ros / ros2cli not installed," \
      "the launch and ros2 command-line tests will skip" >&2
    exit 0
  fi
done
with_cli=1
for archive in "${cli_archives[@]}"; do
  if [ ! -f "$extras/$archive" ]; then
    echo "$extras/$archive missing: the ros2 command line is not installed, its tests will skip" >&2
    with_cli=0
  fi
done
archives=("${launch_archives[@]}")
[ "$with_cli" = 1 ] && archives+=("${cli_archives[@]}")

stamp="$(extras_stamp "$name" "${archives[@]/#/$extras/}" "$root/requirements/launch.txt")"
[ -f "$stamp" ] && exit 0

extras_lock "$name"
[ -f "$stamp" ] && exit 0
if [ ! -d "$prefix" ] && have_launch_ros && have_ros2cli; then
  exit 0  # a ROS 2 install provides launch_ros and the ros2 command: nothing to build
fi

what="launch, launch_ros, composition_interfaces"
[ "$with_cli" = 1 ] && what="$what, rosidl_runtime_py, ros2cli and ros2launch"
echo "installing $what from $extras into $prefix"
extras_stage "$name"
for archive in "${archives[@]}"; do
  tar -xzf "$extras/$archive" -C "$work"
done
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --prefix "$staging")
sources=("$work/launch/launch" "$work/launch/launch_xml" "$work/launch/launch_yaml" "$work/launch_ros/launch_ros")
if [ "$with_cli" = 1 ]; then
  sources+=("$work/rosidl_runtime_py" "${cli_packages[@]/#/$work/ros2cli/}" "$work/launch_ros/ros2launch")
fi
{
  "${pip[@]}" -r "$root/requirements/launch.txt"
  "${pip[@]}" --no-build-isolation "${sources[@]}"
} 2>&1 | { grep -v "is neither a file nor a directory" || true; }
# composition_interfaces is a message package.
colcon_messages "$work/rcl_interfaces/composition_interfaces"
extras_swap "$name"
if ! in_env python -c "import launch_ros, composition_interfaces.srv"; then
  echo "launch_ros was installed into $prefix but does not import" >&2
  exit 1
fi
if [ "$with_cli" = 1 ] && ! have_ros2cli; then
  echo "ros2cli was installed into $prefix but \`ros2 --help\` fails:" >&2
  in_env ros2 --help >&2 || true
  exit 1
fi
extras_done "$name" "$stamp"
