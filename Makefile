# The few commands people need; each wraps a script so that CI and humans run the same thing.
.PHONY: help setup test demo lint format ci clean

VENV ?= .venv

help:
	@echo "make setup   create/refresh $(VENV) (scripts/bootstrap.sh)"
	@echo "make test    run the whole test suite (scripts/test.sh); ARGS='-k onnx' passes pytest args"
	@echo "make demo    run the main job (scripts/demo.sh); ARGS='--help' passes arguments"
	@echo "make lint    ruff check + ruff format --check, as CI (installs nothing: '$(VENV)/bin/pip install ruff==0.17.6' first)"
	@echo "make ci      what CI runs (.ci/run: ruff, tests, colcon build, colcon test)"

setup:
	bash scripts/bootstrap.sh

test:
	bash scripts/test.sh $(ARGS)

demo:
	bash scripts/demo.sh $(ARGS)

lint:
	@if [ -x $(VENV)/bin/ruff ]; then $(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .; \
	elif command -v ruff >/dev/null 2>&1; then ruff check . && ruff format --check .; \
	else echo "ruff is not installed: run '$(VENV)/bin/pip install ruff==0.17.6'"; exit 1; fi

format:
	@if [ -x $(VENV)/bin/ruff ]; then $(VENV)/bin/ruff format .; \
	else echo "ruff is not installed: run '$(VENV)/bin/pip install ruff==0.17.6'"; exit 1; fi

ci:
	bash .ci/run

clean:
	rm -rf build install log .pytest_cache
