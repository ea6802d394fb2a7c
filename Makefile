# The two commands a new user runs: `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export XAUDIT_HOME ?= $(CURDIR)/workspace

.PHONY: setup demo test bench bench-gpu docker-check clean

$(BIN)/xaudit: requirements.txt pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e .
	touch $(BIN)/xaudit

setup: $(BIN)/xaudit

demo: setup
	$(BIN)/xaudit demo

test: setup
	bash scripts/ensure_chromium.sh
	bash scripts/ensure_postgres.sh
	$(BIN)/python -m pytest -q

bench: setup
	for f in $(filter-out bench/gpu.py,$(wildcard bench/*.py)); do $(BIN)/python $$f || exit 1; done

# The paper-size figures on one CUDA GPU (< 10 min), appended to bench/RESULTS.md; GPU_ARGS=--tiny: CPU check
bench-gpu: setup
	$(BIN)/python bench/gpu.py $(GPU_ARGS)

# Build the Docker image with buildah and run it (no Docker engine needed; root): scripts/docker_check.sh
docker-check: setup
	PYTHON=$(BIN)/python bash scripts/docker_check.sh

clean:
	rm -rf $(VENV) workspace
