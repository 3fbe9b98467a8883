# delegatewatch: `make demo` and `make test` are all a fresh machine needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	sh scripts/install-browser.sh
	touch $(STAMP)

# The main job on a small simulated tenant (delegatewatch simulate; docs/simulate.md): every attack
# scenario in realistic background, hunted with the organisation's directory and allow-list, then scored.
DEMO_SIM := --users 120 --days 14 --seed 7
DEMO_DIR := out/demo-tenant
demo: setup
	rm -rf $(DEMO_DIR)
	mkdir -p out
	$(BIN)/delegatewatch simulate $(DEMO_SIM) --out $(DEMO_DIR)
	$(BIN)/delegatewatch hunt $(DEMO_DIR)/evidence --directory $(DEMO_DIR)/directory.csv \
		--config $(DEMO_DIR)/delegatewatch.toml
	$(BIN)/delegatewatch hunt $(DEMO_DIR)/evidence --directory $(DEMO_DIR)/directory.csv \
		--config $(DEMO_DIR)/delegatewatch.toml \
		--format jsonl --output out/demo-findings.jsonl --report out/demo-report.html --quiet
	$(BIN)/delegatewatch evaluate --labels $(DEMO_DIR)/labels.json --findings out/demo-findings.jsonl
	@echo "Findings: out/demo-findings.jsonl; report: out/demo-report.html; ground truth: $(DEMO_DIR)/labels.json"

test: setup
	$(BIN)/delegatewatch rules test
	$(BIN)/python -m pytest -q

# ~1 GB / 1 M-record UAL benchmark, simulated outside git under bench/data/; simulator throughput.
# Byte-compiled first, as an installed package is: with PYTHONDONTWRITEBYTECODE set (as in some shells)
# an editable install would compile every module from source on each run (~0.1 s of every hunt).
bench: setup
	$(BIN)/python -m compileall -q src
	$(BIN)/python bench/run_bench.py
	$(BIN)/python bench/report_bench.py
	$(BIN)/python bench/evtx_bench.py
	$(BIN)/python bench/collect_bench.py
	$(BIN)/python bench/mailflow_bench.py
	$(BIN)/python bench/ledger_bench.py
	$(BIN)/python bench/simulate_bench.py
	$(BIN)/python bench/spark_bench.py
	$(BIN)/python bench/incidents_bench.py

clean:
	rm -rf $(VENV) out build *.egg-info .pytest_cache .hypothesis
