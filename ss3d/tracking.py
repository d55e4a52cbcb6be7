"""MLflow helpers: every ss3d run is an MLflow run (README: Conventions).

* Store: ``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<repo root>/mlflow.db`` so that
  ``mlflow ui`` started in the repo root shows everything. Artifacts of a SQLite store go next to
  the database, in ``mlartifacts/``.
* One MLflow experiment per experiment YAML (``cfg.name``), one run per stage invocation.
* Params = the config sections the stage reads (:data:`STAGE_SECTIONS`: data, model and its own
  section, ...), flattened; tags = stage, experiment, category, git commit, dirty flag
  (:func:`git_state`: tracked source changed, not ``reports/`` or notebook metadata) and the run
  ids a run consumed (lineage).
* :func:`latest_run` is how a later stage finds its inputs.
* A store that cannot be reached or written fails fast, in one line naming its URI
  (:class:`TrackingError`): a tracking server's HTTP retries are bounded to seconds
  (:data:`HTTP_DEFAULTS`, unless the environment sets them).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ss3d.config import ExperimentConfig, flatten
from ss3d.data.locks import exclusive
from ss3d.files import repo_root  # here too: tracking.repo_root is public

__all__ = [
    "TAG_CATEGORY",
    "TAG_CONSUMED",
    "TAG_EXPERIMENT",
    "TAG_STAGE",
    "TrackingError",
    "artifact_path",
    "configure",
    "latest_run",
    "log_artifact",
    "log_checkpoint",
    "log_figure",
    "log_metrics",
    "log_table",
    "repo_root",
    "start_run",
    "tracking_uri",
    "ui_url",
]

TAG_STAGE = "ss3d.stage"
TAG_EXPERIMENT = "ss3d.experiment"
TAG_CATEGORY = "ss3d.category"
TAG_CONSUMED = "ss3d.consumed_runs"
TAG_DIRTY = "ss3d.git_dirty"
TAG_COMMIT = "mlflow.source.git.commit"
# MLflow params are capped in length; long lists are truncated rather than failing the run.
_MAX_PARAM_CHARS = 6000
# On a resumed run: the last step each metric had been logged at before the interruption.
_logged_until: dict[str, int] = {}




# MLflow retries an unreachable server 7 times with a growing backoff (over 4 minutes) and
# waits 120 s for an answer; a stage should fail in seconds and say so. Set in the environment
# when a store is an HTTP server, unless the user set them.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
                 "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


class TrackingError(RuntimeError):
    """The MLflow store cannot be reached or written; one line naming its URI and the cause."""


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` or the repo's default SQLite store."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"
    if uri.startswith(("http://", "https://")):
        for key, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
    return uri


def _shown_uri(uri: str) -> str:
    return re.sub(r"//[^/@]*@", "//***@", uri)  # never a password in a message


def describe_store_error(err: BaseException, uri: str | None = None) -> str:
    """One line for an MLflow store failure: the URI and the cause (unreachable, read-only, or
    the first line of the database's own message)."""
    uri = _shown_uri(uri or tracking_uri())
    text = str(err)
    if uri.startswith(("http://", "https://")):
        lowered = text.lower()
        reason = next((why for needle, why in (
            ("connection refused", "connection refused"), ("timed out", "timed out"),
            ("name or service not known", "unknown host"),
            ("temporary failure in name resolution", "unknown host"),
            ("max retries exceeded", "no answer")) if needle in lowered), None)
        if reason:
            return (f"the MLflow tracking server {uri} is unreachable ({reason}): start it, or "
                    "unset MLFLOW_TRACKING_URI to use the repository's local store")
    database = Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None
    if "readonly database" in text or "read-only file system" in text.lower() or (
            database is not None and database.is_file()
            and not (os.access(database, os.W_OK) and os.access(database.parent, os.W_OK))):
        return (f"the MLflow store {uri} is read-only ({_first_cause(text)}): make it "
                "writable, or point MLFLOW_TRACKING_URI at a writable store")
    return f"the MLflow store {uri}: {_first_cause(text)}"


def _first_cause(text: str) -> str:
    """The database's own words in MLflow's message, else its first line."""
    found = re.search(r"\((?:[\w.]+\.)?\w*Error\) ([^\n]+)", text)
    cause = found.group(1) if found else next(
        (line.strip() for line in text.splitlines() if line.strip()), "no message")
    return cause[:300]


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    """Turn MLflow's store failures into one-line TrackingErrors."""
    try:
        yield
    except MlflowException as err:
        raise TrackingError(describe_store_error(err)) from err


def _artifact_root(uri: str) -> str | None:
    """Artifact folder for a local SQLite store (next to the .db); None lets the server decide."""
    if uri.startswith("sqlite:///"):
        db_path = Path(uri[len("sqlite:///"):])
        return (db_path.parent / "mlartifacts").resolve().as_uri()
    return None


def configure(experiment: str) -> str:
    """Point MLflow at our store and select (creating if needed) ``experiment``; return its id."""
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    with _store_errors():
        return _configure(uri, experiment)


#: Where ``make ui`` serves (``python -m ss3d.mlflow_ui``).
UI_URL = "http://127.0.0.1:5000"


def ui_url(experiment_id: str, run_id: str | None = None, base: str = UI_URL) -> str:
    """A link to an experiment's runs table (or one run's page) in MLflow's UI that opens in
    its model-training view: the ``workflowType`` URL parameter, which MLflow 3.17's UI reads
    before its stored setting (:mod:`ss3d.mlflow_ui`), so it works on any MLflow server."""
    page = f"{base}/#/experiments/{experiment_id}/runs" + (f"/{run_id}" if run_id else "")
    return f"{page}?workflowType=machine_learning"


def log_table(rows: Sequence[Mapping[str, Any]], name: str) -> None:
    """Rows (dicts with the same keys) as an MLflow table artifact ``tables/<name>.json``:
    the run's artifact page shows it as a table, sortable by column (one artifact instead of
    one metric, and one chart, per cell)."""
    if not rows:
        return
    columns = list(dict.fromkeys(k for row in rows for k in row))
    # the UI's table reads a dot in a column name as a nested field (and shows no value)
    mlflow.log_table({c.replace(".", "_"): [row.get(c) for row in rows] for c in columns},
                     artifact_file=f"tables/{name}.json")


def _configure(uri: str, experiment: str) -> str:
    # Two processes opening a new SQLite store at once both try to create its tables (and the
    # experiment), and one fails; a lock beside the database makes the second wait.
    guard = (exclusive(Path(uri[len("sqlite:///"):] + ".lock"), f"the MLflow store {uri}")
             if uri.startswith("sqlite:///") else contextlib.nullcontext())
    with guard:
        client = MlflowClient(uri)
        found = client.get_experiment_by_name(experiment)
        if found is not None:
            experiment_id = found.experiment_id
        else:
            root = _artifact_root(uri)
            experiment_id = client.create_experiment(
                experiment, artifact_location=f"{root}/{experiment}" if root else None,
                # model training for MLflow 3's API; the 3.17 UI ignores the tag (its mode
                # is a browser setting: ss3d.mlflow_ui and ui_url choose model training)
                tags={"mlflow.experimentKind": "custom_model_development",
                      "mlflow.note.content": f"ss3d experiment '{experiment}': one run per "
                      "stage (render, pretrain, selftrain per category, distill, evaluate)."})
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


#: Tracked paths no run reads: output committed for readers, which ``make smoke`` rewrites
#: (``reports/smoke/``). Their changes do not make a checkout dirty.
GENERATED_PATHS = ("reports/",)


def git_state(root: str | Path | None = None) -> tuple[str, bool]:
    """(commit hash or 'unknown', dirty flag) of the repo this code runs from (or ``root``).

    Dirty means that a tracked file's working copy differs from the commit (staged or not),
    except where the difference cannot change a run: files under :data:`GENERATED_PATHS`,
    and a notebook whose cells (type, source and tags, which papermill reads) are the
    committed ones (JupyterLab rewrites metadata, ids and outputs on save). Untracked files
    do not count. Without git, or outside a repository: ``('unknown', False)``.
    """
    root = Path(repo_root() if root is None else root)
    try:
        top, commit = _git(root, "rev-parse", "--show-toplevel", "HEAD").split("\n")[:2]
        changed = _git(root, "diff", "HEAD", "--name-only", "--no-renames", "--no-ext-diff",
                       "-z").split("\0")
        dirty = any(_changes_source(Path(top), path) for path in changed if path)
        return commit.strip(), dirty
    except (OSError, subprocess.SubprocessError, ValueError):
        return "unknown", False


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                          check=True, timeout=10).stdout


