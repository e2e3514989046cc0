# edgepress: `make demo` and `make test` work from a fresh clone.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
QUICK_OUT ?= runs/demo

.PHONY: demo test test-slow lint doctest bench setup data browser postgres clean

setup: $(STAMP) data browser postgres

# One line per stage; pip's own output only when a stage fails (it is then printed whole).
$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null 2>&1 || { echo "edgepress needs $(PY)"; exit 1; }
	@echo "setup: virtual environment $(VENV)"
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@echo "setup: pip"
	@$(BIN)/pip install --quiet --upgrade pip > $(VENV)/setup.log 2>&1 || { cat $(VENV)/setup.log; exit 1; }
	@echo "setup: torch 2.13.0 (CPU build, pinned so nothing pulls a CUDA build)"
	@$(BIN)/pip install --quiet torch==2.13.0 > $(VENV)/setup.log 2>&1 || { cat $(VENV)/setup.log; exit 1; }
	@echo "setup: edgepress and its dependencies (ONNX Runtime, ExecuTorch, test tools)"
	@$(BIN)/pip install --quiet -e '.[mobile,dev,pretrained]' > $(VENV)/setup.log 2>&1 || { cat $(VENV)/setup.log; exit 1; }
	@touch $(STAMP)

# Fashion-MNIST from Debian when apt is usable; otherwise the embedded `digits` data is used.
data:
	@if [ -d /usr/share/datasets/fashion-mnist ] || [ -n "$$EDGEPRESS_DATA_DIR" ]; then \
	  echo "Fashion-MNIST: present"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
	    && echo "Fashion-MNIST: installed (dataset-fashion-mnist)" \
	    || echo "Fashion-MNIST: apt install failed; falling back to digits"; \
	else \
	  echo "Fashion-MNIST: apt not usable; falling back to digits"; \
	fi

# Debian's Chromium, for the test that opens the study's HTML report headless (skipped without it).
browser:
	@if command -v chromium >/dev/null 2>&1; then \
	  echo "Chromium: present"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium) \
	    >/dev/null 2>&1 && echo "Chromium: installed" \
	    || echo "Chromium: apt install failed; the report test will be skipped"; \
	else \
	  echo "Chromium: apt not usable; the report test will be skipped"; \
	fi

# Debian's PostgreSQL server, for the test of several search workers on one study (the test starts
# its own server in a temporary directory as the postgres user).
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "PostgreSQL: present"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql) \
	    >/dev/null 2>&1 && echo "PostgreSQL: installed" \
	    || echo "PostgreSQL: apt install failed; the multi-worker search test will fail"; \
	else \
	  echo "PostgreSQL: apt not usable; the multi-worker search test will fail"; \
	fi

demo: setup
	bash scripts/demo.sh $(QUICK_OUT)

test: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -q -m slow

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src

# the docstring examples of every module (heavy ones are marked +SKIP)
doctest: setup
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q --doctest-modules src/edgepress -p no:cacheprovider

bench: setup
	$(BIN)/python benchmarks/foundation.py

clean:
	rm -rf $(VENV) runs .pytest_cache
