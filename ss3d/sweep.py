"""``ss3d sweep``: a grid of config overrides × seeds over a range of stages, as MLflow runs.

A sweep file (``experiments/sweeps/*.yaml``)::

    name: phaseb_lr
    experiment: ../smoke.yaml        # the base experiment, relative to this file
    stages: [selftrain, evaluate]    # of pretrain → selftrain → distill → evaluate, in order
    seeds: [0, 1, 2]
    baseline: lr_1e-5                # the variant every other one is compared with
    set:                             # overrides of every variant
      data.collections: [bird]
    variants:
      lr_1e-5: {selftrain.lr: 1.0e-5}
      lr_1e-4: {selftrain.lr: 1.0e-4}

Runs, in the MLflow experiment ``<base name>-sweep-<sweep name>``: one parent run (stage
``sweep``), one child run per variant × seed nested under it, and each child's stage runs nested
under the child (:class:`ss3d.tracking.SweepScope`). Every stage from the first swept one on
belongs to the child: a stage it does not list (distillation above) is simply not there for its
evaluation. Stages before the first swept one are the
base experiment's latest finished runs (renders, the pre-trained model): every child shares them,
and the parent records them (``ss3d.sweep.upstream``); when they change, the next sweep is a new
parent. Each child executes the stages' notebooks through papermill, as the pipeline does, into
``<output_dir>/sweeps/<sweep>/<variant>-seed<seed>/``.

Resumable: a child whose resolved config (and upstream) already has a finished run under the
parent is skipped. Aggregation and the report: :mod:`ss3d.sweep_report`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import yaml
from mlflow.entities import Metric, Param, Run
from mlflow.tracking import MlflowClient

from ss3d import tracking
from ss3d.config import ConfigError, ExperimentConfig, flatten, load_config
from ss3d.files import check_name
from ss3d.pipeline import notebook_output_to_terminal, pipeline_jobs, run_jobs
from ss3d.stages.shell import stage_dir

__all__ = ["Child", "SweepError", "SweepSpec", "children", "find_parent", "load_sweep",
           "pending_children", "run_sweep", "slurm_commands"]

STAGE = "sweep"
CHILD_STAGE = "sweep-child"
TAG_NAME = "ss3d.sweep.name"
TAG_UPSTREAM = "ss3d.sweep.upstream"
TAG_KEY = "ss3d.sweep.key"
TAG_VARIANT = "ss3d.sweep.variant"
TAG_SEED = "ss3d.sweep.seed"
_KEYS = {"name", "experiment", "stages", "seeds", "baseline", "set", "variants", "description"}


class SweepError(ValueError):
    """A sweep file or a sweep's inputs are wrong: names the file and the problem."""


@dataclass
class SweepSpec:
    """A parsed sweep file. ``common``: overrides of every variant; ``variants``: name →
    overrides (applied after ``common``); ``base_name``: the base experiment's name (no
    variant may change it)."""

    path: Path
    name: str
    experiment: Path
    base_name: str
    stages: list[str]
    seeds: list[int]
    baseline: str
    variants: dict[str, dict[str, Any]]
    common: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def mlflow_experiment(self) -> str:
        return f"{self.base_name}-sweep-{self.name}"

    def base(self, extra: Mapping[str, Any] | None = None) -> ExperimentConfig:
        return load_config(self.experiment, {**self.common, **(extra or {})})


