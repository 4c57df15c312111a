# The course's two commands (see README.md):
#   make lab    create/reuse .venv, prepare the data, start JupyterLab on notebooks/
#   make test   create/reuse .venv and run the whole test suite
# Data: set LENET_COURSE_DATA to a folder in torchvision's layout (e.g. ../shared/data) when
# offline; otherwise torchvision downloads into data/.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lenet-course-installed
PORT ?= 8888
# The folder JupyterLab serves (the tests point it at a copy of notebooks/).
LAB_DIR ?= notebooks
# EDITION=zh: the Chinese edition, notebooks-zh/ (generated from notebooks/ and i18n/zh/ by
# tools/translate.py: the same code and outputs, Chinese prose and quizzes), with JupyterLab's
# interface and the exercise checker in Chinese.
EDITION ?= en
ifeq ($(filter en zh,$(EDITION)),)
$(error EDITION=$(EDITION): use en (the default) or zh)
endif
ifeq ($(EDITION),zh)
LAB_DIR := notebooks-zh
export LENET_COURSE_LANG := zh
export JUPYTERLAB_SETTINGS_DIR := $(abspath .jupyter-zh/user-settings)
endif
LOCALE_SETTINGS := $(JUPYTERLAB_SETTINGS_DIR)/@jupyterlab/translation-extension/plugin.jupyterlab-settings
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k arithmetic"`.
PYTEST_ARGS ?=

# Notebook kernels run in notebooks/: hand them an absolute data root.
ifdef LENET_COURSE_DATA
export LENET_COURSE_DATA := $(abspath $(LENET_COURSE_DATA))
endif

.PHONY: lab test check reproduce venv data book train bench clean help zh

help:
	@echo "make lab   - set up .venv and the data, start JupyterLab on notebooks/ (the course)"
	@echo "make lab EDITION=zh - the same in Chinese (notebooks-zh/, JupyterLab in Chinese)"
	@echo "make test  - set up .venv and run every test (package, notebooks, book, browser)"
	@echo "make check - the quick tests only (no notebook, book or browser), under 2 minutes"
	@echo "make reproduce - re-execute the notebooks at full size, in place, and check their claims"
	@echo "make book  - build the Jupyter Book site into book/_build/html"
	@echo "make train - train the modern LeNet on Fashion-MNIST into runs/train (TRAIN_ARGS=...)"
	@echo "make bench - our trainer against d2l's train_ch6, side by side (benchmarks/)"

venv: $(STAMP)

$(STAMP): requirements.txt requirements-d2l.txt pyproject.toml tools/install_d2l.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	$(PY) tools/install_d2l.py
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -e .
	$(PY) -m pip check
	@touch $(STAMP)

data: $(STAMP)
	$(PY) -m lenet_course data

lab: data $(if $(filter zh,$(EDITION)),zh)
	@echo "Starting JupyterLab on $(LAB_DIR)/ (port $(PORT)); open the URL it prints below."
	$(PY) -m jupyter lab --notebook-dir=$(LAB_DIR) --ServerApp.ip=127.0.0.1 \
		--ServerApp.port=$(PORT) $(if $(DISPLAY)$(filter Darwin,$(shell uname)),,--no-browser) \
		$(if $(filter 0,$(shell id -u)),--allow-root)

# Every test, each notebook executed once with short parameters, as two pytest processes side by
# side (tools/run_tests.py); with PYTEST_ARGS, one pytest.
test: $(STAMP)
	-tools/ensure_chromium.sh
	$(if $(strip $(PYTEST_ARGS)),$(PY) -m pytest $(PYTEST_ARGS),$(PY) tools/run_tests.py)

check: $(STAMP)
	$(PY) tools/run_tests.py -m "not slow"

# The committed notebooks come from here: each one re-executed at full size, in place (cell ids
# kept), then its recorded values checked against tests/claims.py. NOTEBOOKS="06 07" picks some.
NOTEBOOKS ?=
reproduce: data
	$(PY) tools/reproduce.py $(NOTEBOOKS)

