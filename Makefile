# QualiTeacher Edge — the two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
DEMO_OUT ?= runs/demo
# The stamp records that the venv holds this pyproject's dependencies; it is rebuilt when they change.
STAMP  := $(VENV)/.installed

.PHONY: install sysdeps demo test test-fast lint clean

sysdeps:
	@# Debian packages the tests and the runtime need (ffmpeg serves loopback video streams).
	@command -v ffmpeg >/dev/null 2>&1 || { \
	  echo "installing Debian packages: ffmpeg"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq ffmpeg >/dev/null; }

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c constraints.txt -e '.[all]'
	@touch $(STAMP)

install: sysdeps $(STAMP)

demo: install
	$(PY) -m qt_apps.demo --out $(DEMO_OUT)

# One pytest process per test file: see tests/run_by_file.py for why.
test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	$(PY) tests/run_by_file.py

test-fast: install
	$(PY) tests/run_by_file.py -m "not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache *.egg-info