@dataclass(frozen=True)
class Child:
    """One variant × seed: ``overrides`` make its config from the base experiment."""

    index: int
    variant: str
    seed: int
    overrides: dict[str, Any]
    key: str

    @property
    def label(self) -> str:
        return f"{self.variant}-seed{self.seed}"


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and check a sweep file: every variant's config is loaded and validated here, so a
    bad key fails before the first child runs."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise SweepError(f"{path}: cannot read the sweep file ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        raise SweepError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(raw, dict):
        raise SweepError(f"{path}: expected a mapping with name, experiment, stages, seeds, "
                         "baseline and variants")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise SweepError(f"{path}: unknown key(s) {', '.join(unknown)} (known: "
                         f"{', '.join(sorted(_KEYS))})")
    missing = [k for k in ("name", "experiment", "stages", "seeds", "variants") if k not in raw]
    if missing:
        raise SweepError(f"{path}: missing {', '.join(missing)}")
    name = check_name(str(raw["name"]), "sweep name")
    stages = [str(s) for s in raw["stages"]]
    order = tracking.PIPELINE_STAGES
    if (not stages or any(s not in order[1:] for s in stages) or len(set(stages)) < len(stages)
            or stages != sorted(stages, key=order.index)):
        raise SweepError(f"{path}: stages {stages} must be stages of "
                         f"{' → '.join(order[1:])} in that order, e.g. [selftrain, evaluate]")
    seeds = raw["seeds"]
    if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
            or not all(isinstance(s, int) and s >= 0 for s in seeds)):
        raise SweepError(f"{path}: seeds must be a list of distinct integers ≥ 0, got {seeds!r}")
    variants = raw["variants"]
    if not isinstance(variants, dict) or not variants or not all(
            isinstance(v, dict | type(None)) for v in variants.values()):
        raise SweepError(f"{path}: variants must map names to overrides "
                         "({key: value, ...}; {} for the base settings)")
    variants = {check_name(str(k), "variant name"): dict(v or {}) for k, v in variants.items()}
    baseline = str(raw.get("baseline", next(iter(variants))))
    if baseline not in variants:
        raise SweepError(f"{path}: baseline {baseline!r} is not a variant "
                         f"({', '.join(variants)})")
    common = raw.get("set") or {}
    if not isinstance(common, dict):
        raise SweepError(f"{path}: set must map config keys to values")
    for reserved in ("seed", "output_dir", "name"):
        if reserved in common or any(reserved in v for v in variants.values()):
            raise SweepError(f"{path}: '{reserved}' is set by the sweep itself")
    experiment = (path.parent / str(raw["experiment"])).resolve()
    if not experiment.is_file():
        raise SweepError(f"{path}: experiment file {experiment} not found")
    base_names = set()
    for variant, overrides in variants.items():
        try:
            base_names.add(load_config(experiment, {**common, **overrides}).name)
        except ConfigError as err:
            raise SweepError(f"{path}: variant {variant}: {err}") from None
    return SweepSpec(path.resolve(), name, experiment, base_names.pop(), stages, list(seeds),
                     baseline, variants, dict(common),
                     str(raw.get("description", "")).strip())


def children(spec: SweepSpec, upstream: Sequence[str] = ()) -> list[Child]:
    """Every variant × seed, variant-major, in the file's order. ``key`` hashes the child's
    resolved config (less where outputs go) and the upstream run ids."""
    base = spec.base()
    root = Path(base.output_dir)
    out: list[Child] = []
    for variant, overrides in spec.variants.items():
        for seed in spec.seeds:
            folder = root / "sweeps" / spec.name / f"{variant}-seed{seed}"
            child = {**spec.common, **overrides, "seed": seed, "output_dir": str(folder)}
            resolved = {k: v for k, v in flatten(load_config(spec.experiment, child)).items()
                        if k != "output_dir"}
            text = json.dumps([resolved, spec.stages, list(upstream)], sort_keys=True,
                              default=str)
            out.append(Child(len(out), variant, seed, child,
                             hashlib.sha1(text.encode()).hexdigest()[:16]))
    return out


