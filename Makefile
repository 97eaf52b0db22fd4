# QualiTeacher Edge — the two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
DEMO_OUT ?= runs/demo
# The stamp records that the venv holds this pyproject's dependencies; it is rebuilt when they change.
STAMP  := $(VENV)/.installed

.PHONY: install sysdeps demo test test-fast lint reliability clean

sysdeps:
	@# Debian packages the tests and the runtime need: ffmpeg (loopback video streams, the report's
	@# H.264 videos), chromium (tests/test_report.py opens the report in it, headless) and opencv-doc
	@# (its sample photos: the validation and wider held-out photos no run trains on, qt_train/data/unseen.py).
	@MISSING=""; command -v ffmpeg >/dev/null 2>&1 || MISSING="ffmpeg"; \
	  command -v chromium >/dev/null 2>&1 || MISSING="$$MISSING chromium"; \
	  [ -d /usr/share/doc/opencv-doc/examples/data ] || MISSING="$$MISSING opencv-doc"; \
	  [ -z "$$MISSING" ] || { \
	  echo "installing Debian packages:$$MISSING"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$MISSING >/dev/null; }

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

# The reliability suite (docs/reliability.md), one pytest process per file: stream faults on loopback
# (stalls, damaged packets, a resolution change, a full disk; a source killed and restarted, a
# truncated file), bounded fuzzing, training faults (SIGKILLs, a full disk), and the 10 s form of the
# 4-stream load test (the 10-minute form: OMP_NUM_THREADS=1 $(PY) bench/load.py --out runs/load).
# `make test` runs these files too; this target runs only them. Full-disk tests mount a small tmpfs
# (root) and skip without the right to.
RELIABILITY := tests/test_stream_faults.py tests/test_runtime_streams.py \
	tests/test_runtime_pipeline.py::test_truncated_video_file_is_reported \
	tests/test_fuzz.py tests/test_train_faults.py tests/test_load.py

reliability: install
	@status=0; for t in $(RELIABILITY); do echo "== $$t"; \
	  OPENVINO_TELEMETRY_OPT_OUT=1 $(PY) -m pytest -q -p no:cacheprovider $$t || status=1; done; exit $$status

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache *.egg-info
