# Set-up and the two everyday commands: `make demo` and `make test` (see README.md).
# Lava needs Python 3.10: found on PATH, through pyenv, or given as `make PYTHON=/path/to/python3.10`.

VENV := .venv
PY := $(VENV)/bin/python
SPIKEPORT := $(VENV)/bin/spikeport
PYTHON ?= $(shell for c in python3.10 "$$(pyenv root 2>/dev/null)"/versions/3.10*/bin/python3.10; do \
	"$$c" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1 && { echo "$$c"; break; }; done)

.PHONY: demo test bench env

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "No Python 3.10 found (Lava needs it): install one, e.g. 'pyenv install 3.10.13', or run 'make PYTHON=/path/to/python3.10'." >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $@

test: env
	$(PY) -m pytest -q

demo: env
	$(SPIKEPORT) train configs/digits-cnn.yaml --out runs/demo $$(test -f runs/demo/checkpoint.pt && echo --resume)
	$(SPIKEPORT) export runs/demo
	$(SPIKEPORT) simulate runs/demo --compare reference-float,onnx-float
	$(SPIKEPORT) report runs/demo --samples 450 || test $$? -eq 3  # 3: some chips do not fit, as the report says
	@echo
	@echo "Results in runs/demo: export/ (manifest.json, model.nir, model.onnx, loihi.json, model.net), sim/, report/ (open report/report.html)."
	@echo "Lava too: spikeport simulate runs/demo --samples 10 --compare reference-loihi,lava-loihi (about a minute)."

bench: env
	$(PY) benchmarks/train_step.py
