# wpclone: the two commands a newcomer needs are `make demo` and `make test`.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: demo demo-down setup dev kube-build up down status seed sources cluster-up cluster-down test unit lint bench \
	bench-load bench-chaos bench-restore clean

demo: dev       ## everything up (MariaDB, site host, Airflow), seed the source, clone it through the API
	@$(PY) -m wpclone.local demo

demo-down:        ## stop everything the demo started; leaves no process behind
	@[ ! -x $(PY) ] || $(PY) -m wpclone.local down

setup: dev kube-build  ## everything: what the demo needs and the cluster tier's control plane (idempotent)

dev:              ## apt packages, the venv, our package and its compiled engine: what the demo and tests run on
	@scripts/setup.sh

kube-build:       ## build the cluster tier's Kubernetes 1.20.2 control plane, once per machine (7-8 min; then cached)
	@scripts/setup.sh --cluster

up: dev         ## start the local stack (MariaDB + PHP site host)
	@$(PY) -m wpclone.local up

TEST_STATE := $(CURDIR)/.local/test

down:             ## stop the local stack and cluster (and the tests' own); leaves no process behind
	@[ ! -x $(PY) ] || $(PY) -m wpclone.local down
	@[ ! -x $(PY) ] || [ ! -d $(TEST_STATE) ] || WPCLONE_STATE_DIR=$(TEST_STATE) $(PY) -m wpclone.local down

status:
	@$(PY) -m wpclone.local status

seed: up          ## create the realistic source site (SIZE=posts to scale it)
	@$(PY) -m wpclone.local seed $(if $(SIZE),--posts $(SIZE))

cluster-up: dev kube-build  ## start the local Kubernetes control plane; prints its kubeconfig for kubectl
	@$(PY) -m wpclone.local cluster-up

cluster-down:     ## stop the local Kubernetes control plane (its objects are kept for the next start)
	@[ ! -x $(PY) ] || $(PY) -m wpclone.local cluster-down

sources: dev    ## the registered sources (add one: .venv/bin/python -m wpclone.local add-source --help)
	@$(PY) -m wpclone.local sources

test: setup  ## install, lint, run every test tier, then stop the tests' stack (WPCLONE_KEEP_STACK=1 keeps it)
	@.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	  [ "$$WPCLONE_KEEP_STACK" = 1 ] || WPCLONE_STATE_DIR=$(TEST_STATE) $(PY) -m wpclone.local down >/dev/null; \
	  exit $$rc

UNIT := not integration and not dags and not system and not kube

unit: dev       ## the fast tests only (no marker: no server, no Airflow); tests/conftest.py marks the rest
	@$(PY) -m pytest -m "$(UNIT)" $(PYTEST_ARGS)

lint: dev
	@.venv/bin/ruff check . && .venv/bin/ruff format --check . && .venv/bin/mypy

bench: up         ## benchmarks: rewrite vs sed, copy vs raw dump|load, one clone under a real scheduler
	@$(PY) bench/rewrite.py
	@$(PY) bench/copy_database.py
	@$(PY) bench/clone_timing.py

bench-load: dev ## 3 rounds of 20 concurrent clones through the jobs API (accept/status latency, 20/20, nothing left)
	@$(PY) bench/load.py

bench-chaos: dev ## kill -9 a copy step, its task runner, every try, the scheduler; freeze a copy step: jobs recover cleanly
	@$(PY) bench/chaos.py

bench-restore: dev ## restore-backup of the demo site's backup vs copy-database of the same data (ratio)
	@$(PY) bench/restore.py

clean: down
	rm -rf .local
