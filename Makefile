# v-secure: make run (the dev stack), make test (the whole suite). See README.md.
#
#   make run                      moto + API on 127.0.0.1:8000, root token in the `dev` profile
#   make test                     ruff, then pytest in parallel (pytest-xdist)
#   make lint                     ruff + mypy
#   make package STAGE=prod       build/package/prod/{sam.json,deployment.zip}
#   make deploy STAGE=prod ARTIFACT_BUCKET=...
#   make clean                    caches and build output (keeps .venv; `make distclean` removes it)

PYTHON ?= python3
# Prefer python3.11 when it is on PATH, unless PYTHON was given (command line or environment).
ifeq ($(origin PYTHON),file)
  ifneq ($(shell command -v python3.11 2>/dev/null),)
    PYTHON := python3.11
  endif
endif

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CHECKOV_VENV := .venv-checkov
PYTEST_ARGS ?= -q -n auto --dist loadgroup

STAGE ?= prod
NAME_PREFIX ?= v-secure-$(STAGE)
ARTIFACT_BUCKET ?=
PACKAGE_DIR := build/package/$(STAGE)

.PHONY: venv run test lint clean distclean bench package deploy

venv: $(STAMP)

# (Re)install when pyproject.toml is newer than the stamp; create the venv only if it is missing.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

# checkov's pins conflict with ours: it gets its own venv, with the `scan` extra's pins.
$(CHECKOV_VENV)/bin/checkov: pyproject.toml | $(STAMP)
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet $$($(BIN)/python -c "import tomllib; \
	  print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['scan']))")
	@touch $@

$(CHECKOV_VENV): $(CHECKOV_VENV)/bin/checkov

run: venv
	$(BIN)/python -m chalicelib.local

test: venv $(CHECKOV_VENV)/bin/checkov
	$(BIN)/ruff check .
	$(BIN)/pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy chalicelib app.py

bench: venv
	$(BIN)/python -m bench

package: venv
	$(BIN)/python infra/package.py --stage $(STAGE) --out $(PACKAGE_DIR)

deploy: package
	@test -n "$(ARTIFACT_BUCKET)" || { echo "set ARTIFACT_BUCKET=<bucket for the Lambda package>"; exit 2; }
	aws cloudformation deploy --stack-name $(NAME_PREFIX)-stateful --template-file infra/stateful.yaml \
	  --parameter-overrides NamePrefix=$(NAME_PREFIX)
	aws cloudformation package --template-file $(PACKAGE_DIR)/sam.json --use-json \
	  --s3-bucket $(ARTIFACT_BUCKET) --output-template-file $(PACKAGE_DIR)/packaged.json
	aws cloudformation deploy --stack-name $(NAME_PREFIX)-app --template-file $(PACKAGE_DIR)/packaged.json \
	  --capabilities CAPABILITY_NAMED_IAM CAPABILITY_AUTO_EXPAND \
	  --parameter-overrides NamePrefix=$(NAME_PREFIX) StatefulStackName=$(NAME_PREFIX)-stateful

clean:
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache *.egg-info
	find . -path ./$(VENV) -prune -o -path ./$(CHECKOV_VENV) -prune -o \
	  -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) $(CHECKOV_VENV)
