# The two commands that do all the set-up on a fresh machine:
#   make demo   start the local stack and run examples/prompts.jsonl end to end
#   make test   run every test (unit, adapters on the real emulators, end to end)
# and, with a real model (llama.cpp's server, installed on first use: ~10 min to compile):
#   make demo-llm   run examples/prompts-llm.jsonl through it and print the answers
PY := .venv/bin/python

.PHONY: bootstrap demo demo-llm llm-install-background test lint check-infra infra-offline up down key

bootstrap:
	@bash infra/bootstrap.sh

demo: bootstrap
	$(PY) infra/demo.py

demo-llm: bootstrap
	$(PY) infra/demo.py --llm $(DEMO_ARGS)

# The tests run in TEST_WORKERS processes (pytest-xdist); each starts its own stack on its
# own ports (tests/conftest.py worker_port_base), and worksteal evens out the long e2e files.
# The real-server tests (tests/llm/) need the model server, which compiles for about 10
# minutes on a fresh machine: its install starts first, in the background at the lowest CPU
# priority, so the build overlaps bootstrap, the lint and the other tests; tests/llm/ runs
# after them in one process (one model server) and waits for the install to end.
TEST_WORKERS ?= 3
test: llm-install-background bootstrap lint infra-offline
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal tests --ignore=tests/llm
	$(PY) -m pytest tests/llm

llm-install-background:
	@bash infra/llm_install.sh --background

# mypy checks functions/ (main.py too), client/, infra/ and tests/, strict: pyproject.toml [tool.mypy].
lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	cd functions && ../.venv/bin/lint-imports --config ../pyproject.toml --no-cache

# Offline checks of terraform/ and cloudbuild.yaml (fmt, checkov, Cloud Build schema) and
# their structural tests; plan and apply need Google Cloud and run in Cloud Build.
# make test runs the checkers (infra-offline) and, with every other test, all of tests/terraform.
check-infra: infra-offline
	$(PY) -m pytest -q tests/terraform -m "not slow"

infra-offline: bootstrap
	$(PY) terraform/checks/offline.py

up: bootstrap
	$(PY) infra/stack.py up

down:
	$(PY) infra/stack.py down

key:
	@set -a && . .run/dev/stack.env && cd functions && ../$(PY) -m promptforge.admin keys create

# The throughput benchmark (docs/benchmarks.md): PromptForge against oaib, a hand-written
# aiolimiter script and the OpenAI cookbook's processor on one rate-limited fake LLM. By
# default the whole suite of scenarios at 10,000 prompts (about 25 minutes); pass other
# options in BENCH_ARGS, e.g.
#   make bench BENCH_ARGS="--suite --prompts 2000 --cookbook-script /tmp/peers/api_request_parallel_processor.py"
BENCH_ARGS ?= --suite
.PHONY: bench
bench: bootstrap
	$(PY) -m infra.bench.throughput $(BENCH_ARGS)

# The scale and cost benchmark (docs/scale.md): N prompts through a fresh local stack with
# an instant provider; CPU and peak RSS per function, counted operations, $ per 1M prompts.
#   make bench-scale BENCH_ARGS="--prompts 20000 --base-port 8700"
.PHONY: bench-scale
bench-scale: bootstrap
	$(PY) -m infra.bench.scale $(BENCH_ARGS)
