# Everything starts from a machine with only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo example test lint typecheck clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

EXAMPLE := examples/fabrikam

# The embedded scenario: no files, no network, a fixed session time.
demo: $(STAMP)
	$(BIN)/tlsconnector demo

# The same partner, file-based: a policy file and recorded sessions.
example: $(STAMP)
	$(BIN)/tlsconnector check $(EXAMPLE)/policy.toml
	@echo; echo "== Inbound: mail from Fabrikam Bank to Contoso =="
	$(BIN)/tlsconnector inbound --policy $(EXAMPLE)/policy.toml --sessions $(EXAMPLE)/sessions.jsonl
	@echo; echo "== Outbound: where mail to each domain goes =="
	$(BIN)/tlsconnector routes --policy $(EXAMPLE)/policy.toml fabrikam.com eu.fabrikam.com example.org
	@echo; echo "== Outbound: mail from Contoso to Fabrikam Bank =="
	$(BIN)/tlsconnector outbound --policy $(EXAMPLE)/policy.toml --sessions $(EXAMPLE)/outbound.jsonl

test: $(STAMP)
	$(BIN)/python -m pytest
	$(BIN)/ruff check src tests
	$(BIN)/mypy --strict src

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
