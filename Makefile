# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PORT ?= 5000
BIN := $(VENV)/bin
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint bench chromium clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[$*]'
	touch $@

# The browser tests drive Debian's Chromium (Playwright cannot download browsers here); the
# restore tests load SQL files with the sqlite3 shell, as a user would; the encryption tests
# decrypt and encrypt with Debian's age command and make SSH keys with ssh-keygen.
chromium:
	@[ -x "$(CHROMIUM)" ] && command -v sqlite3 >/dev/null && command -v age >/dev/null \
	  && command -v ssh-keygen >/dev/null || { \
	  echo "Installing Chromium, the sqlite3 shell, age and ssh-keygen for the tests"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium sqlite3 age \
	    openssh-client >/dev/null; }

demo: $(VENV)/.installed-example
	cd example_app && PORT=$(PORT) ../$(BIN)/python run_demo.py

test: $(VENV)/.installed-dev chromium
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests example_app bench
	$(BIN)/ruff format --check src tests example_app bench

# The anchor db-to-sqlite (and its psycopg2) lives in a venv of its own, never in ours.
.venv-bench/bin/db-to-sqlite:
	$(PYTHON) -m venv .venv-bench
	.venv-bench/bin/python -m pip install --quiet db-to-sqlite psycopg2-binary

# The strongest anchors (issue 16): DuckDB with its postgres and sqlite extensions of the same
# line, loaded by bench/duckdb_anchor.py from the installed files (nothing downloaded at run
# time), and Debian's pigz and pgloader.
.venv-bench/.installed-duckdb: | .venv-bench/bin/db-to-sqlite
	.venv-bench/bin/python -m pip install --quiet duckdb==1.4.4 'duckdb-ext-postgres==1.4.4.*' \
	  'duckdb-ext-sqlite==1.4.4.*'
	touch $@

bench: $(VENV)/.installed-dev .venv-bench/bin/db-to-sqlite .venv-bench/.installed-duckdb
	@command -v pigz >/dev/null && command -v pgloader >/dev/null || { \
	  echo "Installing pigz and pgloader for the bench's anchors"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq pigz pgloader >/dev/null; }
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv-bench bench/out example_app/instance
