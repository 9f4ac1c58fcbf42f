# Everything starts from a machine with only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint typecheck clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/tlsconnector check examples/fabrikam/policy.toml
	$(BIN)/tlsconnector inbound --policy examples/fabrikam/policy.toml --sessions examples/fabrikam/sessions.jsonl

test: $(STAMP)
	$(BIN)/python -m pytest
	$(BIN)/ruff check src tests
	$(BIN)/mypy --strict src

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
