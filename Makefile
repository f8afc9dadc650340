# migalab — `make help` lists the targets.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
PYTEST_ARGS ?=
STAMP := .make/installed

.DEFAULT_GOAL := help
.PHONY: help install train test test-full lint format bench clean

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

# where `import migalab` resolves now (empty when not installed)
INSTALLED = $(shell $(PYTHON) -c "import pathlib, migalab; print(pathlib.Path(migalab.__file__).resolve().parent)" 2>/dev/null)

install: ## Install migalab (editable) and its dependencies where missing or changed
	@if [ "$(INSTALLED)" != "$(CURDIR)/src/migalab" ] || [ ! -f $(STAMP) ] || [ pyproject.toml -nt $(STAMP) ]; then \
		$(PIP) install -e ".[dev]" && mkdir -p $(dir $(STAMP)) && touch $(STAMP); \
	else echo "migalab is installed from this checkout (pyproject.toml unchanged)"; fi

train: install ## Train the default experiment (synthetic iMiGUE, 2s-AGCN, CPU, a few minutes)
	$(PYTHON) -m migalab.train $(ARGS)

test: install ## Run the test suite (fast tests; CI runs this)
	$(PYTHON) -m pytest -q $(PYTEST_ARGS)

test-full: install ## Run every test, slow ones included
	$(PYTHON) -m pytest -q -m "" $(PYTEST_ARGS)

lint: install ## Ruff lint + format check
	$(PYTHON) -m ruff check src tests scripts
	$(PYTHON) -m ruff format --check src tests scripts

format: install ## Ruff autofix + format
	$(PYTHON) -m ruff check --fix src tests scripts
	$(PYTHON) -m ruff format src tests scripts

bench: install ## Benchmarks (ratios against in-process baselines; ~15 min) -> bench_results/
	$(PYTHON) scripts/bench.py prepare
	$(PYTHON) scripts/bench.py heatmaps
	$(PYTHON) scripts/bench.py video

clean: ## Remove caches and build files (keeps data/ and logs/)
	rm -rf .make .pytest_cache .ruff_cache build dist src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