# ----------------------------------------------------------------------------------------------
# MLflow: upstream, parent, children
# ----------------------------------------------------------------------------------------------
def upstream_runs(spec: SweepSpec) -> list[str]:
    """Run ids of the base experiment's stages before the sweep's first stage (latest finished,
    one per collection for self-training). A missing pre-trained model fails here."""
    base = spec.base()
    ids: list[str] = []
    for stage in tracking.PIPELINE_STAGES[:tracking.PIPELINE_STAGES.index(spec.stages[0])]:
        categories = base.data.collections if stage == "selftrain" else [None]
        for category in categories:
            run = tracking.latest_run(base.name, stage, category=category)
            if run is None and stage != "render":  # renders may come from files alone
                what = f"{stage} of {category}" if category else stage
                raise SweepError(f"{spec.path}: the sweep starts at {spec.stages[0]} and needs "
                                 f"the base experiment '{base.name}''s finished {what} run: "
                                 f"run `ss3d pipeline --config {spec.experiment}` (or that "
                                 "stage's notebook) first")
            if run is not None:
                ids.append(run.info.run_id)
    return ids


def _client() -> MlflowClient:
    return MlflowClient(tracking.tracking_uri())


def _search(experiment_id: str, tags: Mapping[str, str], status: str | None = None
            ) -> list[Run]:
    filters = [f"tags.`{k}` = '{v}'" for k, v in tags.items()]
    if status:
        filters.append(f"attributes.status = '{status}'")
    return _client().search_runs([experiment_id], " and ".join(filters),
                                 order_by=["attributes.start_time DESC"], max_results=1000)


def find_parent(spec: SweepSpec, upstream: Sequence[str], create: bool = False) -> Run | None:
    """The sweep's parent run for these upstream runs (the latest), created if asked."""
    experiment_id = tracking.configure(spec.mlflow_experiment)
    tags = {tracking.TAG_STAGE: STAGE, TAG_NAME: spec.name, TAG_UPSTREAM: ",".join(upstream)}
    found = _search(experiment_id, tags)
    if found or not create:
        return found[0] if found else None
    commit, dirty = tracking.git_state()
    run = _client().create_run(experiment_id, run_name=f"sweep-{spec.name}", tags={
        **tags, tracking.TAG_EXPERIMENT: spec.base_name, tracking.TAG_COMMIT: commit,
        tracking.TAG_DIRTY: str(dirty).lower(), tracking.TAG_CONSUMED: ",".join(upstream),
        "mlflow.note.content": spec.description or f"sweep {spec.name}",
        "mlflow.source.name": f"ss3d sweep {spec.path.name}", **tracking.process_tags()})
    _client().log_batch(run.info.run_id, params=[
        Param("sweep.file", str(spec.path)), Param("sweep.stages", ",".join(spec.stages)),
        Param("sweep.seeds", ",".join(map(str, spec.seeds))),
        Param("sweep.baseline", spec.baseline),
        Param("sweep.variants", json.dumps(spec.variants, default=str)[:6000]),
        Param("sweep.set", json.dumps(spec.common, default=str)[:6000])])
    return _client().get_run(run.info.run_id)


def finished_child(parent: Run, child: Child) -> Run | None:
    """The latest finished run of ``child`` (same key) under ``parent``."""
    found = _search(parent.info.experiment_id, {tracking.TAG_PARENT: parent.info.run_id,
                                                TAG_KEY: child.key}, status="FINISHED")
    return found[0] if found else None


def running_child(parent: Run, child: Child) -> Run | None:
    """A run of ``child`` (same key) under ``parent`` still RUNNING: its process is alive (or
    on another host, where it cannot be checked); the dead ones were closed KILLED
    (:func:`tracking.close_dead_runs`) before this is asked."""
    found = _search(parent.info.experiment_id, {tracking.TAG_PARENT: parent.info.run_id,
                                                TAG_KEY: child.key}, status="RUNNING")
    return found[0] if found else None


