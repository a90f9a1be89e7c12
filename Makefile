# The README's commands. `make demo` and `make test` set up .venv themselves on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: setup demo test test-browser lint release grade gradescope bundle bench clean hub

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) $(TORCH) 2>&1 | grep -v "^WARNING: Location" || true
	$(PIP) -e '.[course,test,hub]' 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import torch, torchvision, nbgrader, playwright.sync_api, course_utils, autograde"
	@touch $@

demo: $(STAMP)  ## train the vanilla CNN briefly, release notebook 1 and autograde the example submissions
	$(PY) -m autograde.demo

test: $(STAMP)  ## the whole test suite (what CI runs)
	$(PY) -m pytest

test-browser: $(STAMP)  ## only the browser tests: JupyterLab and the formgrader in headless Chromium (tests/browser)
	$(PY) -m pytest -m browser

lint: $(STAMP)
	$(VENV)/bin/ruff check course_utils autograde tests bench hub

release: $(STAMP)  ## regenerate assignments/ from solutions/ with nbgrader, then the example submissions
	$(PY) -m autograde.release $(if $(COURSE_UTILS_SPEC),--utils-spec '$(COURSE_UTILS_SPEC)')
	$(PY) -m autograde.example_notebooks

# Settings left empty take the defaults of autograde/settings.py (python -m autograde grade --help lists them).
LIMIT_OPTIONS = $(if $(TIMEOUT),--timeout $(TIMEOUT)) $(if $(MEMORY),--memory-mb $(MEMORY)) \
	$(if $(BUDGET),--submission-seconds $(BUDGET))
GRADE_OPTIONS = $(if $(JOBS),--jobs $(JOBS)) $(LIMIT_OPTIONS)

grade: $(STAMP)  ## grade a class: make grade SUBMISSIONS=path [JOBS=4] [TIMEOUT=30] [MEMORY=2048] [BUDGET=300] [OUT=grading]
	@test -n "$(SUBMISSIONS)" || { echo "usage: make grade SUBMISSIONS=<notebook | folder | nbgrader submitted/> [JOBS=N] [TIMEOUT=s] [MEMORY=MiB] [BUDGET=s] [OUT=dir]"; exit 2; }
	$(PY) -m autograde grade $(SUBMISSIONS) $(GRADE_OPTIONS) --out $(or $(OUT),grading)

gradescope: $(STAMP)  ## build the Gradescope autograder package outputs/autograder.zip [TIMEOUT=30] [MEMORY=2048]
	$(PY) -m autograde gradescope-zip --out outputs/autograder.zip $(LIMIT_OPTIONS)

hub: $(STAMP)  ## a demonstration JupyterHub on this machine: one instructor, two students (root; Ctrl+C stops it)
	$(PY) -m hub.demo $(if $(PORT),--port $(PORT)) $(if $(COURSE_DATA),--course-data $(COURSE_DATA))

bundle: $(STAMP)  ## export what students receive to outputs/student-bundle.zip
	$(PY) -m autograde student-bundle --out outputs/student-bundle.zip

bench: $(STAMP)  ## the CPU benchmarks: data loader, ViT step time, grader throughput, notebook times, similarity check
	$(PY) -m bench.loader
	$(PY) -m bench.vit
	$(PY) -m bench.grading
	$(PY) -m bench.notebooks
	$(PY) -m bench.local_attention --device cpu
	$(PY) -m bench.similarity
	$(PY) -m bench.notebook1 --step-times

clean:
	rm -rf outputs course .pytest_cache
