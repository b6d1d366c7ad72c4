# lars_hvd: `make demo` and `make test` install everything first (see .ci/install.sh).
# STACK=auto|pinned|current (docs/stacks.md): auto is pinned (TF 2.15.1) on Python 3.10-3.11
# and current (TF 2.21 + tf-keras) on 3.12-3.13, in .venv; a named stack gets .venv-STACK.
STACK ?= auto
ifeq ($(STACK),auto)
VENV ?= .venv
else
VENV ?= .venv-$(STACK)
endif
PY := $(VENV)/bin/python
NP ?= 2
TEST_WORKERS ?= 2
STAMP := $(VENV)/.lars_hvd-installed
# A hang must fail, not stall: Horovod shuts a job down after this many stalled seconds.
export HOROVOD_STALL_SHUTDOWN_TIME_SECONDS ?= 120
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install demo test test-fast test-core lint study study-quick study-docs bench bench-docs clean

install: $(STAMP)

$(STAMP): setup.py .ci/install.sh
	VENV=$(VENV) STACK=$(STACK) bash .ci/install.sh
	touch $@

## The main job, `python -m lars_hvd.train` on $(NP) local processes: Fashion-MNIST, LARS,
## global batch 4096, 20 epochs; its logs and checkpoints go to runs/<time stamp>/.
demo: install
	$(VENV)/bin/horovodrun -np $(NP) -H localhost:$(NP) --gloo $(PY) -m lars_hvd.train

## Every test (unit, and real 2-process Gloo and MPI runs), after the linter: on
## $(TEST_WORKERS) pytest-xdist workers at a lower CPU priority, a file's tests on one; beside
## them, from the start, the Slurm and two-host tests (mostly waiting; Slurm's own timers
## need a node that answers in time), their output kept in runs/tests-cluster.log and
## printed at the end (docs/testing.md).
test: install lint
	@mkdir -p runs
	$(PY) -m pytest -m cluster tests --junitxml=runs/tests-cluster.xml \
	  > runs/tests-cluster.log 2>&1 & cluster=$$!; \
	nice -n 10 $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not cluster" tests; \
	rest=$$?; \
	wait $$cluster; clustered=$$?; \
	echo "== the cluster tests (runs/tests-cluster.log, exit code $$clustered):"; \
	cat runs/tests-cluster.log; [ $$rest = 0 ] && [ $$clustered = 0 ]

## The inner loop while coding: every test that starts no process (no horovodrun, no
## subprocess) and runs no whole command (tests/pytest.ini's markers `multiprocess` and
## `slow`), on $(TEST_WORKERS) workers (docs/testing.md).
test-fast: install
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not multiprocess and not slow" tests

## The core of the suite, for a second stack (CI runs it with STACK=current): the tests
## marked `core` (the optimizer references, serialization, Gloo and MPI under horovodrun -np 2,
## training in-process and under horovodrun, resume, preemption, elastic, the stack checks,
## the ImageNet reader's pixel path and the input-wait measure).
test-core: install
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m core tests

## Accuracy vs global batch (SGD / LARS / LAMB and related methods, BN and no-BN nets,
## a ResNet-14, time to target) -> runs/study/.
## Resumable: finished runs are skipped. About 2.5 hours on 2 CPU cores (docs/study.md).
study: install
	$(PY) -m lars_hvd.study

## A small subset -> runs/study-quick/.
study-quick: install
	$(PY) -m lars_hvd.study --quick

## The published study: completes and redraws docs/results/ (commit what it changes).
study-docs: install
	$(PY) -m lars_hvd.study --out docs/results

## Speed, side by side: throughput, the train path's overhead, LARS vs SGD vs LAMB on
## ResNet-50, Horovod allreduce (Gloo, MPI), projected scaling -> runs/bench/.
## The quick set. Full settings: python -m lars_hvd.bench all
bench: install
	$(PY) -m lars_hvd.bench all --quick

## The published benchmark results: rewrites docs/results/bench/ (commit what it changes).
bench-docs: install
	$(PY) -m lars_hvd.bench all --quick --out docs/results/bench

## pycodestyle (with its blank-line rules, E30x, which ruff offers as preview), pyflakes,
## import order, bugbear, pyupgrade, flake8-pie, and no unused noqa; no issue numbers in the
## code (the history is git's and docs/'s).
lint: install
	$(VENV)/bin/ruff check --isolated --preview --line-length 100 \
	  --select E,F,W,I,B,UP,PIE,RUF100 lars_hvd models tests
	@! grep -rniE --include='*.py' --include='*.sh' --include='*.sbatch' \
	  'issue #?[0-9]+' lars_hvd models launch tests || \
	  { echo "lint: an issue number in the code (above); say what the code does instead"; exit 1; }

clean:
	rm -rf $(VENV) build *.egg-info
