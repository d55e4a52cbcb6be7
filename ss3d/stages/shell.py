"""The shell every stage runs in, and where stages find each other's outputs.

A stage function opens one :class:`StageRun` and keeps its own loop explicit inside it::

    run = StageRun(cfg, "pretrain", out_dir=stage_dir(cfg, "pretrain"), track=track)
    state = PretrainState()                                  # the stage's state as data
    run.resume(path, state, model=net, optimizer=opt)        # optional, before the run opens
    with run.open(consumed=[render_run_id]):
        for step in run.bar(range(state.step, steps), desc="pretrain"):
            ...
            grad_norm = optimiser_step(loss, opt, scaler, net.parameters(), clip,
                                       runtime=run.runtime)
            state.step = step + 1
            run.log_metrics({"loss": float(loss)}, step=state.step)
        run.finish(state, model=net, optimizer=opt)          # the final checkpoint

The run owns what every stage needs and no stage should branch on:

* **device and rank** (:attr:`runtime`, from torchrun's environment): seeds per rank, the
  progress bar and printed lines on rank 0 only;
* **tracking or its absence**: with ``track=False``, or on any rank but 0, every ``log_*`` call
  is a no-op, so a stage logs unconditionally;
* **checkpoints**: a stage keeps its state in one object (:class:`StageState`:
  ``step``, ``state_dict``, ``load_state_dict``); :meth:`save` writes it with the model and
  optimiser in the one checkpoint format on rank 0 only (with the config and the MLflow run
  id), :meth:`resume` reads it back and adopts the run id so the same MLflow run continues,
  :meth:`finish` writes the final checkpoint unless the loop just did (a run resumed with
  nothing left to do too); the final checkpoint is logged as an artifact when the run closes.

Why not a generic trainer (Lightning, nerfstudio's ``Trainer``): self-training's inner camera
search and logit update are a loop inside the loop that researchers edit; a shell that owns the
bookkeeping and leaves the loop in the stage keeps those lines in plain sight.
"""

from __future__ import annotations

import contextlib
import math
import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import mlflow
import torch
from tqdm import tqdm  # plain text bars: papermill streams them to `ss3d pipeline`

from ss3d import tracking
from ss3d.config import ExperimentConfig, to_dict
from ss3d.data.locks import HeldLock, hold
from ss3d.engine import (
    Runtime,
    init_distributed,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    select_device,
)
from ss3d.files import check_name, inside

__all__ = ["MissingPretrainedError", "StageRun", "StageState", "TrainingResult",
           "find_pretrained", "latest_checkpoint", "stage_dir"]


# ----------------------------------------------------------------------------------------------
# Where stage outputs live, and how a later stage finds them
# ----------------------------------------------------------------------------------------------
def stage_dir(cfg: ExperimentConfig, stage: str) -> Path:
    """``<output_dir>/<name>/<stage>``; a relative ``output_dir`` is taken from the repo root.

    Raises:
        BadNameError: when the name would lead outside ``output_dir``.
    """
    root = Path(cfg.output_dir)
    if not root.is_absolute():
        root = tracking.repo_root() / root
    return inside(root, check_name(cfg.name, "name"), stage)


def latest_checkpoint(cfg: ExperimentConfig, stage: str, category: str | None = None,
                      track: bool = True) -> tuple[Path, str | None] | None:
    """``last.pt`` of the experiment's latest finished ``stage`` run (and its run id), else the
    local ``<output_dir>/<name>/<stage>[-<category>]/last.pt``, else None."""
    if track:
        run = tracking.latest_run(cfg.name, stage, category=category)
        if run is not None:
            path = tracking.artifact_path(run, "checkpoints/last.pt")
            if path.is_file():
                return path, run.info.run_id
    local = stage_dir(cfg, stage if category is None else f"{stage}-{category}") / "last.pt"
    return (local, None) if local.is_file() else None


class MissingPretrainedError(FileNotFoundError):
    """No pre-trained checkpoint: says which notebook or command to run first."""


def find_pretrained(cfg: ExperimentConfig, pretrained: str | Path | None = None,
                    track: bool = True) -> tuple[Path, str | None]:
    """The pre-trained checkpoint: ``pretrained`` if given, else the experiment's latest finished
    pre-training run in MLflow, else ``<output_dir>/<name>/pretrain/last.pt``."""
    if pretrained:
        path = Path(pretrained)
        if not path.is_file():
            raise MissingPretrainedError(f"pretrained checkpoint not found: {path}")
        return path, None
    found = latest_checkpoint(cfg, "pretrain", track=track)
    if found is not None:
        return found
    raise MissingPretrainedError(
        f"no pre-trained model for experiment '{cfg.name}': run notebooks/01_pretrain.ipynb "
        f"(or `ss3d pretrain --config <experiment>.yaml`) first, or pass a checkpoint path "
        f"(-p pretrained PATH / --pretrained PATH)")


