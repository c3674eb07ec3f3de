# Two entry points: `make demo` (the main job) and `make test`.
# Both create .venv when it is missing. Torch is pinned to the CPU build that this
# machine kind has on disk; GPU users override it, e.g.
#   make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu124"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: demo test test-kernels install clean

$(BIN)/.hcl-installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

install: $(BIN)/.hcl-installed

demo: $(BIN)/.hcl-installed
	$(BIN)/hcl demo $(DEMO_ARGS)

test: $(BIN)/.hcl-installed
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

# By hand, not in CI: the whole suite under three OpenBLAS/torch kernels x 1 and 2 threads
# (about 6 x 2-3 min); extra pytest arguments after --, e.g. KERNEL_ARGS="-- -k gwas"
KERNEL_ARGS ?=
test-kernels: $(BIN)/.hcl-installed
	$(BIN)/python tests/kernel_matrix.py $(KERNEL_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache hcl_report kernel_runs
