# propdesk: `make run` starts the whole platform with demo data; `make test` runs the full suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
WEB_PORT ?= 8000
export WEB_PORT

.PHONY: run test setup lint bench clean-demo

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

setup: $(VENV)/.installed

.env: | $(VENV)/.installed
	./scripts/write-dot-env.sh $(PY)

run: $(VENV)/.installed .env
	./scripts/ensure-redis.sh $(PY)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	@echo
	@echo "  propdesk:  http://127.0.0.1:$(WEB_PORT)/         (log in as alice / propdesk-alice)"
	@echo "  admin:     http://127.0.0.1:$(WEB_PORT)/admin/   (staff / propdesk-staff)"
	@echo "  API docs:  http://127.0.0.1:$(WEB_PORT)/api/docs/"
	@echo
	$(VENV)/bin/honcho start -f Procfile

# The full suite on PostgreSQL (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/propdesk)
# and Redis (127.0.0.1:6379, database 14 for tests, 13 for the end-to-end stack).
test: $(VENV)/.installed
	$(VENV)/bin/pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

# Benchmarks (not tests): each starts what it needs and prints its figures.
bench: $(VENV)/.installed
	$(PY) bench/order_path.py

bench-plans: $(VENV)/.installed
	$(PY) bench/plans.py

clean-demo:
	rm -f var/propdesk.sqlite3*
