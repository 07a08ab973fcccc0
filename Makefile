# Two commands set everything up on a fresh machine: `make run` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
DEBS    := skopeo docker-registry podman wrk hey curl openssl
DATA    ?= ./ocigate-data
LISTEN  ?= 0.0.0.0:5000

.PHONY: run test lint unit bench deps venv debs docker-cli clean

$(BIN)/ocigate: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(BIN)/ocigate

run: venv
	$(BIN)/ocigate serve --listen $(LISTEN) --data-dir $(DATA)

# Debian packages the tests and the benchmark drive for real; installed when missing.
debs:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi

# The Docker CLI (it logs in without an engine) comes with the machine image, not Debian.
docker-cli:
	@command -v docker >/dev/null || { echo "the docker CLI is required by tests/auth" >&2; exit 1; }

deps: venv debs docker-cli

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: deps lint
	$(BIN)/pytest -q

bench: deps
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) $(DATA)
