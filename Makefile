# ioreactor: `make run` starts the main job, `make test` runs the whole suite.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-dev
RUNSTAMP := $(VENV)/.installed
EXTSTAMP := $(VENV)/.extensions
# The compiled hot path: every module with a .pxd beside its .py (see setup.py).
PXD      := $(shell find src/ioreactor -name '*.pxd')
COMPILED := $(PXD) $(wildcard $(PXD:.pxd=.py))

.PHONY: run test lint typecheck bench fuzz clean cluster-deps

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip "setuptools>=77"

$(RUNSTAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

$(STAMP): pyproject.toml setup.py | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@ $(RUNSTAMP)

# An editable install compiles once; a changed .py or .pxd is recompiled here, so the
# compiled build never runs stale code. No C compiler: the pure build, with a warning.
$(EXTSTAMP): $(COMPILED) setup.py | $(STAMP)
	$(PY) setup.py --quiet build_ext --inplace
	touch $@

run: $(RUNSTAMP)
	$(VENV)/bin/ioreactor serve

# The whole suite on the compiled build, then again on the pure one.
test: $(STAMP) $(EXTSTAMP)
	$(PY) -m ruff check src tests
	$(PY) -m mypy
	$(VENV)/bin/lint-imports
	$(PY) -c 'import ioreactor, sys; kind = ioreactor.build_kind(); print("build:", kind); \
	  sys.exit(kind != "compiled" and "the compiled build is missing (see the warning above)")'
	$(PY) -m pytest -q -n 2 --timeout=120
	IOREACTOR_NO_EXTENSIONS=1 $(PY) -m pytest -q -n 2 --timeout=120

# nginx and HAProxy for the cluster test (tests/production, docs/deploy.md): Debian's
# packages, installed when this runs as root with apt-get and they are missing.
cluster-deps:
	@missing=""; \
	command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing="$$missing nginx-light"; \
	command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing="$$missing haproxy"; \
	if [ -z "$$missing" ]; then echo "nginx and haproxy are installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && apt-get install -y -q $$missing; \
	else echo "the cluster test needs:$$missing (as root: apt-get install$$missing)"; fi

bench: $(STAMP)
	$(VENV)/bin/ioreactor bench echo

# Coverage-guided fuzzing of the HTTP request path (atheris); not part of `make test`.
FUZZ_SECONDS ?= 300
fuzz: $(STAMP)
	$(PY) -m pip install --quiet 'atheris>=2.3'
	$(PY) fuzz/fuzz_http.py -max_total_time=$(FUZZ_SECONDS)

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
	find src -name '*.so' -o -name '*.c' -path 'src/ioreactor/*' | xargs rm -f
