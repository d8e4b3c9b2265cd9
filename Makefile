# clusterlink: one entry point for people and CI.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEB_PACKAGES := iproute2 iptables nftables iputils-ping iperf3 procps wireguard-go wireguard-tools
STAMP := $(VENV)/.installed

.PHONY: test lint fmt unit deps venv demo bench crds clean

test: deps venv lint ## everything CI runs: lint, type check, every test (root tests included)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/pytest -q

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

fmt: venv ## format and auto-fix
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

unit: venv ## fast tests that need no root
	$(BIN)/pytest -q -m "not netns"

deps: ## Debian packages the project needs (installed only when missing)
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

crds: venv ## regenerate deploy/crds from the models
	$(BIN)/clusterlink gen-crds deploy/crds

demo: deps venv ## the lab demo: build a federation, connect it, check every pod pair
	-$(BIN)/kosmosctl lab down demo >/dev/null 2>&1
	$(BIN)/kosmosctl lab demo

bench: venv ## benchmarks; each prints its figures and ratios to its baseline
	@failed=""; for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || failed="$$failed $$b"; done; \
	if [ -n "$$failed" ]; then echo "goals missed in:$$failed"; exit 1; fi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
