# topreward_ros: one Makefile for a fresh Debian 12 + Python 3.11 machine.
#   make demo   build everything, render a demo episode bag and score it
#   make test   build everything and run the whole test suite
#   make bench  measure cost targets and write BENCHMARKS.md
# Everything lives in a virtualenv (ROS 2 from Python wheels, torch, transformers) and
# in the colcon build/ and install/ trees; a warm re-run skips what is done.

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
# The virtualenv lives outside the checkout: CMake refuses exported include
# paths (numpy's, from the ROS wheels) that lie inside the package source dir.
TOPREWARD_VENV ?= $(HOME)/.cache/topreward_ros/venv
export TOPREWARD_VENV
VENV := $(TOPREWARD_VENV)
VPY := $(VENV)/bin/python
REQS := requirements/ros.txt requirements/ml.txt requirements/bag.txt requirements/scale.txt \
        requirements/test.txt
# The stamp names a hash of the requirements: another checkout with the same
# pins reuses the environment, a changed pin reinstalls.
DEPS_STAMP := $(VENV)/.deps-$(shell cat $(REQS) | sha1sum | cut -c1-12)
BUILD_STAMP := install/.topreward_ros-built
SOURCES := CMakeLists.txt package.xml $(wildcard msg/*.msg launch/* config/* scripts/*) \
           $(shell find topreward_ros -name '*.py' 2>/dev/null)
RUN := source tools/env.sh &&
PYTEST_ARGS ?=
# Test modules run in parallel worker processes, a whole module per worker
# (each module claims its own DDS domain, so they never see each other's
# graphs). Most graph tests wait on discovery, replay pacing or a node's
# timer, so more workers than cores still shortens the run. TEST_JOBS=0 runs
# everything in this one process.
TEST_JOBS ?= 3
MODEL ?=
BENCH_ARGS ?=

.PHONY: all venv build ros-extras test demo bench tiny-model clean distclean

all: build

venv: $(DEPS_STAMP)

$(DEPS_STAMP): $(REQS)
	@test -x $(VPY) || { mkdir -p $(dir $(VENV)) && $(PYTHON) -m venv $(VENV); } || { \
	  echo "could not create a virtualenv with $(PYTHON) (Debian/Ubuntu: sudo apt install python3-venv)" >&2; exit 1; }
	$(VPY) -m pip install --quiet --disable-pip-version-check $(addprefix -r ,$(REQS)) 2>&1 \
	  | { grep -v "is neither a file nor a directory" || true; }
	$(VPY) -m pip check >/dev/null || { $(VPY) -m pip check; exit 1; }
	$(VPY) tools/fix_ros_wheel_cmake.py $(VENV)
	@touch $@

build: $(BUILD_STAMP)

# --symlink-install: edits to Python sources take effect without a rebuild;
# a new module, message or launch file triggers this rule again.
$(BUILD_STAMP): $(DEPS_STAMP) $(SOURCES)
	@mkdir -p install
	$(RUN) flock install/.build-lock colcon build --symlink-install \
	  \
	  --cmake-args -DPython3_EXECUTABLE=$(abspath $(VPY)) -DBUILD_TESTING=OFF
	@touch $@

tiny-model: build
	$(RUN) python -m topreward_ros.tools.tiny_model .cache/tiny-qwen3-vl

# launch / launch_ros for the launch-file tests, built from the sources in
# shared/ros-extras beside the checkout when the ROS wheels lack them
# (ROS_EXTRAS=DIR names another folder); a no-op on a ROS 2 install.
ROS_EXTRAS ?=
ros-extras: $(DEPS_STAMP)
	tools/install_ros_extras.sh $(VENV) $(ROS_EXTRAS)

test: build ros-extras
	$(RUN) python -m pytest test $(if $(filter-out 0,$(TEST_JOBS)),-n $(TEST_JOBS) --dist loadfile,) $(PYTEST_ARGS)

demo: build
	$(RUN) python -m topreward_ros.demo $(if $(MODEL),--model $(MODEL),)

bench: build
	$(RUN) python bench/run_all.py $(BENCH_ARGS)

clean:
	rm -rf build install log .pytest_cache out

distclean: clean
	rm -rf $(VENV) .cache
