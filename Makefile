# The two set-up commands of the README. Both create (once) and reuse a project-local virtual
# environment in .venv and install everything the project needs into it.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
# Re-install when pyproject.toml changes.
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: demo test test-fast bench notebook clean-venv

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

clean-venv:
	rm -rf $(VENV)
