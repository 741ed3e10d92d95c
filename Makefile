# kdcourse: set-up, lessons and tests.
#   make lab      open the exercise notebooks in JupyterLab (creates .venv on first use)
#   make test     unit tests + every solution notebook under nbval (what CI runs)
# The virtual environment is (re)installed only when pyproject.toml changes.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.kdcourse-installed
# Optional index for the torch wheels only, e.g. TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

# nbval in lax mode: only cells marked "# NBVAL_CHECK_OUTPUT" have their outputs compared.
# lessons/ is never run: its exercise cells raise NotImplementedError by design.
SOLUTIONS := $(wildcard solutions/*.ipynb)
NBVAL     := --nbval-lax --nbval-current-env --nbval-sanitize-with .nbval-sanitize.cfg

.PHONY: help venv lab test lessons text results book test-browser clean

help:
	@echo "make lab           JupyterLab on lessons/ (sets up $(VENV) first)"
	@echo "make test          pytest tests + nbval over solutions/"
	@echo "make lessons       regenerate lessons/ from solutions/"
	@echo "make text          regenerate the text pairs solutions/py/*.py from solutions/"
	@echo "make results       the comparison table on the digits data -> results/digits.json"
	@echo "make book          the course site (README + solutions as stored) -> $(BOOK_OUT)/index.html"
	@echo "make test-browser  browser tests (tests/browser)"
	@echo "make clean         remove Python, pytest, ruff and Jupyter caches and the built site"

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) 'torch>=2.2' 'torchvision>=0.17'
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

lab: venv
	$(BIN)/jupyter lab lessons/

# One pytest call, so an empty solutions/ is not a "no tests collected" failure. Two workers
# (pytest-xdist): every lesson runs on one thread, so two notebooks run at once on two cores;
# --dist loadscope keeps all cells of one notebook on one worker (they share its kernel).
# Then the lessons unsolved (tests/unsolved): every exercise skipped, each must run to its end. They
# rerun the solutions' trainings, which the training memo (KDCOURSE_TRAIN_MEMO=1, kdcourse/memo.py)
# recorded in the first call and puts back when every input of a run is the same.
PYTEST_WORKERS ?= 2
NBGRADER_DIR := .cache/nbgrader
test: venv $(NBGRADER_DIR)/nbgrader
	$(BIN)/python -m ruff check kdcourse tests scripts solutions/py
	KDCOURSE_TRAIN_MEMO=1 KDCOURSE_NBGRADER_PATH=$(NBGRADER_DIR) $(BIN)/python -m pytest -n $(PYTEST_WORKERS) \
		--dist loadscope tests --ignore=tests/browser --ignore=tests/unsolved --durations=15 $(SOLUTIONS) $(NBVAL)
	KDCOURSE_TRAIN_MEMO=1 $(BIN)/python -m pytest -n $(PYTEST_WORKERS) tests/unsolved --durations=15 -rA

# nbgrader, for the test of the nbgrader export only: installed aside (--target) without its Jupyter
# dependencies, so it never enables its extensions in the course's JupyterLab (.venv).
$(NBGRADER_DIR)/nbgrader: | venv
	$(BIN)/python -m pip install -q --no-deps --target $(NBGRADER_DIR) 'nbgrader>=0.9.6' sqlalchemy alembic mako \
		rapidfuzz greenlet

lessons: venv
	$(BIN)/python -m kdcourse.exercises

# The solutions as text (py:percent, sources without outputs), for diffs and ruff: solutions/NN_*.ipynb ->
# solutions/py/NN_*.py. tests/test_text_pairs.py fails when they drift from the notebooks.
text: venv
	$(BIN)/python scripts/sync_text.py

results: venv
	mkdir -p results
	$(BIN)/python -m kdcourse compare --dataset digits --methods baseline,kd,hint,at,rkd,sp,dkd \
		--seeds 3 --json results/digits.json

# The course site: the README as landing page and the solutions as stored, never executed
# (book/conf.py), built and readable offline. -W: a warning fails the build.
# tests/browser/test_book.py runs the same sphinx-build command when the site is stale.
BOOK_OUT  := book/_build/html
BOOK_DEPS := import importlib.util as u, myst_nb, sphinx_book_theme; assert u.find_spec('sphinx-mathjax-offline')
book: venv
	$(BIN)/python -c "$(BOOK_DEPS)" 2>/dev/null || $(BIN)/python -m pip install -e '.[book]'
	$(BIN)/python -m sphinx -b html -W --keep-going -q -c book -d book/_build/doctrees . $(BOOK_OUT)
	@echo "The site: $(BOOK_OUT)/index.html (or: $(BIN)/python -m http.server -d $(BOOK_OUT))"

# End to end in JupyterLab + headless Chromium (tests/browser). Needs Debian's `chromium`
# (`apt-get install -y chromium`; or KDCOURSE_CHROMIUM=/path/to/chromium): skipped without it,
# unless KDCOURSE_REQUIRE_BROWSER=1. Screenshots go to tests/browser/artifacts/.
test-browser: venv
	$(BIN)/python -c "import playwright" 2>/dev/null || $(BIN)/python -m pip install -e '.[browser]'
	$(BIN)/python -c "$(BOOK_DEPS)" 2>/dev/null || $(BIN)/python -m pip install -e '.[book]'
	$(BIN)/python -m pytest tests/browser -v -rs --durations=5

clean:
	rm -rf .pytest_cache .ruff_cache .hypothesis build dist *.egg-info book/_build
	find . -path ./$(VENV) -prune -o \( -name __pycache__ -o -name .ipynb_checkpoints \) \
		-type d -prune -exec rm -rf {} +
