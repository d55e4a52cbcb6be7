# ss3d — the two commands of the README, and a few helpers.
#   make smoke   set up (if needed) and run the whole pipeline on the embedded default
#   make test    set up (if needed), lint, and run every test (CI runs exactly this)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= experiments/smoke.yaml

.PHONY: setup browser postgres smoke test test-fast lint bench profile gpu-check ui lab clean-data

# The stamp is rebuilt when the pins change, so `make test` after a pin bump reinstalls.
$(VENV)/.setup-stamp: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet "pip>=24"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name ss3d --display-name "ss3d (.venv)"
	touch $@

setup: $(VENV)/.setup-stamp

smoke: setup
	$(BIN)/ss3d pipeline --config $(CONFIG)

# Headless Chromium for the report's browser test: Debian's package, installed when missing.
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || { \
	  command -v apt-get >/dev/null || { echo "install Chromium (the report's browser test needs it)"; exit 1; }; \
	  echo "installing Debian's chromium for the report's browser test"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# PostgreSQL for the tracking-server test: Debian's package, installed when initdb is missing.
postgres:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  command -v apt-get >/dev/null || { echo "install PostgreSQL (the tracking-server test needs it)"; exit 1; }; \
	  echo "installing Debian's postgresql for the tracking-server test"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null; }

# Two test processes (one per core of the 2-core CI machine); each test file stays in one
# process, so a file's module fixtures are built once.
TEST_WORKERS ?= 2

test: setup browser postgres
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "slow or not slow" -n $(TEST_WORKERS) --dist loadfile

test-fast: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python benchmarks/run.py

# Where the main job's minutes go, stage by stage and phase by phase -> outputs/profile/
profile: setup
	$(BIN)/python benchmarks/profile_pipeline.py --config $(CONFIG) --out outputs/profile

# Every stage at tiny size on the GPU (bf16, fp16 + GradScaler), torchrun, paper-size step times
# and peak memory -> outputs/gpu-check.json. Without CUDA it runs its CPU dry run.
gpu-check: setup
	$(BIN)/python benchmarks/gpu_check.py --out outputs/gpu-check.json

# JupyterLab on the notebooks, with the project's kernel ("ss3d (.venv)") already installed.
# Serves on LAB_IP:LAB_PORT without opening a browser (a GPU node has none); as root too, which
# is how containers run. On a remote node: make lab LAB_IP=127.0.0.1, then from your machine
# ssh -N -L 8888:127.0.0.1:8888 you@node and open the URL with the token that lab printed.
LAB_IP   ?= 127.0.0.1
LAB_PORT ?= 8888
lab: setup
	$(BIN)/jupyter lab --notebook-dir=notebooks --no-browser --ip=$(LAB_IP) --port=$(LAB_PORT) \
	  $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

ui: setup
	@echo "MLflow UI: http://127.0.0.1:5000 - click 'Model training' (top left) for runs and charts"
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db

clean-data:
	rm -rf data outputs mlflow.db mlartifacts
