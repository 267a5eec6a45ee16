# motionseg_ros developer entry points. Every target sets the environment up first (idempotent:
# seconds when nothing changed).
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eo pipefail -c
INPUT ?= motionseg_ros/assets/demo.mp4
OUTPUT ?= out/demo
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast lint clean

setup:
	bash scripts/setup_env.sh

demo: setup
	source env.sh
	motionseg run "$(INPUT)" --output "$(OUTPUT)"
	echo "outputs: $(OUTPUT)/masks (label PNGs), $(OUTPUT)/overlay.mp4, $(OUTPUT)/trajectories.npz, $(OUTPUT)/summary.json"

test: setup
	source env.sh
	MOTIONSEG_REQUIRE_ROS=1 python -m pytest test -q -p no:cacheprovider $(PYTEST_ARGS)

test-fast: setup
	source env.sh
	MOTIONSEG_REQUIRE_ROS=1 python -m pytest test -q -p no:cacheprovider -m "not slow" $(PYTEST_ARGS)

lint: setup
	source env.sh
	ruff check motionseg_ros test scripts launch

clean:
	rm -rf build install log env.sh