def _changes_source(top: Path, path: str) -> bool:
    """Whether the working copy of ``path`` (relative to the repository's top, differing from
    HEAD) can change what a run does."""
    if path.startswith(GENERATED_PATHS):
        return False
    if not path.endswith(".ipynb"):
        return True
    try:
        committed = _git(top, "show", f"HEAD:{path}")
        current = (top / path).read_text(encoding="utf-8")
    except (OSError, subprocess.SubprocessError, UnicodeDecodeError):
        return True  # deleted, new, or unreadable: a change
    before, after = _notebook_cells(committed), _notebook_cells(current)
    return before is None or after is None or before != after


def _notebook_cells(text: str) -> list[tuple[Any, str, list[str]]] | None:
    """What a notebook runs: each cell's type, source and tags (None if not a notebook)."""
    try:
        cells = json.loads(text).get("cells")
    except (ValueError, AttributeError):
        return None
    if not isinstance(cells, list):
        return None
    out = []
    for cell in cells:
        if not isinstance(cell, dict):
            return None
        source = cell.get("source", "")
        source = "".join(map(str, source)) if isinstance(source, list) else str(source)
        metadata = cell.get("metadata")
        tags = metadata.get("tags", []) if isinstance(metadata, dict) else []
        out.append((cell.get("cell_type"), source, sorted(map(str, tags))))
    return out


