# reconciler: two commands for a newcomer, `make run` and `make test`.
VENV   ?= .venv
BIN    := $(VENV)/bin
JOBS   ?= ./jobs
DATA   ?= ./.reconciler

.PHONY: run test unit e2e lint deps bench bench-peers fuzz clean

$(VENV)/.deps: pyproject.toml setup.py scripts/install-deps reconciler/executor/linux/shim.c
	./scripts/install-deps $(VENV)

deps: $(VENV)/.deps ## install what is missing (Debian packages, a virtualenv)

run: $(VENV)/.deps ## start the service on ./jobs with the embedded SQLite
	$(BIN)/reconciler run --jobs $(JOBS) --data-dir $(DATA)

test: $(VENV)/.deps lint ## the whole suite: lint, types, unit tier, e2e tier (root)
	$(BIN)/python -m pytest tests

unit: $(VENV)/.deps
	$(BIN)/python -m pytest tests/unit

e2e: $(VENV)/.deps
	$(BIN)/python -m pytest tests/e2e

lint: $(VENV)/.deps
	$(BIN)/ruff check reconciler alembic tests bench
	$(BIN)/mypy reconciler alembic/env.py
	$(BIN)/lint-imports

bench: $(VENV)/.deps ## figures, never pass/fail
	$(BIN)/python bench/spec.py
	$(BIN)/python bench/executor.py
	$(BIN)/python bench/nochange.py
	$(BIN)/python bench/loop.py
	$(BIN)/python bench/checks.py

bench-peers: $(VENV)/.deps ## reconciler next to s6, runit and supervisord; writes bench/results/
	@command -v s6-svscan >/dev/null && command -v runsvdir >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends s6 runit >/dev/null)
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/peers.py

fuzz: $(VENV)/.deps ## many more fuzz cases than CI runs
	FUZZ_EXAMPLES=20000 $(BIN)/python -m pytest tests/unit/test_fuzz.py tests/unit/test_hcl_fuzz.py

clean:
	rm -rf $(VENV) $(DATA) .pytest_cache .mypy_cache .ruff_cache