def pending_children(parent: Run, kids: Sequence[Child], only: Sequence[int] | None,
                     result: SweepRun) -> list[Child]:
    """The children to run now: not finished before (``result.skipped``) and not running in
    another live process (``result.running``): a sweep never holds two live children with one
    key. Runs left RUNNING by dead processes are closed KILLED first."""
    tracking.close_dead_runs(parent.info.experiment_id)
    todo = []
    for child in kids:
        if only is not None and child.index not in only:
            continue
        if finished_child(parent, child) is not None:
            result.skipped.append(child.label)
            print(f"{child.label}: finished before, skipped", flush=True)
        elif (live := running_child(parent, child)) is not None:
            tags = live.data.tags
            result.running.append(child.label)
            print(f"{child.label}: running in run {live.info.run_id} (pid "
                  f"{tags.get(tracking.TAG_PID, '?')} on {tags.get(tracking.TAG_HOST, '?')}), "
                  "not started again", flush=True)
        else:
            todo.append(child)
    return todo


def stage_runs(child_run_id: str, experiment_id: str) -> list[Run]:
    """The finished stage runs of one child, newest first."""
    return _search(experiment_id, {tracking.TAG_SWEEP_CHILD: child_run_id}, status="FINISHED")


def run_child(spec: SweepSpec, parent: Run, child: Child, stream: bool = True) -> Run:
    """Execute one child's notebooks under its own child run; its stage runs' headline metrics
    are copied onto the child run (``<stage run>.<name>``). Returns the finished child run."""
    client = _client()
    experiment_id = parent.info.experiment_id
    cfg = load_config(spec.experiment, child.overrides)
    run = client.create_run(experiment_id, run_name=child.label, tags={
        tracking.TAG_STAGE: CHILD_STAGE, tracking.TAG_PARENT: parent.info.run_id,
        TAG_NAME: spec.name, TAG_KEY: child.key, TAG_VARIANT: child.variant,
        TAG_SEED: str(child.seed), tracking.TAG_EXPERIMENT: cfg.name,
        **tracking.process_tags()})
    run_id = run.info.run_id
    client.log_batch(run_id, params=[Param(f"override.{k}", str(v)[:6000])
                                     for k, v in child.overrides.items()])
    scope = tracking.SweepScope(spec.mlflow_experiment, run_id, spec.stages[0])
    previous = os.environ.get(tracking.SWEEP_ENV)
    os.environ[tracking.SWEEP_ENV] = scope.encode()  # papermill's kernels inherit it
    try:
        run_jobs(pipeline_jobs(cfg, spec.stages), spec.experiment, child.overrides,
                 stage_dir(cfg, "notebooks"), cfg, {}, prefix=f"{child.label} ",
                 log_output=stream)
    except BaseException as err:
        client.set_terminated(run_id, "KILLED" if isinstance(err, KeyboardInterrupt)
                              else "FAILED")
        raise
    finally:
        if previous is None:
            os.environ.pop(tracking.SWEEP_ENV, None)
        else:
            os.environ[tracking.SWEEP_ENV] = previous
    now = int(time.time() * 1000)
    metrics: dict[str, float] = {}
    for stage_run in reversed(stage_runs(run_id, experiment_id)):  # the newest wins
        for key, value in stage_run.data.metrics.items():
            if key.startswith("headline."):
                metrics[f"{stage_run.info.run_name}.{key.removeprefix('headline.')}"] = value
    client.log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in metrics.items()])
    client.set_terminated(run_id, "FINISHED")
    return client.get_run(run_id)


def _child_worker(path: str, index: int, parent_id: str) -> str:
    """One child in a worker process (``--jobs N``): its notebooks' output stays in them."""
    spec = load_sweep(path)
    parent = _client().get_run(parent_id)
    upstream = parent.data.tags.get(TAG_UPSTREAM, "")
    child = children(spec, upstream.split(",") if upstream else [])[index]
    return run_child(spec, parent, child, stream=False).info.run_id


@dataclass
class SweepRun:
    """What :func:`run_sweep` did: the parent run, the children run, skipped and failed."""

    parent: Run
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)  # live in another process


