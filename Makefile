# Everything the tests need is installed from nothing: a Python 3.11+ and make are enough.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install compile run test lint bench browser tools postgres image-test clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[demo,test]'
	touch $(STAMP)

# An editable install leaves our own modules uncompiled, and with PYTHONDONTWRITEBYTECODE set (as on these
# machines) every `smtp-diag` start compiles them again: ~30 ms of a ~200 ms CLI run (bench/engine.py).
compile: $(STAMP)
	$(BIN)/python -m compileall -q diag fake_smtp

install: $(STAMP) compile

# The page's end-to-end tests drive Debian's Chromium; install it when it is missing (CI runs as root).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; fi; }

# Clients that are not ours, for the fake server's scenario tests (swaks, curl, openssl s_client) and the
# engine's blocked-connection, firewall-reject and two-namespace tests (unshare, ip, iptables, nft): Debian
# packages, installed when missing, as `browser` does.
TOOLS := swaks:swaks curl:curl openssl:openssl unshare:util-linux ip:iproute2 iptables:iptables nft:nftables
tools:
	@missing=""; for pair in $(TOOLS); do command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi; fi

# The store tests start a real PostgreSQL server of their own (tests/postgres_server.py): Debian's package,
# installed when initdb is missing (its binaries live in /usr/lib/postgresql/<version>/bin, off PATH).
postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; fi; }

# The manifests are checked offline against Kubernetes' schemas (the kustomization has none: its test checks it).
K8S_MANIFESTS := $(filter-out %/kustomization.yaml,$(wildcard deploy/kubernetes/*.yaml))

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/kubernetes-validate --strict --quiet --kubernetes-version 1.30.0 $(K8S_MANIFESTS)
	$(BIN)/hadolint Dockerfile

# The suite mostly waits on sockets and timeouts (a serial run uses ~30 s of CPU in ~110 s), so two workers
# per core keep both cores busy. loadscope keeps a module's tests on one worker: the browser tests share one
# Chromium per module.
TEST_WORKERS ?= 4

test: lint browser tools postgres
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadscope

run: install
	$(BIN)/smtp-diag serve --demo

bench: install compile
	$(BIN)/python bench/run_all.py

# The container image, built and smoke-tested here (deploy/image/image-test.sh: debootstrap, buildah, a real
# check inside it). Not part of `make test`: a first run builds the Debian base (~2-3 minutes, a ~250 MB
# download), which CI's time budget should not pay on every run. Root only.
image-test: install
	@command -v buildah >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah debootstrap; }
	deploy/image/image-test.sh

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build
