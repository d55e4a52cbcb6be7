"""The main job: run the notebooks 00 → 04 through papermill on one experiment, then write
the report (``reports/<name>/``).

Each notebook logs its own MLflow run; afterwards the executed notebook is attached to that
run (``notebooks/<name>.ipynb``) so that ``mlflow ui`` shows code, outputs and figures together.
Notebooks of stages that do not exist yet are skipped with a message.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from ss3d import tracking
from ss3d.config import load_config
from ss3d.notebooks import NOTEBOOKS, execute, notebook_path
from ss3d.report import write_report
from ss3d.stages.pretrain import stage_dir

__all__ = ["run_pipeline"]

log = logging.getLogger(__name__)


def run_pipeline(config: str | Path, overrides: Mapping[str, Any] | None = None,
                 output_dir: str | Path | None = None, report: bool = True) -> dict[str, float]:
    """Execute every available notebook in order, then write ``reports/<name>/``; returns the
    wall time per notebook (s)."""
    config = Path(config).resolve()
    cfg = load_config(config, overrides)  # validate everything before the first notebook
    out = Path(output_dir) if output_dir else stage_dir(cfg, "notebooks")
    timings: dict[str, float] = {}
    jobs: list[tuple[str, str, str, dict[str, Any]]] = []
    for name, stage in NOTEBOOKS:
        if name == "02_selftrain":  # one self-training per collection; ablation on the first
            for k, category in enumerate(cfg.data.collections):
                jobs.append((name, f"{name}_{category}", stage,
                             {"category": category,
                              "ablation": bool(cfg.selftrain.ablation and k == 0)}))
        else:
            jobs.append((name, name, stage, {}))
    for name, label, stage, params in jobs:
        if not notebook_path(name).is_file():
            log.info("skipping %s: notebook not in this version of ss3d", name)
            continue
        start = time.perf_counter()
        executed = execute(name, out / f"{label}.ipynb",
                           {"experiment_file": str(config), "overrides": dict(overrides or {}),
                            **params})
        timings[label] = time.perf_counter() - start
        run = tracking.latest_run(cfg.name, stage, category=params.get("category"))
        if run is not None:
            MlflowClient(tracking.tracking_uri()).log_artifact(run.info.run_id, str(executed),
                                                               "notebooks")
        print(f"{label}: {timings[label]:.1f}s  ({executed})", flush=True)
    total = sum(timings.values())
    print(f"pipeline {cfg.name}: {total:.1f}s for {len(timings)} notebooks", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "timings.json").write_text(json.dumps(timings, indent=1))
    if report and "04_evaluate" in timings:
        index = write_report(cfg, notebooks_dir=out)
        print(f"report: {index}", flush=True)
    return timings
