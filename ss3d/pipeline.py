"""The main job: run the notebooks 00 → 04 through papermill on one experiment, then write
the report (``reports/<name>/``).

Each notebook logs its own MLflow run; afterwards the executed notebook is attached to that
run (``notebooks/<name>.ipynb``) so that ``mlflow ui`` shows code, outputs and figures together.
Notebooks of stages that do not exist yet are skipped with a message.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from ss3d import tracking
from ss3d.config import ExperimentConfig, load_config
from ss3d.notebooks import NOTEBOOKS, execute, notebook_path
from ss3d.report import notebook_html, write_report
from ss3d.stages.shell import stage_dir

__all__ = ["Job", "pipeline_jobs", "run_jobs", "run_pipeline"]

log = logging.getLogger(__name__)


class NotebookOutput(logging.Filter):
    """Passes what a notebook prints (its progress bars included), trimmed, and drops
    papermill's bookkeeping lines around every cell."""

    BOOKKEEPING = ("Executing Cell", "Ending Cell", "Executing notebook", "Input Notebook",
                   "Output Notebook", "Working directory", "Passed unknown parameter")

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage().replace("\r", "\n").strip()
        if not text or text.startswith(self.BOOKKEEPING):
            return False
        record.msg, record.args = "\n".join(f"    {line.rstrip()}" for line in
                                             text.splitlines() if line.strip()), None
        return True


@contextlib.contextmanager
def notebook_output_to_terminal() -> Iterator[None]:
    """While notebooks run: their output, indented under the pipeline's own lines."""
    logger = logging.getLogger("papermill")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(NotebookOutput())
    saved = logger.propagate, logger.level
    logger.addHandler(handler)
    logger.propagate, logger.level = False, logging.INFO
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate, logger.level = saved


def _clock(seconds: float) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}:{rest:02d}"


def _previous_timings(name: str, out: Path) -> dict[str, float]:
    """Notebook wall times of the last run of this experiment (its report, else its outputs)."""
    for path in (tracking.repo_root() / "reports" / name / "timings.json", out / "timings.json"):
        try:
            return {k: float(v) for k, v in json.loads(path.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            continue
    return {}


def _estimate(previous: Mapping[str, float], remaining: Sequence[str]) -> str:
    """``"; about 12:40 left"`` from the previous run's times of the remaining notebooks."""
    known = [previous[label] for label in remaining if label in previous]
    if not known:
        return ""
    return f"; about {_clock(sum(known))} left (the last run's times)"


Job = tuple[str, str, str, dict[str, Any]]  # notebook, label, MLflow stage, parameters


def pipeline_jobs(cfg: ExperimentConfig, stages: Sequence[str] | None = None) -> list[Job]:
    """The notebooks to execute, in order (only those of ``stages`` when given): one
    self-training per collection, the H = 1 ablation on the first."""
    jobs: list[Job] = []
    for name, stage in NOTEBOOKS:
        if stages is not None and stage not in stages:
            continue
        if name == "02_selftrain":
            for k, category in enumerate(cfg.data.collections):
                jobs.append((name, f"{name}_{category}", stage,
                             {"category": category,
                              "ablation": bool(cfg.selftrain.ablation and k == 0)}))
        else:
            jobs.append((name, name, stage, {}))
    return [job for job in jobs if notebook_path(job[0]).is_file()]


def run_pipeline(config: str | Path, overrides: Mapping[str, Any] | None = None,
                 output_dir: str | Path | None = None, report: bool = True,
                 report_dir: str | Path | None = None) -> dict[str, float]:
    """Execute every available notebook in order, then write ``reports/<name>/`` (or
    ``report_dir``); returns the wall time per notebook (s)."""
    config = Path(config).resolve()
    cfg = load_config(config, overrides)  # validate everything before the first notebook
    out = Path(output_dir) if output_dir else stage_dir(cfg, "notebooks")
    jobs = pipeline_jobs(cfg)
    previous = _previous_timings(cfg.name, out)
    # the stages' progress bars reach this terminal through papermill's output log: one
    # update every few seconds instead of one per step
    os.environ.setdefault("TQDM_MININTERVAL", "10")
    with notebook_output_to_terminal():
        timings = run_jobs(jobs, config, overrides, out, cfg, previous)
    total = sum(timings.values())
    print(f"pipeline {cfg.name}: {_clock(total)} for {len(timings)} notebooks", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "timings.json").write_text(json.dumps(timings, indent=1))
    if report and "04_evaluate" in timings:
        index = write_report(cfg, notebooks_dir=out, out_dir=report_dir)
        print(f"report: {index}", flush=True)
    return timings


def run_jobs(jobs: list[Job], config: Path, overrides: Mapping[str, Any] | None, out: Path,
             cfg: ExperimentConfig, previous: Mapping[str, float], prefix: str = "",
             log_output: bool = True) -> dict[str, float]:
    """Execute the notebooks in order, with a start and an end line for each (``prefix``
    before both); each executed notebook is attached to the MLflow run it made."""
    timings: dict[str, float] = {}
    pipeline_start = time.perf_counter()
    for k, (name, label, stage, params) in enumerate(jobs, 1):
        elapsed = _clock(time.perf_counter() - pipeline_start)
        print(f"{prefix}[{k}/{len(jobs)}] {label}: starting at {elapsed}"
              f"{_estimate(previous, [job[1] for job in jobs[k - 1:]])}", flush=True)
        start = time.perf_counter()
        executed = execute(name, out / f"{label}.ipynb",
                           {"experiment_file": str(config), "overrides": dict(overrides or {}),
                            **params}, log_output=log_output)
        timings[label] = time.perf_counter() - start
        run = tracking.latest_run(cfg.name, stage, category=params.get("category"))
        if run is not None:  # the executed notebook, and as a page the MLflow UI shows
            client = MlflowClient(tracking.tracking_uri())
            client.log_artifact(run.info.run_id, str(executed), "notebooks")
            client.log_artifact(run.info.run_id, str(notebook_html(
                executed, executed.with_suffix(".html"))), "notebooks")
        print(f"{prefix}[{k}/{len(jobs)}] {label}: done in {_clock(timings[label])}  ({executed})",
              flush=True)
    return timings
