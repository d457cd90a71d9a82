# Every target installs what it needs into .venv first.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-durations demo bench table lint clean gpu-check wheelhouse paper paper-dry-run

# pip byte-compiles at install on purpose: with PYTHONDONTWRITEBYTECODE set (as on our CI
# machines) an uncompiled torch is compiled again by every process that imports it.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The project's own sources byte-compiled before the targets that start many processes: with
# PYTHONDONTWRITEBYTECODE set (as on our CI machines) Python never writes them itself, and every
# worker, API and CLI process compiled the sources it imports again (0.4 s of CPU for an API or
# a worker; only changed files are compiled again here).
SOURCES := sru_hpo service workers trials search_spaces benchmarks deploy tests
BYTECODE = $(BIN)/python -m compileall -q -j 0 $(SOURCES)

# One pytest process per core and one more, a file each at a time (loadfile: a module fixture
# such as the dashboard's study runs once), the longest files first (tests/conftest.py orders
# them by tests/durations.json, which `make test-durations` rewrites from a passing run; xdist
# would order them by their number of tests). Tests wait on the processes they start: on 2 cores,
# back to back on one tree, 3 processes took 406 s and 2 took 446 s; 4 were slower than 3 (481 s
# against 374 s on an earlier tree). README: Measured. TEST_JOBS=0 runs it in one process.
TEST_JOBS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) + 1 )))
PYTEST_XDIST = -n $(TEST_JOBS) --dist loadfile --no-loadscope-reorder
test: $(STAMP)
	$(BYTECODE)
	$(BIN)/python -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

test-durations: $(STAMP)
	$(BYTECODE)
	$(BIN)/python -m pytest $(PYTEST_XDIST) --store-durations $(PYTEST_ARGS)

demo: $(STAMP)
	$(BYTECODE)
	$(BIN)/sru-hpo demo

BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m pip install --quiet --no-deps 'dehb==0.1.2'  # its numpy<2 pin is not needed
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python benchmarks/cell_speed.py
	$(BIN)/python benchmarks/lifecycle.py
	$(BIN)/python benchmarks/api_scale.py
	$(BIN)/python benchmarks/curve_writes.py
	$(BIN)/python benchmarks/trainer_overhead.py
	$(BIN)/python benchmarks/stall_timings.py
	$(BIN)/python benchmarks/search_quality.py

# the learning-curve table of the replay benchmark (about 1.5 hours on 2 cores; resumes)
table: $(STAMP)
	$(BIN)/python benchmarks/make_table.py

# The SRU paper's comparison at equal budgets on pixel MNIST, for a GPU machine (README: The SRU
# question). It prints its GPU-hours first and resumes when run again. `make --dry-run` is make's
# own flag (print the commands), so the dry run is `make paper-dry-run` or PAPER_ARGS=--dry-run.
PAPER_ARGS ?=
paper: $(STAMP)
	$(BIN)/python benchmarks/paper.py $(PAPER_ARGS)

paper-dry-run: $(STAMP)
	$(BIN)/python benchmarks/paper.py --dry-run $(PAPER_ARGS)

# One prepared command for a GPU machine (about 5 minutes on one GPU; README: GPU). With a .venv
# it runs there (and installs it when stale); without one (an air-gapped host, README: Air-gapped
# GPU host) it uses $(PY)'s own CUDA PyTorch and the wheelhouse, and fetches nothing. Its report
# is written to $(REPORT) as it goes.
REPORT ?= gpu-check-report.txt
gpu-check:
	@if [ -d $(VENV) ]; then $(MAKE) --no-print-directory $(STAMP) && : >$(REPORT) && \
	  $(BIN)/python benchmarks/gpu_check.py --device cuda --report $(REPORT); \
	else PY=$(PY) REPORT=$(REPORT) bash benchmarks/gpu_check_offline.sh; fi

# the wheels an air-gapped GPU host lacks, for its CPython 3.12 (deploy/wheelhouse.py lists them)
WHEEL_PYTHON ?= 3.12
wheelhouse:
	$(PY) deploy/wheelhouse.py --python-version $(WHEEL_PYTHON) --dest .whl

lint: $(STAMP)
	$(BIN)/ruff check sru_hpo service workers trials search_spaces tests benchmarks
	$(BIN)/mypy sru_hpo service workers trials search_spaces

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