# The config sections a stage reads: its run logs only these as params (the rest would be
# noise in the UI's params table). Root keys (name, seed, output_dir) go with every stage.
_ROOT = ("name", "seed", "output_dir")
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "render": (*_ROOT, "data", "render"),
    "ingest": (*_ROOT, "data"),
    "pretrain": (*_ROOT, "data", "render", "model", "optim", "pretrain"),
    "selftrain": (*_ROOT, "data", "model", "optim", "selftrain"),
    "distill": (*_ROOT, "data", "model", "optim", "distill"),
    "evaluate": (*_ROOT, "data", "model", "evaluate"),
}
# where a stage runs from: `ss3d pipeline` names the notebook for its kernel
SOURCE_ENV = "SS3D_SOURCE"


def _source_tags(stage: str, category: str | None, consumed: Sequence[str]) -> dict[str, str]:
    """``mlflow.source.name`` (the notebook or CLI command, not ``ipykernel_launcher.py``) and
    a one-line run description."""
    source = os.environ.get(SOURCE_ENV)
    if not source:
        argv0 = Path(sys.argv[0]).name if sys.argv else ""
        if argv0 in ("ss3d", "cli.py", "__main__.py") and len(sys.argv) > 1:
            source = f"ss3d {sys.argv[1]}"
        elif "ipykernel" in argv0:
            source = "a Jupyter notebook"
        else:
            source = argv0 or "python"
    what = f"{stage} of {category}" if category else stage
    inputs = f"; consumed runs {', '.join(consumed)}" if consumed else ""
    return {"mlflow.source.name": source,
            "mlflow.source.type": "NOTEBOOK" if source.endswith(".ipynb") else "LOCAL",
            "mlflow.note.content": f"ss3d {what}, run from {source}{inputs}."}



