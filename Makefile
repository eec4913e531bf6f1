# aemg — make demo | make test | make serve | make stop
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(CURDIR)/$(VENV)/bin
PREFECT_PORT ?= 4200
export PREFECT_HOME ?= $(CURDIR)/.prefect
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export PREFECT_LOGGING_LEVEL ?= WARNING

.PHONY: install test lint demo serve stop clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

lint: install
	$(BIN)/ruff check aemg tests benchmarks

test: lint
	$(BIN)/pytest -q

demo: install
	PATH=$(BIN):$$PATH dvc repro
	$(PY) -m aemg.summary

serve: install
	PREFECT_PORT=$(PREFECT_PORT) bash scripts/prefect-serve.sh start

stop:
	PREFECT_PORT=$(PREFECT_PORT) bash scripts/prefect-serve.sh stop

clean:
	rm -rf data models models-fixedwin models-levers metrics reports .prefect