# ----------------------------------------------------------------------------------------------
# The shell
# ----------------------------------------------------------------------------------------------
class StageState(Protocol):
    """A training stage's state as data: what a checkpoint holds besides the model and the
    optimiser, and what a resume restores. ``state_dict()`` is the checkpoint's ``extra``."""

    step: int

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


@dataclass
class TrainingResult:
    """What a training stage returns: its MLflow run (None untracked), final checkpoint,
    per-step history, figures (shown by the notebooks) and wall time."""

    run_id: str | None = None
    checkpoint: Path | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float = 0.0


class StageRun:
    """One invocation of one stage: runtime, output folder, MLflow run (or none), checkpoints.

    Args:
        stage: the MLflow stage tag (``pretrain``, ``selftrain``, ``selftrain-ablation``, ...).
        out_dir: where ``last.pt`` (:attr:`checkpoint`) and other local outputs go.
        track: log to MLflow; False makes every ``log_*`` a no-op.
        category: the category tag of per-category stages.
        seed: seeded as ``seed + rank`` (ranks draw different rays and batches); None: not
            seeded here.
        distributed: read torchrun's environment (False for stages that run in one process).
    """

    def __init__(self, cfg: ExperimentConfig, stage: str, *, out_dir: Path | None = None,
                 track: bool = True, progress: bool = True, category: str | None = None,
                 extra_tags: Mapping[str, str] | None = None, seed: int | None = None,
                 distributed: bool = True) -> None:
        self.cfg = cfg
        self.stage = stage
        self.out_dir = out_dir
        self.category = category
        self.extra_tags = dict(extra_tags or {})
        self.runtime: Runtime = (init_distributed(cfg.optim.device) if distributed
                                 else Runtime(device=select_device(cfg.optim.device)))
        self.track = track
        self.progress = progress
        self.run_id: str | None = None
        self.start_wall = time.perf_counter()
        self._active = False
        self.seed = seed
        self._saved_step: int | None = None  # the step this invocation last saved
        self._lock: HeldLock | None = None  # taken by resume() or open(): _acquire
        if seed is not None:
            seed_everything(self.rank_seed())

    # -- properties ----------------------------------------------------------------------------
    @property
    def stage_kind(self) -> str:
        """The stage a checkpoint belongs to: ``selftrain`` for ``selftrain-ablation`` too."""
        return tracking.stage_kind(self.stage)

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def is_main(self) -> bool:
        return self.runtime.is_main

    def rank_seed(self, step: int = 0) -> int:
        """This rank's seed: ``seed + rank`` at the start; after a resume at ``step``, a fresh
        one for every rank but 0 (a checkpoint holds only rank 0's random state)."""
        if self.seed is None:
            raise ValueError(f"stage {self.stage!r} was opened without a seed")
        return self.seed + self.runtime.rank + 7919 * step

    @property
    def logging(self) -> bool:
        """Whether ``log_*`` calls reach MLflow (tracking on, rank 0, inside :meth:`open`)."""
        return self.track and self.is_main and self._active

    @property
    def checkpoint(self) -> Path:
        if self.out_dir is None:
            raise ValueError(f"stage {self.stage!r} was opened without an output folder")
        return self.out_dir / "last.pt"

    @property
    def wall_seconds(self) -> float:
        return time.perf_counter() - self.start_wall

    # -- the MLflow run ------------------------------------------------------------------------
    @contextlib.contextmanager
    def open(self, consumed: Sequence[str | None] = ()) -> Iterator[StageRun]:
        """Start (or, after :meth:`resume`, continue) the stage's MLflow run on rank 0.

        On success the run logs ``wall_seconds`` and the final checkpoint (when one was
        written); on an exception the run ends FAILED (:func:`tracking.start_run`).
        """
        self._acquire()
        if not (self.track and self.is_main):
            self._active = True
            try:
                yield self
            finally:
                self._active = False
                self._release()
            return
        try:
            with tracking.start_run(self.cfg, self.stage, category=self.category,
                                    consumed=[c for c in consumed if c], run_id=self.run_id,
                                    extra_tags=self.extra_tags) as run:
                self.run_id = run.info.run_id
                self._active = True
                try:
                    yield self
                    if self.out_dir is not None and self.checkpoint.is_file():
                        tracking.log_checkpoint(self.checkpoint)
                    mlflow.log_metric("wall_seconds", self.wall_seconds)
                finally:
                    self._active = False
        finally:
            self._release()  # after the run is closed: the next run finds it ended

    def _acquire(self) -> None:
        """One run per experiment and training stage at once: a second is refused here
        (:class:`ss3d.data.locks.LockedError`, naming the holder), before it reads a checkpoint
        or writes anything; released when the run closes, or its process ends."""
        if self.out_dir is None or not self.runtime.is_main or (
                self._lock is not None and self._lock.held):
            return
        self._lock = hold(Path(self.out_dir).parent / f".{Path(self.out_dir).name}.lock",
                          f"{self.stage} of experiment '{self.cfg.name}' ({self.out_dir})")
        weakref.finalize(self, self._lock.release)

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None,
                    prefix: str = "") -> None:
        """Numbers to MLflow (``prefix`` + key), skipping a ``step``/``epoch`` entry."""
        if self.logging:
            tracking.log_metrics({f"{prefix}{k}": float(v) for k, v in metrics.items()
                                  if k not in ("step", "epoch")}, step=step)

    def log_headline(self, metrics: Mapping[str, float]) -> None:
        """The stage's few headline numbers as ``headline.<name>``: the same names in every
        run of a stage, so that the MLflow runs table and compare view can show them as
        columns (finite values only)."""
        self.log_metrics({f"headline.{k}": v for k, v in metrics.items()
                          if v is not None and math.isfinite(float(v))})

    def log_figure(self, fig: Any, name: str) -> None:
        """A matplotlib figure under ``figures/<name>.png`` (the figure stays open)."""
        if self.logging:
            tracking.log_figure(fig, name, close=False)

    def log_artifact(self, path: str | Path, artifact_dir: str | None = None) -> None:
        if self.logging:
            tracking.log_artifact(path, artifact_dir)

    def log_dict(self, data: Any, name: str) -> None:
        if self.logging:
            mlflow.log_dict(data, name)

    def log_table(self, rows: list[Mapping[str, Any]], name: str) -> None:
        """Rows as a table artifact ``tables/<name>.json`` (:func:`ss3d.tracking.log_table`)."""
        if self.logging:
            tracking.log_table(rows, name)

    def set_tag(self, key: str, value: str) -> None:
        if self.logging:
            mlflow.set_tag(key, value)

    # -- progress ------------------------------------------------------------------------------
    def bar(self, iterable: Iterable[Any] | None = None, **kwargs: Any) -> tqdm:
        """A tqdm bar shown on rank 0 when ``progress`` is on."""
        return tqdm(iterable, disable=not (self.progress and self.is_main), **kwargs)

    def print(self, message: str) -> None:
        """One line of progress on rank 0 (papermill streams it to ``ss3d pipeline``)."""
        if self.progress and self.is_main:
            tqdm.write(message)  # between bar updates, not through them

    # -- checkpoints ---------------------------------------------------------------------------
    def save(self, state: StageState, *, model: torch.nn.Module,
             optimizer: torch.optim.Optimizer | None = None, path: Path | None = None) -> Path:
        """Write the stage's checkpoint (default :attr:`checkpoint`) of ``state`` at
        ``state.step``. Every rank calls it (``state.state_dict()`` may synchronise the ranks);
        rank 0 writes."""
        path = path or self.checkpoint
        extra = state.state_dict()
        if self.is_main:
            save_checkpoint(path, stage=self.stage_kind, step=state.step,
                            config=to_dict(self.cfg), model=model, optimizer=optimizer,
                            extra=extra, mlflow_run_id=self.run_id)
        self._saved_step = state.step
        return path

    def finish(self, state: StageState, *, model: torch.nn.Module,
               optimizer: torch.optim.Optimizer | None = None) -> Path:
        """The stage's last word on its checkpoint: write ``state`` unless this invocation has
        just saved it. A run resumed with nothing left to do still leaves its checkpoint here
        (decided on what this process did, not on the file: another rank could see rank 0's
        file before or after it lands)."""
        if self._saved_step != state.step:
            self.save(state, model=model, optimizer=optimizer)
        return self.checkpoint

    def resume(self, resume: bool | str | Path, state: StageState, *, model: torch.nn.Module,
               optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any] | None:
        """Load ``resume`` (True: :attr:`checkpoint`; a path: that file) into the model,
        optimiser and ``state``, restore the RNG, and continue its MLflow run. Returns the
        checkpoint payload, or None when ``resume`` is off (``state`` is then untouched).

        Raises:
            CheckpointError: naming the file when it is missing, unreadable or of another stage.
        """
        self._acquire()
        if not resume:
            return None
        path = self.checkpoint if resume is True else Path(resume)
        payload = load_checkpoint(path, model=model, optimizer=optimizer,
                                  map_location=self.device, restore_rng=True,
                                  stage=self.stage_kind, config=to_dict(self.cfg))
        self.run_id = payload.get("mlflow_run_id")
        state.step = int(payload["step"])
        state.load_state_dict(payload.get("extra") or {})
        if self.runtime.rank > 0 and self.seed is not None:
            # the file holds rank 0's RNG: the other ranks draw their own rays again
            seed_everything(self.rank_seed(int(payload["step"])))
        return payload
