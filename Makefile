# topreward_ros: one Makefile for a fresh Debian 12 + Python 3.11 machine.
#   make demo   build everything, render a demo episode bag and score it
#   make test   build everything and run the whole test suite
#   make bench  measure cost targets and write BENCHMARKS.md
#   make bench-gpu  measure on a CUDA GPU (random 2B/4B/8B models) and write BENCHMARKS.md's GPU section
#   make test-soak  run test modules many times (alone or beside CPU burners), count failures
# Everything lives in a virtualenv (ROS 2 from Python wheels, torch, transformers) and
# in the colcon build/ and install/ trees; a warm re-run skips what is done.

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
# The ROS 2 distribution the wheels come from: jazzy (the LTS, the default) or
# kilted. Each has its own virtualenv and its own colcon trees, so both can be
# built side by side: `make test ROS_DISTRO=kilted`.
DEFAULT_ROS_DISTRO := jazzy
ROS_DISTRO ?= $(DEFAULT_ROS_DISTRO)
ROS_REQS_jazzy := requirements/ros-jazzy.txt
ROS_REQS_kilted := requirements/ros.txt
ROS_REQS := $(ROS_REQS_$(ROS_DISTRO))
ifeq ($(ROS_REQS),)
$(error ROS_DISTRO=$(ROS_DISTRO) is not supported here: use jazzy or kilted)
endif
export ROS_DISTRO
# The virtualenv lives outside the checkout: CMake refuses exported include
# paths (numpy's, from the ROS wheels) that lie inside the package source dir.
TOPREWARD_VENV ?= $(HOME)/.cache/topreward_ros/venv-$(ROS_DISTRO)
export TOPREWARD_VENV
# colcon's trees: build/ install/ log/ for the default distro, build-DISTRO/
# install-DISTRO/ log-DISTRO/ for another (tools/env.sh finds the same one).
TREE_SUFFIX := $(if $(filter $(DEFAULT_ROS_DISTRO),$(ROS_DISTRO)),,-$(ROS_DISTRO))
TOPREWARD_INSTALL ?= install$(TREE_SUFFIX)
export TOPREWARD_INSTALL
INSTALL := $(TOPREWARD_INSTALL)
BUILD_BASE := build$(TREE_SUFFIX)
LOG_BASE := log$(TREE_SUFFIX)
VENV := $(TOPREWARD_VENV)
VPY := $(VENV)/bin/python
REQS := $(ROS_REQS) requirements/ml.txt requirements/bag.txt requirements/scale.txt \
        requirements/test.txt
