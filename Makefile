# How CNNs learn: build, test and run the executable book.   `make` (or `make help`) lists the targets.
#
#   make book               set up .venv, execute every chapter (quick mode), build the HTML
#   make book MODE=full     the same in full mode (the website build)
#   make test               lib unit tests + every chapter in quick mode + pipeline tests (reuses what `make book`
#                           executed: each chapter runs once per cache key)
#
# Variables: MODE=quick|full  SEED=<int>  DEVICE=auto|cpu|cuda  PYTHON=<python3.11>  NAME=<chapter>  DATA=<file>
#            JOBS=<workers> (default: the number of cores)  SCHEDULER=<tcp://host:8786> (a running Dask cluster)

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
MODE ?= quick
SEED ?= 0
DEVICE ?= auto
# Chapters execute as tasks on Dask: a local cluster of JOBS worker processes (one chapter and one torch thread
# each), or the running cluster at SCHEDULER (its workers run this checkout: PYTHONPATH=<checkout> dask worker ADDR).
JOBS ?= $(shell nproc 2>/dev/null || echo 1)
SCHEDULER ?=
export JOBS SCHEDULER
PYTEST_ARGS ?=
MATHJAX_VERSION := 3.2.2

VENV := .venv
PY := $(VENV)/bin/python
VENV_STAMP := $(VENV)/.installed
MATHJAX := _build/npm/node_modules/mathjax/es5/tex-mml-chtml.js
HTML := _build/html

# Torch on 2 cores runs these small problems much faster with one intra-op thread per chapter, one chapter per core
# (see `make bench-threads` and README, *Running locally*).
export OMP_NUM_THREADS ?= 1
unexport MPLBACKEND

.PHONY: help venv mathjax browser execute chapter stage html book test check-html faults notebooks-branch bench reference-timings bench-threads pdf lab clean clean-venv

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'
	@echo "  variables: MODE=$(MODE) SEED=$(SEED) DEVICE=$(DEVICE) JOBS=$(JOBS) SCHEDULER=$(SCHEDULER) NAME=<chapter>"

$(VENV_STAMP): environment.yml lib/pyproject.toml
	$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 11) <= v <= (3, 13) else f"Python 3.11, 3.12 or 3.13 is required (every pinned package of environment.yml has wheels for these); found {v[0]}.{v[1]}: set PYTHON=python3.11 (or 3.12, 3.13), or use conda: conda env create -f environment.yml")'
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	mkdir -p _build
	awk '/^ *- pip:/{f=1; next} f && /^ *- /{sub(/^ *- /, ""); print; next} f{exit}' environment.yml > _build/requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r _build/requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e lib
	touch $@

venv: $(VENV_STAMP) ## create .venv from environment.yml (the one dependency spec)

$(MATHJAX):
	npm install --silent --no-audit --no-fund --prefix _build/npm mathjax@$(MATHJAX_VERSION)
	test -f $@

mathjax: $(MATHJAX) ## vendor MathJax from npm (the book never loads it from a CDN)

execute: $(VENV_STAMP) ## execute all chapters with papermill, JOBS at a time (cached; MODE, SEED, DEVICE, SCHEDULER)
	$(PY) -m pipeline execute --mode $(MODE) --seed $(SEED) --device $(DEVICE) --jobs $(JOBS) $(if $(SCHEDULER),--scheduler $(SCHEDULER))

chapter: $(VENV_STAMP) ## execute one chapter: make chapter NAME=<stem> [DATA=<file> for your_data] (always re-runs it)
	@test -n "$(NAME)" || { echo "usage: make chapter NAME=<chapter>; chapters:"; $(PY) -m pipeline chapters; exit 2; }
	$(PY) -m pipeline execute --force --mode $(MODE) --seed $(SEED) --device $(DEVICE) $(if $(DATA),--param data=$(abspath $(DATA))) $(NAME)

stage: execute $(MATHJAX) ## stage executed chapters + status page into _build/src
	$(PY) -m pipeline stage

