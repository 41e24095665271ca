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
	$(BIN)/python -m pip install --quiet -e '.[test,dashboard,dask]'
	touch $(STAMP)

# The main job on the embedded default: 1,000,000 synthetic customers, segmented with the
# built-in `customers` feature spec; prints the profile table and the key metrics.
run: $(STAMP)
	mkdir -p results
	$(BIN)/segment generate --rows $(ROWS) --segments $(K) --seed 0 --out results/customers.parquet --overwrite
	$(BIN)/segment run results/customers.parquet --spec customers --k $(K) --out results/run --overwrite

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q

# Line coverage of engine/ and kernels/, from two runs combined. NUMBA_DISABLE_JIT=1 runs the kernels
# in the interpreter (prange as range), so their bodies count as covered lines: the tests of the
# kernels and the fit (KERNEL_TESTS) run that way, leaving out those marked slow or jit_heavy (too
# slow interpreted; the list, with the time each took, is in tests/conftest.py). The whole suite
# (not slow) then runs compiled: every engine/ line the tests reach. The whole suite interpreted
# takes over an hour on two cores (each run's exact silhouette is O(rows^2) in Python). Tests of what
# only compiled kernels do (thread counts, the on-disk cache) skip themselves in the first run.
KERNEL_TESTS := tests/test_kernels.py tests/test_transform.py tests/test_one_pass.py tests/test_weighted.py \
                tests/test_indices.py tests/test_properties.py tests/test_fit.py tests/test_stream.py
coverage: $(STAMP) chromium
	$(BIN)/python -c "import coverage" 2>/dev/null || $(BIN)/python -m pip install --quiet coverage
	rm -f .coverage .coverage.*
	NUMBA_DISABLE_JIT=1 $(BIN)/python -m coverage run -p --source=engine,kernels -m pytest -q \
	  -m "not slow and not jit_heavy" $(KERNEL_TESTS) && \
	$(BIN)/python -m coverage run -p --source=engine,kernels -m pytest -q -m "not slow"; \
	status=$$?; \
	$(BIN)/python -m coverage combine -q; \
	$(BIN)/python -m coverage report --include='engine/*,kernels/*'; \
	echo "engine/  $$($(BIN)/python -m coverage report --include='engine/*' --format=total)%"; \
	echo "kernels/ $$($(BIN)/python -m coverage report --include='kernels/*' --format=total)%"; \
	exit $$status

# tests/test_report.py opens the HTML report in a real headless browser: Debian's chromium.
# Installed when missing (as root, or with passwordless sudo); the test fails without it.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; \
	} || echo "warning: could not install chromium; tests/test_report.py will fail" >&2

bench: $(STAMP)
	$(BIN)/python -m benchmarks

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks --quick

clean:
	rm -rf $(VENV) results .pytest_cache .coverage .coverage.* htmlcov
