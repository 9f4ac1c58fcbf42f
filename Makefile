# Everything starts from a machine with only python3 and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo example test wheel-test docs lint typecheck clean bench fuzz

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
	$(BIN)/ruff check src tests benchmarks tools docs
	$(BIN)/mypy --strict src
	$(MAKE) --no-print-directory wheel-test

WHEEL_VENV := .venv-wheel
WHEEL_STAMP := $(WHEEL_VENV)/.created

$(WHEEL_STAMP):
	rm -rf $(WHEEL_VENV)
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/python -m pip install --quiet --upgrade pip
	touch $(WHEEL_STAMP)

# The suite once more, against the package as users get it: build the wheel and the
# sdist, check what they hold (tools/check_dist.py), install the wheel with its test
# extra into $(WHEEL_VENV), unpack the sdist outside this tree, delete its src/, and run
# its tests, docs and README there: `import tlsconnector` can only find the wheel.
wheel-test: $(STAMP) $(WHEEL_STAMP)
	rm -rf dist
	$(BIN)/python -m build --quiet --outdir dist .
	$(BIN)/python tools/check_dist.py dist
	$(WHEEL_VENV)/bin/python -m pip install --quiet "$$(echo dist/*.whl)[test]"
	$(WHEEL_VENV)/bin/python -m pip install --quiet --force-reinstall --no-deps dist/*.whl
	set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	tar -xzf dist/*.tar.gz -C "$$tmp"; cd "$$tmp"/tlsconnector-*/; rm -rf src; \
	"$(CURDIR)/$(WHEEL_VENV)/bin/python" "$(CURDIR)/tools/check_dist.py" --installed; \
	"$(CURDIR)/$(WHEEL_VENV)/bin/python" -m pytest -p no:cacheprovider --import-mode=importlib \
		tests docs README.md

DOCS_STAMP := $(VENV)/.docs-installed

$(DOCS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,docs]'
	touch $(DOCS_STAMP)

# The documentation as HTML, from docs/ into docs/_build/html (start page index.html);
# every warning is an error, and so is generated noise in the pages (attrs' generated
# docstrings and defaults, an enum's __new__: tools/check_docs_html.py).
docs: $(DOCS_STAMP)
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html
	$(BIN)/python tools/check_docs_html.py docs/_build/html

BENCH_STAMP := $(VENV)/.bench-installed

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

# Every benchmark (docs/performance.md): prints the targets table and writes
# benchmarks/results.json. Takes a few minutes; timing is never a test.
bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks.run

FUZZ_STAMP := $(VENV)/.fuzz-installed
FUZZ_SECONDS ?= 60
FUZZ_WORKDIR ?= $(or $(TMPDIR),/tmp)/tlsconnector-fuzz

$(FUZZ_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,testing,fuzz]'
	touch $(FUZZ_STAMP)

# Coverage-guided fuzzing (docs/testing.md), not part of `make test`: each target
# (certificate, session, policy) runs FUZZ_SECONDS seconds; crashes land in FUZZ_WORKDIR.
fuzz: $(FUZZ_STAMP)
	for target in certificate session policy; do \
		$(BIN)/python fuzz/run.py $$target --seconds $(FUZZ_SECONDS) --workdir $(FUZZ_WORKDIR) || exit 1; \
	done

clean:
	rm -rf $(VENV) $(WHEEL_VENV) build dist docs/_build .pytest_cache .mypy_cache .ruff_cache .hypothesis