#: Stage tags that are a variant of another stage: their checkpoints and config sections are
#: that stage's, but later stages never take their runs as inputs.
STAGE_VARIANTS = {"selftrain-ablation": "selftrain"}


def stage_kind(stage: str) -> str:
    """The stage a tag belongs to: ``selftrain`` for ``selftrain-ablation``, else itself."""
    return STAGE_VARIANTS.get(stage, stage)


# ----------------------------------------------------------------------------------------------
# Sweep scope: the stage runs of one sweep child (``ss3d.sweep``)
# ----------------------------------------------------------------------------------------------
#: Stages in the order data flows through them; a sweep child owns every stage from its first
#: swept one on.
PIPELINE_STAGES = ("render", "pretrain", "selftrain", "distill", "evaluate")
#: Set while a sweep child runs (inherited by papermill's kernels): ``<sweep MLflow
#: experiment>|<child run id>|<first swept stage>``.
SWEEP_ENV = "SS3D_SWEEP_CHILD"
TAG_SWEEP_CHILD = "ss3d.sweep.child"
TAG_PARENT = "mlflow.parentRunId"


@dataclass(frozen=True)
class SweepScope:
    """Where a sweep child's stage runs live. Stages from ``first_stage`` on are the child's
    own: they start in the sweep's MLflow ``experiment``, nested under the child run, and
    later stages of the child find only them. Earlier stages (upstream: renders, the
    pre-trained model) are looked up in the base experiment as usual, and shared by every
    child."""

    experiment: str
    child_run: str
    first_stage: str

    def owns(self, stage: str) -> bool:
        kind = stage_kind(stage)
        if kind not in PIPELINE_STAGES:  # ingest and other data stages are upstream
            return False
        return PIPELINE_STAGES.index(kind) >= PIPELINE_STAGES.index(self.first_stage)

    def encode(self) -> str:
        return f"{self.experiment}|{self.child_run}|{self.first_stage}"


def sweep_scope() -> SweepScope | None:
    """The scope of the sweep child this process runs in (``$SS3D_SWEEP_CHILD``), else None."""
    value = os.environ.get(SWEEP_ENV, "")
    parts = value.split("|")
    if len(parts) != 3 or parts[2] not in PIPELINE_STAGES:
        return None
    return SweepScope(*parts)


# ----------------------------------------------------------------------------------------------
# Runs whose process is gone (kill -9, a lost node): closed KILLED by the next run that meets them
# ----------------------------------------------------------------------------------------------
TAG_HOST = "ss3d.host"
TAG_PID = "ss3d.pid"
TAG_PID_START = "ss3d.pid_start"  # with the pid, names the process even after pid reuse


def process_tags() -> dict[str, str]:
    """The tags that name the process running a run: host, pid and the pid's start time."""
    import socket

    from ss3d.files import process_start

    return {TAG_HOST: socket.gethostname(), TAG_PID: str(os.getpid()),
            TAG_PID_START: process_start(os.getpid()) or ""}


def owner_gone(run: Run) -> bool:
    """Whether ``run`` (RUNNING) was started by a process of this host that no longer exists.
    Runs of other hosts, and runs without the process tags, cannot be judged here: False."""
    import socket

    from ss3d.files import process_alive, process_start

    tags = run.data.tags
    if tags.get(TAG_HOST) != socket.gethostname() or not tags.get(TAG_PID, "").isdigit():
        return False
    pid = int(tags[TAG_PID])
    if not process_alive(pid):
        return True
    started = tags.get(TAG_PID_START)
    now = process_start(pid)
    return bool(started) and now is not None and now != started  # the pid was reused


