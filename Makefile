# The README's two commands: `make demo` and `make test`. Both set everything up first.
SHELL := /bin/bash
.PHONY: setup ros demo test lint format bench clean

setup:
	@bash scripts/setup.sh

ros: setup
	@bash scripts/build_ros.sh

demo: ros
	@bash scripts/demo.sh

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

test: ros lint
	@bash scripts/test.sh

format: setup
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

bench: setup
	.venv/bin/gsbp bench --out docs/benchmarks.md

clean:
	rm -rf build install log out .pytest_cache