# The stamp names a hash of the requirements: another checkout with the same
# pins reuses the environment, a changed pin reinstalls.
DEPS_STAMP := $(VENV)/.deps-$(shell cat $(REQS) | sha1sum | cut -c1-12)
BUILD_STAMP := $(INSTALL)/.topreward_ros-built
SOURCES := CMakeLists.txt package.xml $(wildcard msg/*.msg launch/* config/* scripts/*) \
           $(shell find topreward_ros -name '*.py' 2>/dev/null)
RUN := source tools/env.sh &&
PYTEST_ARGS ?=
# What `make test` runs: the whole suite, or the modules named (TEST_PATHS="test/a.py test/b.py").
TEST_PATHS ?= test
# Test modules run in parallel worker processes, a whole module per worker
# (each module claims its own DDS domain, so they never see each other's
# graphs). Most graph tests wait on discovery, replay pacing or a node's
# timer, so more workers than cores still shortens the run. TEST_JOBS=0 runs
# everything in this one process.
TEST_JOBS ?= 3
MODEL ?=
BENCH_ARGS ?=
# make test-soak: each module run RUNS times in fresh pytest processes, beside BURNERS busy
# processes (tools/soak_tests.py), SOAK_JOBS modules at once; MODULES empty = every module
# with graph tests.
MODULES ?=
RUNS ?= 20
BURNERS ?= 0
SOAK_JOBS ?= 1

.PHONY: all venv build ros-extras test test-soak demo bench bench-gpu tiny-model clean distclean

all: build

venv: $(DEPS_STAMP)

$(DEPS_STAMP): $(REQS)
	@test -x $(VPY) || { mkdir -p $(dir $(VENV)) && $(PYTHON) -m venv $(VENV); } || { \
	  echo "could not create a virtualenv with $(PYTHON) (Debian/Ubuntu: sudo apt install python3-venv)" >&2; exit 1; }
	$(VPY) -m pip install --quiet --disable-pip-version-check $(addprefix -r ,$(REQS)) 2>&1 \
	  | { grep -v "is neither a file nor a directory" || true; }
	ROS_DISTRO=$(ROS_DISTRO) $(VPY) tools/check_requirements.py
	$(VPY) tools/fix_ros_wheel_cmake.py $(VENV)
	@touch $@

build: $(BUILD_STAMP)

# --symlink-install: edits to Python sources take effect without a rebuild;
# a new module, message or launch file triggers this rule again.
$(BUILD_STAMP): $(DEPS_STAMP) $(SOURCES)
	@# Trees built against another virtualenv (another distro, an older layout)
	@# link other ROS libraries: start them afresh.
	@if [ -f $(BUILD_BASE)/.venv ] && [ "$$(cat $(BUILD_BASE)/.venv)" != "$(abspath $(VENV))" ] \
	    || { [ -d $(BUILD_BASE) ] && [ ! -f $(BUILD_BASE)/.venv ]; }; then \
	  echo "$(BUILD_BASE)/ was built against another environment: rebuilding it"; \
	  rm -rf $(BUILD_BASE) $(INSTALL); fi
	@mkdir -p $(INSTALL) $(BUILD_BASE) && echo "$(abspath $(VENV))" > $(BUILD_BASE)/.venv
	$(RUN) flock $(INSTALL)/.build-lock colcon --log-base $(LOG_BASE) build --symlink-install \
	  --build-base $(BUILD_BASE) --install-base $(INSTALL) \
	  --cmake-args -DPython3_EXECUTABLE=$(abspath $(VPY)) -DBUILD_TESTING=OFF
	@touch $@

tiny-model: build
	$(RUN) python -m topreward_ros.tools.tiny_model .cache/tiny-qwen3-vl

# launch / launch_ros for the launch-file tests and rosbag2_interfaces for the
# stop_on_success tests, built from the sources in
# shared/ros-extras beside the checkout when the ROS wheels lack them
# (ROS_EXTRAS=DIR names another folder); a no-op on a ROS 2 install.
ROS_EXTRAS ?=
ros-extras: $(DEPS_STAMP)
	tools/install_ros_extras.sh $(VENV) $(ROS_EXTRAS)
	tools/install_rosbag2_interfaces.sh $(VENV) $(ROS_EXTRAS)

test: build ros-extras
	$(RUN) python -m pytest $(TEST_PATHS) $(if $(filter-out 0,$(TEST_JOBS)),-n $(TEST_JOBS) --dist loadfile,) $(PYTEST_ARGS)

test-soak: build ros-extras
	$(RUN) python tools/soak_tests.py --runs $(RUNS) --burners $(BURNERS) --jobs $(SOAK_JOBS) $(MODULES)

demo: build
	$(RUN) python -m topreward_ros.demo $(if $(MODEL),--model $(MODEL),)

bench: build
	$(RUN) python bench/run_all.py $(BENCH_ARGS)

# Needs a CUDA GPU (exits with status 2 without one; BENCH_ARGS=--tiny runs it on the CPU
# with the tiny model and writes nothing unless --output is given).
bench-gpu: build
	$(RUN) python bench/gpu.py $(BENCH_ARGS) \
	  $(if $(findstring --tiny,$(BENCH_ARGS))$(findstring --output,$(BENCH_ARGS)),,&& python bench/run_all.py --assemble-only)

clean:
	rm -rf build install log build-* install-* log-* .pytest_cache out

distclean: clean
	rm -rf $(VENV) .cache
