# The two set-up commands of the README. Both create (once) and reuse a project-local virtual
# environment in .venv and install everything the project needs into it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# Re-install when pyproject.toml changes.
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test test-fast bench bench-peers notebook clean-venv

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch and torchvision first, pinned: pip takes them from this machine's local wheels.
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dear-ray demo

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m 'not slow'

# The analysis notebook, executed against the demo sweep (or DEAR_RAY_SWEEP / DEAR_RAY_TRACKING_URI):
# the executed notebook and its figures land in notebooks/outputs/.
notebook: $(STAMP)
	mkdir -p notebooks/outputs/figures
	DEAR_RAY_FIGURES=$(CURDIR)/notebooks/outputs/figures $(VENV)/bin/jupyter execute \
		notebooks/compare_methods.ipynb --output=outputs/compare_methods
	@echo "executed notebook: notebooks/outputs/compare_methods.ipynb; figures: notebooks/outputs/figures/"

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

# benchmarks/data_throughput.py with MMAction2 1.2's own pipeline as a row: builds (once) a side
# environment in $(PEERS_VENV) that only that benchmark runs; MMAction2 is never a dependency of
# dear_ray or its tests. mmaction2, mmengine and mmcv-lite go in without their dependencies
# (mmaction2's wheel lacks mmaction/models/localizers/drn, so only its transforms import;
# mmengine would add opencv-python beside the headless OpenCV), decord, OpenCV and numpy at the
# main environment's versions, so both pipelines decode and resize with the same libraries.
PEERS_VENV ?= .venv-peers
PEERS_PY := $(PEERS_VENV)/bin/python
PEERS_STAMP := $(PEERS_VENV)/.installed-mmaction2-1.2.0

$(PEERS_STAMP): $(STAMP)
	test -x $(PEERS_PY) || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_PY) -m pip install --quiet --disable-pip-version-check torch==2.14.1 \
		$$($(PY) -m pip freeze --disable-pip-version-check | grep -iE '^(decord|opencv-python-headless|numpy)==')
	$(PEERS_PY) -m pip install --quiet --disable-pip-version-check --no-deps mmaction2==1.2.0 \
		mmengine==0.10.7 mmcv-lite==2.1.0
	$(PEERS_PY) -m pip install --quiet --disable-pip-version-check einops scipy importlib_metadata \
		addict pyyaml rich termcolor yapf packaging pillow
	$(PEERS_PY) -c "import mmaction.datasets.transforms, mmengine.dataset"
	touch $(PEERS_STAMP)

bench-peers: $(PEERS_STAMP)
	$(PY) benchmarks/data_throughput.py --peers-venv $(PEERS_VENV)

clean-venv:
	rm -rf $(VENV)
