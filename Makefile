# Set-up and the two everyday commands: `make demo` and `make test` (see README.md).
#
# Two environments (docs/environments.md):
# - .venv, the core: spikeport on the newest tested Python (3.12 first, then 3.13, 3.11; found on
#   PATH or through pyenv, or given as `make CORE_PYTHON=/path/to/python3.x`).
# - .venv-lava, the Lava worker: Python 3.10 with lava-nc 0.10 and lava-dl 0.6, which pin torch 2.3.1
#   and numpy 1 (`make LAVA_PYTHON=/path/to/python3.10`). spikeport finds it beside its source (or
#   through SPIKEPORT_LAVA_PYTHON) and runs Lava there, exchanging only files.
# Each is rebuilt only when what defines it changes: its stamp is named by the hash of those files.

VENV := .venv
LAVA_VENV := .venv-lava
PY := $(VENV)/bin/python
SPIKEPORT := $(VENV)/bin/spikeport
LAVA_REQUIREMENTS := runtime/lava/worker/requirements.txt
# Test oracles whose declared torchaudio cannot follow the core's torch (pyproject.toml, [dev]).
ORACLES := neurobench==2.3.0 spikingjelly==2.0.0

find_python = $(shell for v in $(1); do for c in python$$v "$$(pyenv root 2>/dev/null)"/versions/$$v*/bin/python$$v; do \
	"$$c" -c "import sys; assert '%d.%d' % sys.version_info[:2] == '$$v'" >/dev/null 2>&1 && { echo "$$c"; exit 0; }; done; done)
CORE_PYTHON ?= $(call find_python,3.12 3.13 3.11)
LAVA_PYTHON ?= $(call find_python,3.10)
CORE_STAMP := $(VENV)/.installed-$(shell { cat pyproject.toml; echo $(ORACLES); } | sha256sum | cut -c1-16)
LAVA_STAMP := $(LAVA_VENV)/.installed-$(shell sha256sum < $(LAVA_REQUIREMENTS) | cut -c1-16)

.PHONY: demo test bench env core-env lava-env gpu-wheels

env:  # both at once: each is mostly downloads and unpacking
	@$(MAKE) --no-print-directory -j2 core-env lava-env
core-env: $(CORE_STAMP)
lava-env: $(LAVA_STAMP)

# make_venv(folder, python): keep the folder when it holds a venv of that Python's version, else make it anew
make_venv = "$(2)" -c "import sys; v = sys.version_info[:2]; import subprocess; \
	r = subprocess.run(['$(1)/bin/python', '-c', 'import sys; print(sys.version_info[:2])'], capture_output=True, text=True); \
	sys.exit(0 if r.stdout.strip() == str(v) else 1)" 2>/dev/null || { rm -rf $(1) && "$(2)" -m venv $(1); }

$(CORE_STAMP):
	@test -n "$(CORE_PYTHON)" || { echo "No Python 3.11, 3.12 or 3.13 found for spikeport's core: install one, e.g. 'pyenv install 3.12', or run 'make CORE_PYTHON=/path/to/python3.12'." >&2; exit 1; }
	@$(call make_venv,$(VENV),$(CORE_PYTHON))
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps $(ORACLES)
	@rm -f $(VENV)/.installed-* && touch $@

$(LAVA_STAMP):
	@test -n "$(LAVA_PYTHON)" || { echo "No Python 3.10 found for the Lava worker (Lava 0.10 needs it): install one, e.g. 'pyenv install 3.10.13', or run 'make LAVA_PYTHON=/path/to/python3.10'." >&2; exit 1; }
	@$(call make_venv,$(LAVA_VENV),$(LAVA_PYTHON))
	$(LAVA_VENV)/bin/python -m pip install --quiet -r $(LAVA_REQUIREMENTS)
	@rm -f $(LAVA_VENV)/.installed-* && touch $@

# Two test processes (pytest-xdist): the suite is half subprocess and Lava waits, and CI has 2 cores.
# The tests marked `lava` share one of them (tests/conftest.py); --durations lists the slowest.
test: env
	$(PY) -m pytest -q -n 2 --dist loadgroup --durations 15

demo: env
	$(SPIKEPORT) train configs/digits-cnn.yaml --out runs/demo $$(test -f runs/demo/checkpoint.pt && echo --resume)
	$(SPIKEPORT) export runs/demo
	$(SPIKEPORT) simulate runs/demo --compare reference-float,onnx-float
	$(SPIKEPORT) report runs/demo --samples 450 || test $$? -eq 3  # 3: some chips do not fit, as the report says
	@echo
	@echo "Results in runs/demo: export/ (manifest.json, model.nir, deployed.nir, model.onnx, loihi.json, model.net), sim/, report/ (open report/report.html)."
	@echo "Lava too: $(SPIKEPORT) simulate runs/demo --samples 10 --compare reference-loihi,lava-loihi (about a minute; it runs in .venv-lava)."

bench: env
	$(PY) benchmarks/train_step.py

# For a GPU machine that has torch but no network: spikeport and what its CUDA benchmarks import
# beyond torch, as wheels in .whl/ (benchmarks/cuda_rows.sh says how to install and run them there).
GPU_WHEELS := snntorch==1.0.0 spikingjelly==2.0.0 loguru==0.7.3
gpu-wheels: $(CORE_STAMP)
	rm -rf .whl
	$(PY) -m pip wheel --quiet --no-deps --wheel-dir .whl .
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --dest .whl $(GPU_WHEELS)
