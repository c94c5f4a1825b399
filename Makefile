# ccx-licensing. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_PYTHON_DOWNLOADS := never
export PATH := $(HOME)/.local/bin:$(PATH)
UV = $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
PY := .venv/bin/python
PYTEST_ARGS ?=
STACK_DIR := $(or $(CCXLIC_STACK_DIR),$(CURDIR)/.stack)
# What runs here reads what `make up` wrote: each program's PostgreSQL role (pg.env) and, with
# KAFKA_SECURITY=scram-tls (the broker with SCRAM+TLS and ACLs), each program's Kafka user (client.env); the
# benchmarks and `ccxlic kafka setup` run as the broker's admin (admin.env). The tests read them themselves.
SCRAM = $(filter scram-tls,$(KAFKA_SECURITY))
CLIENT_ENV = set -a && . "$(STACK_DIR)/pg.env" && $(if $(SCRAM),. "$(STACK_DIR)/kafka-scram-tls/client.env" &&,) set +a &&
ADMIN_ENV = set -a && . "$(STACK_DIR)/pg.env" && $(if $(SCRAM),. "$(STACK_DIR)/kafka-scram-tls/admin.env" &&,) set +a &&
# make chaos: the harness as the admin, the services it starts as their own roles and Kafka users
CHAOS_ENV = set -a && . "$(STACK_DIR)/pg.env" && $(if $(SCRAM),. "$(STACK_DIR)/kafka-scram-tls/client.env" && . "$(STACK_DIR)/kafka-scram-tls/admin.env" &&,) set +a &&

.PHONY: help deps up down status promtool kustomize asyncapi-spec chaos run run-services run-consumption run-compliance run-alerting run-authority run-agent run-console browser test test-unit test-integration test-e2e screenshots fuzz bench backtest bench-quick lint format typecheck schemas check-schemas clean

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  make %-18s %s\n", $$1, $$2}'

deps: ## install what a fresh machine lacks: uv, PostgreSQL, the Python deps, the Kafka jars
	@bash deploy/install-deps.sh
	@$(UV) sync --frozen --all-packages
	@bash deploy/stack.sh fetch

up: deps ## start Kafka (KRaft, 127.0.0.1:9092; KAFKA_SECURITY=scram-tls: SASL/SCRAM over TLS only, with ACLs) and PostgreSQL (127.0.0.1:5432/ccxlic); idempotent
	@bash deploy/stack.sh up
	@$(if $(SCRAM),$(ADMIN_ENV) .venv/bin/ccxlic kafka setup,true)

down: ## stop Kafka and PostgreSQL
	@bash deploy/stack.sh down

status: ## say whether the stack runs
	@bash deploy/stack.sh status

run: up ## start the stack, the services (the licensing authority, the Smart Agent and the console too), a demo admin, the demo simulation and the live status (Ctrl-C stops; `make down` stops the stack)
	@$(CLIENT_ENV) .venv/bin/ccxlic admin demo-user admin
	@echo "consumption: http://127.0.0.1:$${CCXLIC_CONSUMPTION_HTTP_PORT:-8181}  compliance: http://127.0.0.1:$${CCXLIC_COMPLIANCE_HTTP_PORT:-8182}  alerting: http://127.0.0.1:$${CCXLIC_ALERTING_HTTP_PORT:-8183}  agent: http://127.0.0.1:$${CCXLIC_AGENT_HTTP_PORT:-8184}  authority: http://127.0.0.1:$${CCXLIC_AUTHORITY_HTTP_PORT:-8190}  console: http://127.0.0.1:$${CCXLIC_CONSOLE_HTTP_PORT:-8180}"
	@$(CLIENT_ENV) .venv/bin/ccxlic run all --scenario $${SCENARIO:-demo} --status

run-services: up ## run the services (the authority and the agent too) and the minute ticker, no simulation (logs on stderr)
	@$(CLIENT_ENV) .venv/bin/ccxlic run all

run-consumption: up ## run only the consumption computer
	@$(CLIENT_ENV) .venv/bin/ccxlic run consumption --no-ticker

run-compliance: up ## run only compliance
	@$(CLIENT_ENV) .venv/bin/ccxlic run compliance --no-ticker

run-alerting: up ## run only alerting
	@$(CLIENT_ENV) .venv/bin/ccxlic run alerting --no-ticker

