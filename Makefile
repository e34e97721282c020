# Set-up and checks. `make run` starts the whole stack on this machine; `make test` runs every check
# (ruff, the import-linter layer contracts, mypy, pytest).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The torch build to install first. The default takes the CPU/CUDA wheel pip picks for this platform;
# a GPU user can pick a CUDA build, e.g.:
#   make TORCH_SPEC="torch==2.13.0" TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cu128" run
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
PYTEST_ARGS ?=

.PHONY: venv run test lint typecheck pytest bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

venv: $(VENV)/.installed

run: venv
	$(BIN)/m4t serve

lint: venv
	$(BIN)/ruff check --output-format concise .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports  # the layers: the contracts in pyproject.toml [tool.importlinter]

typecheck: venv
	$(BIN)/mypy

pytest: venv
	$(BIN)/pytest $(PYTEST_ARGS)

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .import_linter_cache build *.egg-info
