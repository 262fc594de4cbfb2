# Environment for running topreward_ros from this checkout: the virtualenv
# (ROS 2 from Python wheels, torch, transformers) as the ROS underlay, and the
# colcon install tree (messages, node, launch files) as the overlay.
# Usage: source tools/env.sh
# ROS_DISTRO (jazzy, the default, or kilted) picks the virtualenv and the
# install tree the Makefile built for that distro; TOPREWARD_VENV and
# TOPREWARD_INSTALL name others.
_topreward_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROS_DISTRO="${ROS_DISTRO:-jazzy}"
_topreward_venv="${TOPREWARD_VENV:-$HOME/.cache/topreward_ros/venv-$ROS_DISTRO}"
case "$_topreward_venv" in /*) ;; *) _topreward_venv="$_topreward_root/$_topreward_venv" ;; esac
if [ "$ROS_DISTRO" = jazzy ]; then _topreward_install="${TOPREWARD_INSTALL:-install}"
else _topreward_install="${TOPREWARD_INSTALL:-install-$ROS_DISTRO}"; fi
case "$_topreward_install" in /*) ;; *) _topreward_install="$_topreward_root/$_topreward_install" ;; esac
# The tests and tools find the package's install tree here.
export TOPREWARD_INSTALL="$_topreward_install"
# shellcheck disable=SC1091
source "$_topreward_venv/bin/activate"
export AMENT_PREFIX_PATH="$_topreward_venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
# launch / launch_ros / composition_interfaces and the ros2 command line built
# from source where the wheels lack them (tools/install_ros_extras.sh); a ROS 2 install has its own.
if [ -f "$_topreward_venv/ros-extras/local_setup.bash" ]; then
  # shellcheck disable=SC1091
  COLCON_CURRENT_PREFIX="$_topreward_venv/ros-extras" source "$_topreward_venv/ros-extras/local_setup.bash"
  for _topreward_site in "$_topreward_venv"/ros-extras/lib/python3*/site-packages; do
    case ":${PYTHONPATH:-}:" in *":$_topreward_site:"*) ;; *)
      export PYTHONPATH="$_topreward_site${PYTHONPATH:+:$PYTHONPATH}" ;;
    esac
  done
  unset _topreward_site
  # The `ros2` command (ros2cli) where it was built there too.
  if [ -d "$_topreward_venv/ros-extras/bin" ]; then
    case ":$PATH:" in *":$_topreward_venv/ros-extras/bin:"*) ;; *)
      export PATH="$_topreward_venv/ros-extras/bin:$PATH" ;;
    esac
  fi
fi
# rosbag2_interfaces (the recorder's service types) likewise (tools/install_rosbag2_interfaces.sh).
if [ -f "$_topreward_venv/ros-extras-rosbag2/local_setup.bash" ]; then
  # shellcheck disable=SC1091
  COLCON_CURRENT_PREFIX="$_topreward_venv/ros-extras-rosbag2" \
    source "$_topreward_venv/ros-extras-rosbag2/local_setup.bash"
  for _topreward_site in "$_topreward_venv"/ros-extras-rosbag2/lib/python3*/site-packages; do
    case ":${PYTHONPATH:-}:" in *":$_topreward_site:"*) ;; *)
      export PYTHONPATH="$_topreward_site${PYTHONPATH:+:$PYTHONPATH}" ;;
    esac
  done
  unset _topreward_site
fi
if [ -f "$_topreward_install/local_setup.bash" ]; then
  # shellcheck disable=SC1091
  COLCON_CURRENT_PREFIX="$_topreward_install" source "$_topreward_install/local_setup.bash"
fi
# The package's executables (scorer_node, managed_scorer_node, topreward, stop_on_success)
# without `ros2 run`.
export PATH="$_topreward_install/topreward_ros/lib/topreward_ros:$PATH"
# DDS discovery keeps ROS 2's default range (the whole subnet), so cameras on
# other machines are seen; the test suite keeps its own graphs on this machine.
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
unset _topreward_root _topreward_venv _topreward_install
