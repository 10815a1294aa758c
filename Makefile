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

.PHONY: run test lint typecheck bench fuzz clean system-deps

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip "setuptools>=77"

$(RUNSTAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $@

# --no-compile: the tools' and test peers' packages (Django alone is ~2,800 files) are
# byte-compiled by the imports that use them, not all up front. IOREACTOR_NO_EXTENSIONS:
# the editable build would compile the hot path too, and the rule below compiles it again
# (in place, where it can tell what changed): once is enough (86 CPU-seconds here).
$(STAMP): pyproject.toml setup.py | $(PY)
	IOREACTOR_NO_EXTENSIONS=1 $(PY) -m pip install --quiet --no-compile -e '.[dev]'
	touch $@ $(RUNSTAMP)

# An editable install compiles once; a changed .py or .pxd is recompiled here, so the
# compiled build never runs stale code. No C compiler: the pure build, with a warning.
$(EXTSTAMP): $(COMPILED) setup.py | $(STAMP)
	$(PY) setup.py --quiet build_ext --inplace
	touch $@

run: $(RUNSTAMP)
	$(VENV)/bin/ioreactor serve

# The tests of the layers that have compiled modules (and of what runs straight on
# them): `make test` runs them again on the pure build, after the whole suite on the
# compiled one. The ASGI and WSGI servers' own tests are not among them (their
# modules are not compiled; they run on the HTTP protocol the rest of tests/http covers).
PURE_TESTS := tests/loop tests/net tests/codec tests/http tests/test_echo.py \
	tests/test_heartbeat.py tests/test_idle.py \
	--ignore=tests/http/asgi --ignore=tests/http/wsgi

# The whole suite on the compiled build, then the layers' tests on the pure one.
test: system-deps $(STAMP) $(EXTSTAMP)
	$(PY) -m ruff check src tests
	$(PY) -m mypy
	$(VENV)/bin/lint-imports
	$(PY) -c 'import ioreactor, sys; kind = ioreactor.build_kind(); print("build:", kind); \
	  sys.exit(kind != "compiled" and "the compiled build is missing (see the warning above)")'
	$(PY) -m pytest -q -n 2 --dist worksteal --timeout=120 --durations=15
	IOREACTOR_NO_EXTENSIONS=1 $(PY) -m pytest -q -n 2 --dist worksteal --timeout=120 $(PURE_TESTS)

# nginx and HAProxy for the cluster test (tests/production, docs/deploy.md): Debian's
# packages, installed when this runs as root with apt-get and they are missing.
# The programs the tests drive, each with the Debian package that has it. `make test`
# installs the missing ones when it runs as root with apt-get; otherwise it names them
# (and each test that needs one says so when it skips).
SYSTEM_PROGRAMS := wrk:wrk nginx:nginx-light haproxy:haproxy h2load:nghttp2-client \
	curl:curl openssl:openssl ip:iproute2 systemd-socket-activate:systemd \
	systemd-analyze:systemd prlimit:util-linux gcc:gcc

system-deps:
	@missing=""; \
	for pair in $(SYSTEM_PROGRAMS); do \
		program=$${pair%%:*}; package=$${pair##*:}; \
		command -v $$program >/dev/null || [ -x /usr/sbin/$$program ] || \
			case " $$missing " in *" $$package "*) ;; *) missing="$$missing $$package";; esac; \
	done; \
	if [ -z "$$missing" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing:$$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null; \
	else echo "the tests need:$$missing (as root: apt-get install$$missing)"; fi

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
