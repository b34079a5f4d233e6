# The two commands a new user needs: `make demo` and `make test`. Both create .venv when missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
BENCH_JSON ?=

.PHONY: demo test bench lint

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: this installs the CPU wheel rather than a multi-GB CUDA build.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/scrub check hypotheses/ -q -rs
	$(VENV)/bin/scrub draw hypotheses/toy_ioi.py::full_circuit -o runs/toy-ioi-full-circuit.svg --results latest
	$(VENV)/bin/scrub patch --model toy-ioi --n 100 --seed 0 --corrupt abc --senders heads --receivers logits --run latest --no-progress >/dev/null
	$(VENV)/bin/scrub report latest --costs hypotheses/toy_ioi.py -o runs/report.html

test: $(STAMP)
	$(PY) -m pytest -n 2 -q

bench: $(STAMP)
	$(PY) benchmarks/run.py $(if $(BENCH_JSON),--json $(BENCH_JSON),)

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