def run_sweep(spec: SweepSpec, jobs: int = 1, only: Sequence[int] | None = None) -> SweepRun:
    """Run every child not finished yet (``only``: these indices), ``jobs`` at a time.

    A failing child is recorded (FAILED run, its notebook's error printed) and the others
    still run; Ctrl-C stops the sweep.
    """
    upstream = upstream_runs(spec)
    parent = find_parent(spec, upstream, create=True)
    assert parent is not None
    client = _client()
    result = SweepRun(parent)
    everything = children(spec, upstream)
    beyond = sorted(set(only or ()) - set(range(len(everything))))
    if beyond:
        raise SweepError(f"{spec.path}: no child {beyond[0]} (the sweep has "
                         f"{len(everything)}: 0 to {len(everything) - 1})")
    todo = pending_children(parent, everything, only, result)
    client.update_run(parent.info.run_id, status="RUNNING")
    for key, value in tracking.process_tags().items():
        client.set_tag(parent.info.run_id, key, value)
    print(f"sweep {spec.name}: {len(todo)} of {len(everything)} children to run "
          f"({len(result.skipped)} finished before); MLflow experiment "
          f"'{spec.mlflow_experiment}', parent run {parent.info.run_id}", flush=True)
    os.environ.setdefault("TQDM_MININTERVAL", "10")
    status = "FAILED"
    try:
        if jobs <= 1:
            with notebook_output_to_terminal():
                for k, child in enumerate(todo, 1):
                    print(f"--- child {k}/{len(todo)}: {child.label}", flush=True)
                    _run_one(lambda c=child: run_child(spec, parent, c).info.run_id, child,
                             result)
        else:
            with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
                futures = {pool.submit(_child_worker, str(spec.path), c.index,
                                       parent.info.run_id): c for c in todo}
                for future in as_completed(futures):
                    _run_one(future.result, futures[future], result)
        status = "FAILED" if result.failed else "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        client.set_terminated(parent.info.run_id, status)
    result.parent = client.get_run(parent.info.run_id)
    return result


def _run_one(call: Any, child: Child, result: SweepRun) -> None:
    from ss3d.notebooks import NotebookError

    try:
        run_id = call()
    except NotebookError as err:
        result.failed.append(child.label)
        print(f"{child.label}: FAILED: {err}", flush=True)
        return
    result.ran.append(child.label)
    print(f"{child.label}: finished (run {run_id})", flush=True)


# ----------------------------------------------------------------------------------------------
# SLURM: a job array of children, then the report
# ----------------------------------------------------------------------------------------------
TEMPLATE = "experiments/slurm/sweep.sbatch"


def slurm_commands(sweep_file: str, n_children: int) -> tuple[list[str], list[str]]:
    """The two ``sbatch`` command lines: the children as a job array, then the report after
    them (``{job}`` stands for the array's job id)."""
    return (["sbatch", "--parsable", f"--array=0-{n_children - 1}", TEMPLATE, sweep_file],
            ["sbatch", "--dependency=afterany:{job}", TEMPLATE, sweep_file, "--report-only"])


def submit_slurm(spec: SweepSpec, sweep_file: str) -> list[str]:
    """Create the parent run (so the array's tasks share it), then submit the array and the
    report job; without ``sbatch`` here, raises SweepError with the lines to run."""
    upstream = upstream_runs(spec)
    find_parent(spec, upstream, create=True)
    array, report = slurm_commands(sweep_file, len(children(spec, upstream)))
    if shutil.which("sbatch") is None:
        raise SweepError("no sbatch on this machine; on the cluster's login node, in the "
                         f"repository root, run:\n  JOB=$({shlex.join(array)})\n  "
                         + " ".join(f'"{part.replace("{job}", "$JOB")}"' if "{job}" in part
                                    else shlex.quote(part) for part in report))
    job = subprocess.run(array, check=True, capture_output=True,
                         text=True).stdout.strip().split(";")[0]
    after = subprocess.run([part.replace("{job}", job) for part in report], check=True,
                           capture_output=True, text=True).stdout.strip()
    return [f"children: array job {job}", f"report: {after}"]
