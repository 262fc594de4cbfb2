# Shared steps of the scripts that build ROS 2 pieces the Python wheels lack
# (tools/install_ros_extras.sh, tools/install_rosbag2_interfaces.sh): sourced,
# not run. Each such script builds into its own prefix under the virtualenv,
# VENV/<name>, which tools/env.sh puts on the paths, and follows one protocol:
#
# * extras_args VENV [EXTRAS_DIR]: the virtualenv (made absolute) and the folder
#   of unmodified upstream source archives (default: $TOPREWARD_ROS_EXTRAS, else
#   shared/ros-extras beside the checkout; empty when there is none);
# * extras_stamp NAME FILE...: a stamp named after a hash of the inputs (the
#   archives, requirement files, the calling script and this file), so that a
#   re-run with the same inputs is a no-op (the caller exits when it exists);
# * extras_lock NAME: a lock, so that two checkouts sharing the virtualenv never
#   build at once (the caller checks the stamp again once it holds it);
# * extras_stage NAME: a scratch folder ($work) and a staging prefix
#   ($staging) beside the real one, both removed on exit;
# * extras_swap NAME: the staged prefix swapped in whole, so that a test run
#   using the old one in the meantime keeps working;
# * extras_done NAME STAMP: older stamps removed, this one written.
#
# in_env runs a command in the environment the tests get (tools/env.sh), and
# colcon_messages generates a message package with the same rosidl wheels as
# the package's own messages.
# shellcheck shell=bash

extras_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

extras_args() {
  venv="${1:?usage: $0 VENV [EXTRAS_DIR]}"
  case "$venv" in /*) ;; *) venv="$extras_root/$venv" ;; esac
  export TOPREWARD_VENV="$venv"  # the environment tools/env.sh sets up
  extras="${2:-${TOPREWARD_ROS_EXTRAS:-}}"
  if [ -z "$extras" ] && [ -d "$extras_root/../shared/ros-extras" ]; then
    extras="$extras_root/../shared/ros-extras"
  fi
}

in_env() {
  # shellcheck disable=SC1091
  (set +u; source "$extras_root/tools/env.sh" && "$@")
}

extras_stamp() {
  local name="$1"
  shift
  echo "$venv/.$name-$(cat "$@" "$0" "${BASH_SOURCE[0]}" | sha1sum | cut -c1-12)"
}

extras_lock() {
  exec 9>"$venv/.$1.lock"
  flock 9
}

extras_stage() {
  work="$(mktemp -d)"
  staging="$venv/.$1-new.$$"
  # shellcheck disable=SC2064  # expanded now: the names are fixed
  trap "rm -rf '$work' '$staging' '$venv/.$1-old.$$'" EXIT
  rm -rf "$staging"
  mkdir -p "$staging"
}

colcon_messages() {
  local base_path="$1"
  (
    cd "$work"
    in_env colcon --log-base "$work/log" build --merge-install --base-paths "$base_path" \
      --build-base "$work/build" --install-base "$staging" \
      --cmake-args -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF
  ) > "$work/colcon.log" 2>&1 || { cat "$work/colcon.log" >&2; exit 1; }
}

extras_swap() {
  local prefix="$venv/$1"
  if [ -d "$prefix" ]; then
    mv "$prefix" "$venv/.$1-old.$$"
  fi
  mv "$staging" "$prefix"
  rm -rf "$venv/.$1-old.$$"
}

extras_done() {
  rm -f "$venv/.$1"-[0-9a-f]*
  touch "$2"
}
