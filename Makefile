# migalab — `make help` lists the targets.
#
# Where things get installed: the active virtualenv or conda env when there is one, else a
# `.venv/` in this checkout (created on first use). `PYTHON=/path/to/python make ...` picks any
# other interpreter. `make install` installs the locked environment (requirements.lock);
# `make install LOCK=` resolves the ranges of pyproject.toml instead (bring your own torch).
ifdef VIRTUAL_ENV
PYTHON ?= $(VIRTUAL_ENV)/bin/python
else ifdef CONDA_PREFIX
PYTHON ?= $(CONDA_PREFIX)/bin/python
else
PYTHON ?= .venv/bin/python
endif
BASE_PYTHON ?= python3
LOCK ?= requirements.lock
PYTEST_ARGS ?=
# one stamp per environment: a new venv installs again, an unchanged one skips the install
STAMP = $(shell $(PYTHON) -c "import sys; print(sys.prefix)" 2>/dev/null)/.migalab-installed

.DEFAULT_GOAL := help
.PHONY: help install lock pose-env train test test-slow test-full lint format bench gpu-check gpu-plan docs docs-serve \
	clean

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

# where `import migalab` resolves now (empty when not installed)
INSTALLED = $(shell $(PYTHON) -c "import pathlib, migalab; print(pathlib.Path(migalab.__file__).resolve().parent)" 2>/dev/null)

$(PYTHON):
	$(BASE_PYTHON) -m venv $(patsubst %/bin/python,%,$(PYTHON))

install: | $(PYTHON) ## Install migalab (editable) and its locked dependencies where missing or changed
	@if [ "$(INSTALLED)" != "$(CURDIR)/src/migalab" ] || [ ! -f "$(STAMP)" ] \
		|| [ pyproject.toml -nt "$(STAMP)" ] || [ setup.py -nt "$(STAMP)" ] \
		|| { [ -n "$(LOCK)" ] && [ "$(LOCK)" -nt "$(STAMP)" ]; }; then \
		$(PYTHON) -m pip install $(if $(LOCK),-c $(LOCK)) -e ".[dev,docs]" && touch "$(STAMP)"; \
	else echo "migalab is installed from this checkout in $(dir $(PYTHON)) (nothing changed)"; fi

lock: ## Re-resolve pyproject.toml in a throw-away venv and write requirements.lock
	rm -rf .make/lock-venv && $(BASE_PYTHON) -m venv .make/lock-venv
	.make/lock-venv/bin/python -m pip install -q ".[dev,docs]"
	{ echo "# Full environment of a fresh install of migalab[dev,docs] (Python $$(.make/lock-venv/bin/python -c 'import platform; print(platform.python_version(), platform.machine())')),"; \
	  echo "# used as pip constraints by 'make install'. Regenerate with 'make lock'."; \
	  .make/lock-venv/bin/python -m pip freeze --exclude-editable | grep -v '^migalab'; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK) && rm -rf .make/lock-venv

# migalab-pose's MediaPipe worker runs in its own environment (mediapipe 0.10.21 pins protobuf<5,
# wandb needs >=5); migalab-pose finds it here, or at $$MIGALAB_POSE_PYTHON
POSE_ENV ?= .pose-env
POSE_LOCK ?= requirements-pose.lock
pose-env: ## Create the pose-extraction environment (.pose-env/, MediaPipe) for migalab-pose
	@if $(POSE_ENV)/bin/python -c "import mediapipe, cv2" 2>/dev/null; then \
		echo "$(POSE_ENV) has mediapipe (nothing to do)"; \
	else $(BASE_PYTHON) -m venv $(POSE_ENV) && $(POSE_ENV)/bin/python -m pip install -q -r $(POSE_LOCK) \
		&& echo "pose environment ready: $(POSE_ENV)/bin/python"; fi

train: install ## Train the default experiment (synthetic iMiGUE, 2s-AGCN, CPU, a few minutes)
	$(PYTHON) -m migalab.train $(ARGS)

# the fast suite runs on every core (pytest-xdist, at most 4 workers; a test module's tests stay
# on one worker so its module fixtures are built once); PYTEST_PARALLEL= runs it in one process
PYTEST_PARALLEL ?= -n auto --maxprocesses 4 --dist loadscope
test: install ## Run the test suite (fast tests; CI runs this)
	$(PYTHON) -m pytest -q $(PYTEST_PARALLEL) $(PYTEST_ARGS)

test-slow: install ## Run only the tests marked slow (CI's second step)
	$(PYTHON) -m pytest -q -m slow $(PYTEST_ARGS)

test-full: install ## Run every test, slow ones included
	$(PYTHON) -m pytest -q -m "" $(PYTEST_ARGS)

lint: install ## Ruff lint + format check
	$(PYTHON) -m ruff check src tests scripts setup.py
	$(PYTHON) -m ruff format --check src tests scripts setup.py

format: install ## Ruff autofix + format
	$(PYTHON) -m ruff check --fix src tests scripts setup.py
	$(PYTHON) -m ruff format src tests scripts setup.py

bench: install ## Benchmarks (ratios against in-process baselines; ~15 min) -> bench_results/
	$(PYTHON) scripts/bench.py prepare
	$(PYTHON) scripts/bench.py heatmaps
	$(PYTHON) scripts/bench.py video
	$(PYTHON) scripts/bench.py loader
	$(PYTHON) scripts/bench.py light35
	$(PYTHON) scripts/bench.py faces
	$(PYTHON) scripts/bench.py swinface --torch-threads 1
	$(PYTHON) scripts/bench.py mamp

# the GPU check runs in a short GPU slot: no install step first (make install beforehand; the slot
# may have no network), and the remaining experiments are skipped once GPU_CHECK_BUDGET seconds
# have passed, so the results (written after every experiment) are in before the slot ends
GPU_CHECK_BUDGET ?= 420
gpu-check: ## On a GPU: time every full-size experiment's training step, MFU (budget ~7 min)
	$(PYTHON) scripts/gpu_check.py --budget-s $(GPU_CHECK_BUDGET) $(ARGS)

gpu-plan: ## FLOPs and H100-hours of every full-size recipe as a Markdown table (CPU, ~4 min)
	$(PYTHON) scripts/gpu_check.py --plan --markdown $(ARGS)

docs: install ## Build the documentation site into site/ (MkDocs, --strict: a warning fails it)
	$(PYTHON) -m mkdocs build --strict --clean

docs-serve: install ## Serve the documentation with live reload on http://127.0.0.1:8000
	$(PYTHON) -m mkdocs serve

clean: ## Remove caches and build files (keeps .venv/, data/ and logs/)
	rm -rf .make .pytest_cache .ruff_cache build dist src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
