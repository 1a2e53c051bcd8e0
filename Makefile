# Two commands do all the set-up on a fresh machine:
#   make example   sets up .venv and runs the example experiment (offline, on the packaged model)
#   make test      sets up .venv and runs every test (what CI runs)
#   make test-fast the tests a developer runs while working: all but the `slow` and `slurm` ones, in a minute or two
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: example test test-fast setup bench screenshots clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned, so pip takes the CPU build on this machine's disk, not a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[train,test]' --config-settings editable_mode=compat
	touch $@

setup: $(BIN)/.installed

example: setup
	$(BIN)/lab run exp1 --wait --rerun
	$(BIN)/lab status exp1

# Tests run side by side in up to 4 worker processes (pytest-xdist): most of their time is spent waiting on real
# runners, jobs and servers, each under its own tmp_path and on a free port; the Slurm tests share one worker (one
# cluster). PYTEST_ARGS adds options, e.g. PYTEST_ARGS=-x; PYTEST_WORKERS= runs them in this one process.
PYTEST_WORKERS ?= -n auto --maxprocesses 4 --dist loadgroup
test: setup
	$(BIN)/python -m pytest -q -ra $(PYTEST_WORKERS) $(PYTEST_ARGS)

# Not `slow` (training, checks against the torch model, the browser, storms of kill -9) nor `slurm` (a cluster).
test-fast: setup
	$(BIN)/python -m pytest -q -ra $(PYTEST_WORKERS) -m "not slow and not slurm" $(PYTEST_ARGS)

# The repository's own lab book at 1280x2000 in headless Chromium (apt-get install chromium): PNGs in .lab/screenshots/.
screenshots: setup
	$(BIN)/python -m mkdocs build --strict -q -d .lab/site
	$(BIN)/python scripts/screenshot.py .lab/site -o .lab/screenshots

bench: setup
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) site .lab