# Notebook 06's modern LeNet (v1 with max pooling, the modern recipe) from the command line;
# TRAIN_ARGS="..." adds flags. A TRAIN_ARGS that names a --model or a --recipe trains its network.
train: data
	$(PY) -m lenet_course train --out runs/train \
		$(if $(filter --model% --recipe%,$(TRAIN_ARGS)),,--pooling max) $(TRAIN_ARGS)

bench: data
	$(PY) benchmarks/bench_d2l.py --epochs 10

# Builds book/_build/html from the notebooks' stored outputs (no execution), warnings as errors.
# BOOK_EXECUTE=1 re-executes every notebook first (BOOK_TIMEOUT: seconds per cell, default 1800).
# Launch buttons on the notebook pages: REPO_URL (the repository's GitHub/GitLab page) gives a
# Binder button, HUB_URL too a JupyterHub one (an nbgitpuller link). No default: no public URL yet.
REPO_URL ?=
HUB_URL ?=
book: $(if $(filter 1,$(BOOK_EXECUTE)),data,$(STAMP))
	$(if $(REPO_URL),BOOK_REPOSITORY_URL='$(REPO_URL)') $(if $(HUB_URL),BOOK_HUB_URL='$(HUB_URL)') \
		$(PY) tools/build_book.py

# The Chinese notebooks, and JupyterLab's Chinese interface for `make lab EDITION=zh`.
zh: $(STAMP)
	$(PY) tools/translate.py build
	$(if $(filter zh,$(EDITION)),mkdir -p $(dir $(LOCALE_SETTINGS)) && \
		echo '{"locale": "zh_CN"}' > $(LOCALE_SETTINGS))

clean:
	rm -rf book/_build book/notebooks .pytest_cache test-artifacts

# The class server (deploy/README.md): one JupyterHub on this machine, installed by
# deploy/install.sh (as root) into $(HUB_PREFIX). `make hub` serves it on the loopback for a demo;
# `make test-hub` (root: it creates and deletes two Unix users) is its browser test, tests/hub/.
HUB_PREFIX ?= /opt/lenet-course
HUB_PORT ?= 8000
.PHONY: hub test-hub
hub:
	@test -x $(HUB_PREFIX)/hub/bin/jupyterhub || { echo "no hub in $(HUB_PREFIX): run" \
		"deploy/install.sh as root first (deploy/README.md)"; exit 1; }
	@test "$$(id -u)" = 0 || { echo "make hub runs as root (it creates the students' accounts)"; \
		exit 1; }
	@mkdir -p $(HUB_PREFIX)/state && chmod 0700 $(HUB_PREFIX)/state
	@echo "The class server: http://127.0.0.1:$(HUB_PORT)/ (Ctrl-C stops it and every student's server)"
	@echo "Log in as a student listed in $(HUB_PREFIX)/etc/students.txt:" \
		"$$(grep -v '^#' $(HUB_PREFIX)/etc/students.txt | tr '\n' ' ')"
	@echo "The first password typed for a name (7 characters or more) becomes that student's."
	@echo "The course for each student (nbgitpuller): http://127.0.0.1:$(HUB_PORT)/hub/user-redirect/git-pull?repo=$(HUB_PREFIX)/course.git&branch=main&targetpath=lenet-course&urlpath=lab/tree/lenet-course/notebooks"
	cd $(HUB_PREFIX)/state && LENET_HUB_PREFIX=$(HUB_PREFIX) LENET_HUB_PORT=$(HUB_PORT) \
		exec $(HUB_PREFIX)/hub/bin/jupyterhub -f $(abspath deploy/jupyterhub_config.py)

test-hub: $(STAMP)
	-tools/ensure_chromium.sh
	LENET_HUB_TESTS=1 LENET_HUB_PREFIX=$(HUB_PREFIX) timeout 240 $(PY) -m pytest -p no:cacheprovider \
		tests/hub $(PYTEST_ARGS)
