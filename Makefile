# Two commands on a fresh machine with only python3:
#   make run    install, migrate, seed the sandbox, serve (API, worker, beat)
#   make test   install if needed, run the whole suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# Adapter packages installed in development beside the hub (each its own distribution, found
# through its hub.adapters entry point like any third-party adapter).
ADAPTER_PACKAGES := examples/hub-adapter-example

.PHONY: run test lint typecheck check install lock clean

$(BIN)/hub: pyproject.toml constraints.txt $(ADAPTER_PACKAGES:%=%/pyproject.toml)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]' $(ADAPTER_PACKAGES:%=-e %)
	touch $(BIN)/hub

install: $(BIN)/hub

run: install
	$(BIN)/hub migrate --verbosity 0
	@echo "Sandbox API keys (test mode, one per role; shown once):"
	@$(BIN)/hub seed sandbox --json
	$(BIN)/hub serve --port $(PORT)

test: install
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy hub trade settlement fx tests bench adapters examples/hub-adapter-example/src

check: lint typecheck test

# Re-pin every dependency after changing pyproject.toml.
lock:
	rm -rf /tmp/hub-lock && $(PYTHON) -m venv /tmp/hub-lock
	/tmp/hub-lock/bin/python -m pip install --quiet --upgrade pip
	/tmp/hub-lock/bin/python -m pip install --quiet -e '.[dev]'
	/tmp/hub-lock/bin/python -m pip freeze --exclude-editable | grep -v '^-e ' > constraints.txt

clean:
	rm -rf $(VENV) var