def close_dead_runs(experiment_id: str) -> list[str]:
    """Close as KILLED every RUNNING run of the experiment whose process is gone
    (:func:`owner_gone`); returns their ids. Finished runs are never changed."""
    client = MlflowClient(tracking_uri())
    closed = []
    with _store_errors():
        for run in client.search_runs([experiment_id], "attributes.status = 'RUNNING'",
                                      max_results=1000):
            if owner_gone(run):
                client.set_tag(run.info.run_id, "ss3d.closed_because",
                               f"its process (pid {run.data.tags[TAG_PID]} on "
                               f"{run.data.tags[TAG_HOST]}) was gone; closed by pid "
                               f"{os.getpid()}")
                client.set_terminated(run.info.run_id, "KILLED")
                closed.append(run.info.run_id)
    return closed


@contextlib.contextmanager
def start_run(cfg: ExperimentConfig, stage: str, *, category: str | None = None,
              consumed: Sequence[str] = (), run_id: str | None = None,
              extra_tags: Mapping[str, str] | None = None) -> Iterator[Run]:
    """Start (or resume, with ``run_id``) the MLflow run of one stage.

    On a fresh run, logs the flattened config as params and the lineage tags. The run ends
    FINISHED on normal exit and FAILED (or KILLED on Ctrl-C) when the block raises, so
    :func:`latest_run` never picks a broken run. A resumed run that fails gets back the status
    (and end time) it had: this invocation did not start it, and a FINISHED run with a good
    checkpoint stays the one later stages find.
    """
    scope = sweep_scope()
    scoped = scope is not None and scope.owns(stage)
    experiment_id = configure(scope.experiment if scoped else cfg.name)
    close_dead_runs(experiment_id)  # runs left RUNNING by killed processes
    if mlflow.active_run() is not None:
        mlflow.end_run()
    run_name = stage if category is None else f"{stage}-{category}"
    with _store_errors():
        before = MlflowClient(tracking_uri()).get_run(run_id).info if run_id else None
    with _store_errors(), mlflow.start_run(run_id=run_id,
                                           run_name=None if run_id else run_name) as run:
        if run_id is None:
            commit, dirty = git_state()
            tags = {TAG_STAGE: stage, TAG_EXPERIMENT: cfg.name, TAG_COMMIT: commit,
                    TAG_DIRTY: str(dirty).lower(), TAG_CONSUMED: ",".join(consumed)}
            if category is not None:
                tags[TAG_CATEGORY] = category
            tags.update(_source_tags(stage, category, consumed))
            if scoped:  # nested under the sweep child in the MLflow UI
                tags.update({TAG_SWEEP_CHILD: scope.child_run, TAG_PARENT: scope.child_run})
            tags.update(extra_tags or {})
            tags.update(process_tags())
            mlflow.set_tags(tags)
            sections = STAGE_SECTIONS.get(stage_kind(stage))
            params = {k: (str(v)[:_MAX_PARAM_CHARS]) for k, v in flatten(cfg).items()
                      if sections is None or k.split(".")[0] in sections}
            mlflow.log_params(params)
        else:
            mlflow.set_tags({"ss3d.resumed": "true", **process_tags()})
            _logged_until.update(_last_logged_steps(run_id))
        try:
            yield run
        except BaseException as err:
            mlflow.end_run(status="KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED")
            if before is not None:
                MlflowClient(tracking_uri()).set_terminated(
                    run_id, status=before.status, end_time=before.end_time)
            raise
        finally:
            _logged_until.clear()


def _last_logged_steps(run_id: str) -> dict[str, int]:
    """``metric key -> highest step logged`` of an existing run."""
    client = MlflowClient()
    keys = client.get_run(run_id).data.metrics.keys()
    return {key: max((m.step for m in client.get_metric_history(run_id, key)), default=-1)
            for key in keys}


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """``mlflow.log_metrics``, except that a resumed run never logs a step twice.

    A run killed between two checkpoints had already logged the steps it then repeats after
    the resume (the same values: the RNG state is restored). Those points are skipped, so
    every curve has one point per step.
    """
    if step is not None and _logged_until:
        metrics = {k: v for k, v in metrics.items() if step > _logged_until.get(k, -1)}
    if metrics:
        mlflow.log_metrics(dict(metrics), step=step)


