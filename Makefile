# Mechanical MOOC: `make run` sets up and starts the whole site; `make test` runs the whole suite.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=
# The web server's port (`make run PORT=8100`). The emails' links follow it (SITE_PORT), unless
# SITE_URL is set (.env or the environment), which then wins.
PORT ?= 8000

.PHONY: run test bench browser migrations-check clean-venv

run: $(INSTALLED) .env
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py load_demo --with-history
	$(BIN)/python manage.py dev_admin
	@echo "Starting web (http://127.0.0.1:$(PORT)), the workers and beat; Ctrl-C stops them all."
	@echo "Links in emails start with: $$(SITE_PORT=$(PORT) $(BIN)/python manage.py shell -v 0 -c 'from django.conf import settings; print(settings.SITE_URL)')"
	SITE_PORT=$(PORT) PATH="$(abspath $(BIN)):$$PATH" $(BIN)/honcho -f Procfile.dev start

test: $(INSTALLED) browser
	$(BIN)/pytest $(PYTEST_ARGS)

# Fails when a model changed without its migration (CI runs it).
migrations-check: $(INSTALLED)
	DJANGO_READ_DOT_ENV=false DEBUG=true $(BIN)/python manage.py makemigrations --check --dry-run

bench: $(INSTALLED)
	@for benchmark in bench/bench_*.py; do $(BIN)/python "$$benchmark" || exit 1; done

# Playwright's Python package and Debian's chromium, for the browser tests. Neither is
# required: without them those tests skip with the reason (and CI, where CI=true, fails).
browser: $(INSTALLED)
	@$(BIN)/python -c "import playwright" 2>/dev/null \
		|| $(BIN)/pip install --quiet -r requirements-browser.txt \
		|| echo "make: could not install Playwright; the browser tests will skip."
	@scripts/install-chromium

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "make: Python 3.11 or newer is needed (PYTHON=$(PYTHON))."; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): $(BIN)/python requirements.txt requirements-dev.txt
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	@touch $@

# The local settings file for development: DEBUG on. See .env.example for every variable.
.env:
	@printf '# Local development settings, written by make run. Every variable: .env.example\nDEBUG=true\n' > $@

clean-venv:
	rm -rf $(VENV)
