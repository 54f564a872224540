# Two entry points (see README): `make demo` and `make test`. Each sets up .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all
SNAKEMAKE ?= $(BIN)/snakemake

.PHONY: demo test browser after-checkout lint lock clean-results gpu-env

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall when the lock files or the package metadata change.
$(VENV)/.installed: requirements/lock.txt requirements/dev-lock.txt pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements/lock.txt -r requirements/dev-lock.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $@

## demo: set up, then run the whole workflow on the built-in simulated data
demo: $(VENV)/.installed
	$(BIN)/snakemake --cores $(CORES) all
	@echo
	@echo "Report: $(CURDIR)/results/report/index.html"

## test: set up, then run the test suite
test: $(VENV)/.installed browser
	$(BIN)/python -m pytest -n 2 --dist loadscope --timeout 1500 tests

# The report's browser test needs Debian's chromium. CI installs it; elsewhere the test
# is skipped with a message saying how to install it.
browser:
	@if [ -n "$$CI" ] && ! command -v chromium >/dev/null 2>&1; then \
		(apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
		|| echo "could not install chromium: the browser test will be skipped"; \
	fi

## after-checkout: after `dvc checkout` / `dvc pull`, tell Snakemake the restored files are
## current (DVC checked their content; their modification times and Snakemake's records
## of how they were made are not to be trusted)
after-checkout:
	rm -rf .snakemake/metadata
	$(SNAKEMAKE) --touch --cores 1 all

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests workflow benchmarks
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint --cores 1

## gpu-env: a separate virtualenv (.venv-gpu) from the GPU lock, for GPU nodes: the CUDA
## build of TensorFlow instead of tensorflow-cpu (requirements/gpu-lock.txt)
GPU_VENV ?= .venv-gpu
gpu-env: $(GPU_VENV)/.installed
$(GPU_VENV)/.installed: requirements/gpu-lock.txt requirements/dev-lock.txt pyproject.toml
	$(PYTHON) -m venv $(GPU_VENV)
	$(GPU_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements/gpu-lock.txt -r requirements/dev-lock.txt
	$(GPU_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(GPU_VENV)/bin/python -m pip check
	touch $@

## lock: re-resolve requirements/*.in into the pinned lock files
lock:
	$(PYTHON) -m pip install --quiet uv
	$(PYTHON) -m uv pip compile --python-version 3.11 requirements/main.in -o requirements/lock.txt
	$(PYTHON) -m uv pip compile --python-version 3.11 requirements/dev.in -o requirements/dev-lock.txt

clean-results:
	rm -rf results .snakemake