html: stage ## build the HTML strictly (warnings fail) into _build/html
	rm -rf _build/jb/_build/html
	$(VENV)/bin/jupyter-book build _build/src --path-output _build/jb --warningiserror --nitpick --keep-going
	rm -rf $(HTML)
	cp -r _build/jb/_build/html $(HTML)
	@echo "book: $(HTML)/index.html"

book: html ## set up, execute (MODE=quick by default) and build the whole book

browser: ## install Debian's Chromium for the rendered-page test (needs root; the test skips, saying so, otherwise)
	@if [ -n "$${CHROMIUM:-}" ] && [ -x "$${CHROMIUM:-}" ]; then echo "browser: $$CHROMIUM"; \
	elif command -v chromium >/dev/null 2>&1; then echo "chromium: $$(command -v chromium)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium (about a minute)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
			|| echo "WARNING: apt-get could not install chromium; the browser test will be skipped"; \
	else echo "WARNING: chromium is missing and cannot be installed here (needs root and apt-get); the browser test will be skipped"; fi

test: $(VENV_STAMP) $(MATHJAX) browser ## run the test suite (lib, chapters in quick mode, pipeline, build, browser)
	$(PY) -m pytest $(PYTEST_ARGS)

check-html: html browser ## check the built book in headless Chromium; screenshots to _build/screenshots
	$(PY) -m pipeline.site_check _build/html

LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json
LAB_ARGS ?=

lab: $(VENV_STAMP) ## open the chapters as notebooks in JupyterLab (jupytext): make lab [NAME=<chapter>]
	mkdir -p $(dir $(LAB_SETTINGS))
	cp binder/overrides.json $(LAB_SETTINGS)  # .md chapters open as notebooks by default (as on Binder)
	$(VENV)/bin/jupyter lab $(LAB_ARGS) $(if $(NAME),book/$(NAME).md,book)

faults: $(VENV_STAMP) ## inject each listed library fault into a scratch copy and show which claims catch it
	$(PY) -m pipeline.faults

notebooks-branch: stage ## assemble the published notebooks (executed) + lib + binder/ in _build/notebooks-branch
	rm -rf _build/notebooks-branch
	mkdir -p _build/notebooks-branch/book
	cp _build/src/_extra/notebooks/*.ipynb _build/notebooks-branch/book/
	cp -r lib binder environment.yml README.md _build/notebooks-branch/
	rm -rf _build/notebooks-branch/lib/*.egg-info
	find _build/notebooks-branch -name __pycache__ -prune -exec rm -rf {} +

pdf: stage browser ## the whole book as one PDF (_build/book.pdf), printed offline by headless Chromium
	$(PY) -m pipeline.pdf

bench: $(VENV_STAMP) ## the linear-CNN simulator vs the per-network loop and the strongest batched autograd baseline (DEVICE=cuda on a GPU); table in bench/results/
	$(PY) bench/simulator.py --device $(DEVICE) --out-dir bench/results

reference-timings: $(VENV_STAMP) ## re-measure pipeline/reference_timings.json (orders a fresh clone's first run): quick + full, forced
	$(PY) -m pipeline execute --force --build-root $(abspath _build/reference/quick)
	$(PY) -m pipeline execute --force --mode full --build-root $(abspath _build/reference/full)
	$(PY) -m pipeline reference-timings _build/reference/quick/timings.json _build/reference/full/timings.json

bench-threads: $(VENV_STAMP) ## measure torch intra-op threads 1 vs 2 on a chapter-sized problem
	$(PY) bench/threads.py

clean: ## remove build outputs (keeps .venv and the vendored MathJax)
	rm -rf _build/src _build/jb _build/html _build/claims _build/keys _build/pdf _build/book.pdf _build/screenshots \
		_build/notebooks-branch _build/failed _build/faults.json _build/seeds _build/clean _build/timings.json \
		_build/timings.md _build/reference

clean-venv: ## remove the virtual environment
	rm -rf $(VENV)
