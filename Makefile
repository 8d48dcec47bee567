# The two commands a reader needs: `make reports` and `make test`.
# Each creates .venv from pyproject.toml when it is missing or stale.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test reports reports-smoke bench lab lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

reports: $(STAMP)
	$(PY) -m hybridsched render --out reports

reports-smoke: $(STAMP)
	$(PY) -m hybridsched render --smoke --out reports-smoke

bench: $(STAMP)
	$(PY) benchmarks/run.py

# make lab [PORT=8888] [ARGS="--no-browser --ip=0.0.0.0"]; notebooks run there write to scratch/.
PORT ?= 8888
ARGS ?=
lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks --port=$(PORT) $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check hybridsched tests benchmarks notebooks
	$(VENV)/bin/ruff format --check hybridsched tests benchmarks notebooks

clean:
	rm -rf $(VENV) reports-smoke scratch .pytest_cache