run-authority: up ## run only the licensing authority (http://127.0.0.1:8190, API at /openapi.json)
	@$(CLIENT_ENV) .venv/bin/ccxlic run authority --no-ticker

run-agent: up ## run only the Smart Agent
	@$(CLIENT_ENV) .venv/bin/ccxlic run agent --no-ticker

run-console: up ## run only the console (http://127.0.0.1:8180; `ccxlic admin create-user NAME --role admin` first)
	@$(CLIENT_ENV) .venv/bin/ccxlic run console --no-ticker

promtool: ## build promtool (the Prometheus rules and dashboards checks) from its Go module once; cached in ~/.cache/ccxlic
	@bash deploy/install-deps.sh promtool

kustomize: ## build kustomize (to render deploy/k8s for its validation) from its Go module once; cached in ~/.cache/ccxlic
	@bash deploy/install-deps.sh kustomize

asyncapi-spec: ## fetch the AsyncAPI 3.0 JSON Schema (npm's @asyncapi/specs, integrity-checked) once; cached in ~/.cache/ccxlic
	@bash deploy/install-deps.sh asyncapi

browser: ## install the browser of the console's tests (Debian's chromium) if it is missing
	@bash deploy/install-deps.sh browser

test: up browser promtool kustomize asyncapi-spec ## every tier (unit, integration, e2e and the console in a real browser) on the real stack
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: deps promtool kustomize asyncapi-spec ## pure tests only, no broker or database
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: up ## tests against real Kafka and PostgreSQL
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: up browser promtool ## the services as separate processes on the real stack (and the console in a browser)
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

screenshots: up browser ## redraw docs/screenshots/ (the overview and an instance page) from the browser test
	CCXLIC_SCREENSHOTS=docs/screenshots $(PY) -m pytest tests/e2e/test_console_browser.py -q $(PYTEST_ARGS)

fuzz: deps ## the property and fuzz tests of the contract, the error policy and the state machines, long (FUZZ_EXAMPLES, default 20000)
	CCXLIC_FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-20000} $(PY) -m pytest -p no:cacheprovider tests/unit/test_contract.py tests/unit/test_contract_differential.py tests/unit/test_policy.py tests/unit/compliance/test_machine.py tests/unit/alerting/test_machine.py -k "total or agree or describes or every_record or every_step" $(PYTEST_ARGS)

bench: up ## the benchmarks (B0-B5, each next to its baseline) on the local stack; prints a table, writes bench/results.json
	$(ADMIN_ENV) $(PY) bench/run.py --profile $(BENCH_ARGS)

chaos: up ## fault injection: the chain as processes, each as its own role, under thirteen faults (FAULTS=3,12 picks some); prints the table, writes bench/chaos.json
	$(CHAOS_ENV) $(PY) bench/chaos.py $(if $(FAULTS),--only $(FAULTS),)

backtest: deps ## the forecast's backtest: seeded simulated weeks, the forecast walked hour by hour and interval by interval (no stack needed); prints the tables, writes bench/backtest*.json
	$(PY) bench/backtest.py --json bench/backtest.json
	$(PY) bench/backtest.py --step interval --json bench/backtest-interval.json

bench-quick: up ## the benchmarks at smoke size (what `make test` runs)
	$(ADMIN_ENV) $(PY) bench/run.py --quick --json /tmp/ccxlic-bench-quick.json

lint: ## ruff: lint and format check (changes nothing)
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .

format: ## ruff: fix what it can and format
	$(UV) run --frozen ruff check --fix .
	$(UV) run --frozen ruff format .

typecheck: ## mypy --strict on every source file: the libs, the services (their apps and the CLI too) and the bench
	$(UV) run --frozen mypy libs/contract/src libs/runtime/src libs/testing/src libs/rules/src libs/audit/src \
	  services/consumption/src services/compliance/src services/alerting/src services/authority/src services/agent/src services/console/src services/cli/src services/whatif/src bench/run.py bench/chaos.py bench/backtest.py

schemas: ## regenerate docs/schemas from the contract models
	$(PY) -m ccxlic_contract.schemas docs/schemas

check-schemas: ## fail when docs/schemas drifts from the models
	$(PY) -m ccxlic_contract.schemas docs/schemas --check

clean: down ## stop the stack and delete its data (.stack)
	rm -rf .stack
