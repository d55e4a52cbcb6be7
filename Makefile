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

# JupyterLab rooted at the repository (notebooks/, experiments/, reports/ all reachable; it opens
# on notebooks/) with the one kernel the notebooks use, "ss3d (.venv)": the venv's stock python3
# kernel is hidden. Serves on LAB_IP:LAB_PORT without opening a browser (a GPU node has none);
# as root too, which is how containers run. On a remote node: make lab LAB_IP=127.0.0.1, then
# from your machine ssh -N -L 8888:127.0.0.1:8888 you@node and open the URL lab printed.
LAB_IP   ?= 127.0.0.1
LAB_PORT ?= 8888
LAB_ARGS  = --ServerApp.root_dir="$(CURDIR)" --ServerApp.default_url=/lab/tree/notebooks \
	--KernelSpecManager.ensure_native_kernel=False --KernelSpecManager.allowed_kernelspecs=ss3d \
	--MappingKernelManager.default_kernel_name=ss3d \
	--no-browser --ip=$(LAB_IP) --port=$(LAB_PORT) $$( [ "$$(id -u)" = 0 ] && echo --allow-root )
lab: setup
	$(BIN)/jupyter lab $(LAB_ARGS)

# MLflow's UI on the repository's store, for one person: one web worker and no job runner (GenAI
# jobs), landing in the model-training view (runs table and charts), not GenAI (ss3d/mlflow_ui.py).
UI_PORT ?= 5000
ui: setup
	@echo "MLflow UI: http://127.0.0.1:$(UI_PORT) (Ctrl-C stops it)"
	$(BIN)/python -m ss3d.mlflow_ui --backend-store-uri sqlite:///mlflow.db --port $(UI_PORT)

clean-data:
	rm -rf data outputs mlflow.db mlartifacts
