# The README's two commands: `make reproduce` (main job) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=
# The versions CI tests; `make setup CONSTRAINTS=` installs from requirements.txt's ranges alone.
CONSTRAINTS ?= constraints.txt
PIN := $(if $(CONSTRAINTS),-c $(CONSTRAINTS))

.PHONY: setup reproduce test bench docs-config docs-cli

$(BIN)/vacnn: setup.cfg requirements.txt $(CONSTRAINTS)
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(PIN) -r requirements.txt
	$(BIN)/python -m pip install -q $(PIN) -e ".[test]"
	touch $(BIN)/vacnn

setup: $(BIN)/vacnn

reproduce: setup
	$(BIN)/python -m reproduce.table10 $(ARGS)

test: setup
	$(BIN)/python -m pytest $(ARGS)

bench: setup
	$(BIN)/vacnn bench $(ARGS)

docs-config: setup
	$(BIN)/python -m vacnn_tf.config > docs/configuration.md

docs-cli: setup
	$(BIN)/python -m vacnn_tf.cli.reference > docs/cli.md
