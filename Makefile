# The README's commands. `make demo` and `make test` set up .venv themselves on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: setup demo test lint release check-release examples grade bundle clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) $(TORCH) 2>&1 | grep -v "^WARNING: Location" || true
	$(PIP) -e '.[course,test]' 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import torch, torchvision, nbgrader, course_utils, autograde"
	@touch $@

demo: $(STAMP)  ## train the vanilla CNN briefly, release notebook 1 and autograde the example submissions
	$(PY) -m autograde.demo

test: $(STAMP)  ## the whole test suite (what CI runs)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check course_utils autograde tests bench

release: $(STAMP)  ## regenerate assignments/ from solutions/ with nbgrader
	$(PY) -m autograde.release

clean:
	rm -rf outputs course .pytest_cache