def log_figure(fig: Any, name: str, close: bool = True) -> None:
    """Log a matplotlib figure under ``figures/<name>`` (``.png`` added if missing)."""
    if not name.endswith((".png", ".jpg", ".svg", ".pdf")):
        name = f"{name}.png"
    mlflow.log_figure(fig, f"figures/{name}")
    if close:
        import matplotlib.pyplot as plt

        plt.close(fig)


def log_artifact(path: str | Path, artifact_dir: str | None = None) -> None:
    """Log a file or a folder as an artifact of the active run."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"cannot log artifact: {path} does not exist")
    if path.is_dir():
        mlflow.log_artifacts(str(path), artifact_dir)
    else:
        mlflow.log_artifact(str(path), artifact_dir)


def log_checkpoint(path: str | Path) -> None:
    """Log a checkpoint file under ``checkpoints/`` of the active run."""
    log_artifact(path, "checkpoints")


_DOWNLOADS: list[str] = []  # temp dirs of downloaded artifacts, removed when the process exits


@atexit.register
def _remove_downloads() -> None:
    while _DOWNLOADS:
        shutil.rmtree(_DOWNLOADS.pop(), ignore_errors=True)


def artifact_path(run: Run | str, relative: str) -> Path:
    """Local path of a run's artifact.

    From a local file store this is the stored file itself. From a remote store the artifact is
    downloaded into a temp dir that lives as long as this process (checkpoints are hundreds of
    MB: a long-lived temp dir per call filled CI's disk)."""
    run_id = run if isinstance(run, str) else run.info.run_id
    client = MlflowClient(tracking_uri())
    with _store_errors():
        uri = client.get_run(run_id).info.artifact_uri
    if uri.startswith("file://"):
        local = Path(uri[len("file://"):]) / relative
        if local.exists():
            return local
    target = tempfile.mkdtemp(prefix="ss3d-artifact-")
    _DOWNLOADS.append(target)
    # the same store as the lookup above: mlflow's own default may be another one (a URI set
    # earlier in this process with mlflow.set_tracking_uri)
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=relative,
                                                    dst_path=target,
                                                    tracking_uri=tracking_uri()))


def latest_run(experiment: str, stage: str, *, category: str | None = None,
               status: str = "FINISHED", tags: Mapping[str, str] | None = None) -> Run | None:
    """The most recent run of ``stage`` (and ``category``) in ``experiment`` with ``status``
    (and every tag of ``tags`` equal to its value).

    Inside a sweep child (:func:`sweep_scope`) the child's own stages are looked up among its
    runs only, in the sweep's experiment."""
    scope = sweep_scope()
    if scope is not None and scope.owns(stage):
        experiment = scope.experiment
        tags = {**(tags or {}), TAG_SWEEP_CHILD: scope.child_run}
    with _store_errors():
        return _latest_run(experiment, stage, category, status, tags)


def _latest_run(experiment: str, stage: str, category: str | None, status: str,
                tags: Mapping[str, str] | None) -> Run | None:
    client = MlflowClient(tracking_uri())
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    filters = [f"tags.`{TAG_STAGE}` = '{stage}'", f"attributes.status = '{status}'"]
    if category is not None:
        filters.append(f"tags.`{TAG_CATEGORY}` = '{category}'")
    if not tags:
        runs = client.search_runs([found.experiment_id], filter_string=" and ".join(filters),
                                  order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0] if runs else None
    # compared here, not in the filter: a value (a path) may hold quotes
    for run in client.search_runs([found.experiment_id], filter_string=" and ".join(filters),
                                  order_by=["attributes.start_time DESC"], max_results=200):
        if all(run.data.tags.get(key) == value for key, value in tags.items()):
            return run
    return None
