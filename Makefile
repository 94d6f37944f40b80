# One Makefile for set-up, running and checks. `make up` runs the platform; `make test` runs every test.
PY := .venv/bin/python
PIP := .venv/bin/pip
STAMP := .venv/.installed

.PHONY: venv up down test lint typecheck migrations-check check bench

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

up: venv
	scripts/up

down:
	scripts/down

test: venv
	scripts/setup-sandbox-host
	scripts/setup-browser
	scripts/build-images
	scripts/install-agents
	scripts/test

lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

typecheck: venv
	.venv/bin/mypy orgs trajectories runs evals jetty_site jetty_cli

migrations-check: venv
	$(PY) manage.py makemigrations --check --dry-run

check: lint migrations-check typecheck

bench: venv
	$(PY) bench/gateway.py
	$(PY) bench/sandboxes.py
	$(PY) bench/agents.py
	$(PY) bench/ui.py
