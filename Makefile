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

# The main job on the bundled sample tenant (examples/demo, made by scripts/make_demo.py).
demo: setup
	mkdir -p out
	$(BIN)/delegatewatch hunt examples/demo --directory examples/demo/directory.csv
	$(BIN)/delegatewatch hunt examples/demo --directory examples/demo/directory.csv \
		--format jsonl --output out/demo-findings.jsonl --report out/demo-report.html --quiet
	@echo "Findings: out/demo-findings.jsonl; report: out/demo-report.html"

test: setup
	$(BIN)/delegatewatch rules test
	$(BIN)/python -m pytest -q

# ~1 GB / 1 M-record UAL benchmark, generated outside git under bench/data/.
bench: setup
	$(BIN)/python bench/run_bench.py
	$(BIN)/python bench/report_bench.py
	$(BIN)/python bench/evtx_bench.py
	$(BIN)/python bench/collect_bench.py
	$(BIN)/python bench/mailflow_bench.py
	$(BIN)/python bench/incidents_bench.py

clean:
	rm -rf $(VENV) out build *.egg-info .pytest_cache .hypothesis
