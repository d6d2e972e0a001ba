# Atelier's two set-up commands for a fresh machine are `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_WORKERS ?= 3

.PHONY: venv proto lint test demo services prometheus node clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,demo,ml]'
	# tritonclient's metadata asks for protobuf<7; its code runs on the project's protobuf 7.
	$(PY) -m pip install -q --no-deps -c constraints.txt tritonclient
	touch $(STAMP)

venv: $(STAMP)

## Regenerate Python code and stubs from proto/ and lint the contract.
proto: venv
	$(PY) scripts/gen_proto.py
	$(VENV)/bin/buf lint

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) scripts/gen_proto.py --deps-only
	$(VENV)/bin/buf lint

## Start what the tests need that this machine provides as a system service (PostgreSQL), and install
## Debian's Slurm and munge for the Slurm tests (which start their own daemons) and Debian's nginx (the
## gateway runs it in front of its gRPC front door; the tests start their own).
services:
	export PATH="$$PATH:/usr/sbin:/sbin"; command -v slurmctld >/dev/null && command -v slurmd >/dev/null && \
		command -v sbatch >/dev/null && command -v munged >/dev/null && command -v nginx >/dev/null || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			slurm-wlm munge nginx)
	pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start
	for i in $$(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done; echo "PostgreSQL did not start" >&2; exit 1

## Debian's Prometheus (and promtool), for `atelier up --with-prometheus` and the monitoring tests.
prometheus:
	command -v prometheus >/dev/null && command -v promtool >/dev/null || \
		(apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus)

## The Node client test's packages (tests/node, from its lock file) and the third-party protos it loads.
node: venv
	$(PY) scripts/gen_proto.py --deps-only
	cd tests/node && npm ci --no-audit --no-fund

test: venv services prometheus lint node
	$(PY) -m pytest -n $(PYTEST_WORKERS) tests

demo: venv
	$(PY) -m demo

clean:
	rm -rf $(VENV) .proto-deps .mypy_cache .ruff_cache tests/node/node_modules
