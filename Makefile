# Two commands set everything up on a fresh machine: `make run` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
# Debian packages the tests and the benchmark drive for real (README, "Quick start"):
# docker.io is the docker CLI, containerd brings ctr; PostgreSQL, Ceph (radosgw on a throw-away
# one-OSD cluster) and HAProxy are the objects backend's real parts; chromium and its driver run
# the web UI's browser tests.
DEBS    := skopeo docker-registry podman docker.io containerd wrk hey curl openssl \
           postgresql-15 radosgw ceph-common ceph-mon ceph-osd haproxy chromium chromium-driver
DATA    ?= ./ocigate-data
LISTEN  ?= 0.0.0.0:5000
# What is installed into the venv: running needs ocigate alone, the tests their extras too.
RUN_DEPS  := $(VENV)/.run-deps
TEST_DEPS := $(VENV)/.test-deps

.PHONY: run test lint bench deps venv debs clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(RUN_DEPS): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(TEST_DEPS): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(RUN_DEPS)

venv: $(TEST_DEPS)

run: $(RUN_DEPS)
	$(BIN)/ocigate serve --listen $(LISTEN) --data-dir $(DATA)

# Installed when missing, without starting docker-registry's system service (see .ci/debs).
debs:
	@.ci/debs $(DEBS)

deps: $(TEST_DEPS) debs

lint: $(TEST_DEPS)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: deps lint
	$(BIN)/pytest -q

bench: deps
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) $(DATA)
