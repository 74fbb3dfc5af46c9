# wanray: two commands on a fresh machine (see README.md)
#   make demo   - install, then generate a video from the bundled photo with the embedded model
#   make test   - install, then run the test suite (starts and stops Redis and a local Ray cluster itself)

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.wanray-installed
PYTEST_ARGS ?=

.PHONY: install demo test bench clean

install: $(STAMP)

# torch and torchvision must be a matching pair, so they are installed first, together.
$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[all,dev]'
	touch $(STAMP)

demo: install
	$(VENV)/bin/wanray demo --out outputs/demo.mp4

test: install
	scripts/system-deps.sh
	scripts/run-tests.sh $(PYTEST_ARGS)

bench: install
	$(PY) bench/embedded_generation.py

clean:
	rm -rf $(VENV) outputs
