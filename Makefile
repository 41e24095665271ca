# `make run` and `make test` work on a fresh machine: they create .venv and install the project first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ROWS   ?= 1000000
K      ?= 5

.PHONY: run test coverage bench bench-quick clean chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dashboard]'
	touch $(STAMP)

# The main job on the embedded default: 1,000,000 synthetic customers, segmented with the
# built-in `customers` feature spec; prints the profile table and the key metrics.
run: $(STAMP)
	mkdir -p results
	$(BIN)/segment generate --rows $(ROWS) --segments $(K) --seed 0 --out results/customers.parquet --overwrite
	$(BIN)/segment run results/customers.parquet --spec customers --k $(K) --out results/run --overwrite

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q

# tests/test_report.py opens the HTML report in a real headless browser: Debian's chromium.
# Installed when missing (as root, or with passwordless sudo); the test fails without it.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; \
	} || echo "warning: could not install chromium; tests/test_report.py will fail" >&2

# Line coverage of engine/ and kernels/ with the JIT off, so the bodies of the numba kernels count
# as Python lines (stumpy's practice). Slow: the kernels run as plain Python. The tests marked slow
# (whole processes, large inputs, the browser) are left out; the commands they start would not be
# measured anyway.
coverage: $(STAMP)
	-NUMBA_DISABLE_JIT=1 $(BIN)/python -m coverage run --source=engine,kernels -m pytest -q -m "not slow" -p no:cacheprovider
	$(BIN)/python -m coverage report --include='engine/*,kernels/*' --skip-empty --sort=cover | tail -40

bench: $(STAMP)
	$(BIN)/python -m benchmarks

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks --quick

clean:
	rm -rf $(VENV) results .pytest_cache
