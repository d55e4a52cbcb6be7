"""Stage 2: category-specific self-training with multi-hypothesis cameras (README: Self-training).

Before the first epoch (``selftrain.init=grid``, the default) every image's hypotheses start at
the best poses of a coarse grid, one per azimuth sector, scored with the pre-trained network;
``init=spread`` is the paper's random elevation and distance per sector.

Each training step searches every hypothesis' camera with the network frozen, moves the
hypothesis logits on low-noise full-image scores and, in phase B, updates the network: the
inner loops are :mod:`ss3d.stages.selftrain_loops`, the scores :mod:`ss3d.scoring`. This module
is the stage around them: the run, its state (:class:`SelftrainState`), checkpoints, figures
and the H = 1 ablation.

The chosen pose of an image is its highest-weight hypothesis (``selftrain.select=weights``, the
paper) or its lowest full-image loss at ``selftrain.selection_size`` (``select=loss``, the default:
in our measurements a low-noise loss picked better). Both are logged, with best-of-H,
against the hidden true cameras of rendered collections — for evaluation only, never for
training.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch
from torch.utils.data import DataLoader, Subset

from ss3d.cameras import FIGURE_DISTANCE, FIGURE_POSES
from ss3d.config import ExperimentConfig
from ss3d.data import taxonomy
from ss3d.engine import (
    grad_scaler,
    load_checkpoint,
    make_adam,
)
from ss3d.hypotheses import CameraBank, frame_alignment
from ss3d.model import ReconstructionNet, adopt_checkpoint_model
from ss3d.scoring import (
    ViewpointPrior,
    pose_grid,
)
from ss3d.stages.data import data_paths
from ss3d.stages.selftrain_loops import (
    Collection,
    evaluate_epoch,
    initialise_from_grid,
    merge_bank,
    render_chosen,
    selftrain_step,
    synthetic_batches,
    train_mode,
)
from ss3d.stages.shell import (
    MissingPretrainedError,
    StageRun,
    TrainingResult,
    find_pretrained,
    stage_dir,
)
from ss3d.viz import finish_grid, finish_plot
from ss3d.volume import render_network

__all__ = ["ABLATION_TAG", "MissingPretrainedError", "SelftrainResult", "SelftrainState",
           "curves_figure", "hypotheses_figure", "selftrain_stage", "single_hypothesis_ablation"]

log = logging.getLogger(__name__)
STAGE = "selftrain"


@dataclass
class SelftrainResult(TrainingResult):
    """Plus the per-epoch evaluations and the final camera bank."""

    epochs: list[dict[str, float]] = field(default_factory=list)
    bank: CameraBank | None = None
    # (N, P) losses of the pose grid under the pre-trained model: they do not depend on H, so
    # a run with other hypotheses on the same data and checkpoint (the ablation) reuses them
    grid_losses: torch.Tensor | None = None
    # (N, P, 2) the offsets that met each image's box at each grid pose (selftrain.offsets)
    grid_offsets: torch.Tensor | None = None


def curves_figure(history: list[dict[str, float]], epochs: list[dict[str, float]]
                  ) -> plt.Figure:
    """Losses before and after the camera search and the network's, the mean weight entropy
    per step, and mask IoU and pose accuracy per evaluated epoch."""
    fig, axes = plt.subplots(1, 3, figsize=(11, 3))
    steps = [r["step"] for r in history]
    for key, label in (("loss_before_cameras", "before camera search"),
                       ("loss_after_cameras", "after camera search"), ("network_loss", "network")):
        rows = [r for r in history if key in r]
        if rows:
            axes[0].plot([r["step"] for r in rows], [r[key] for r in rows], label=label, lw=1)
    axes[1].plot(steps, [r["weight_entropy"] for r in history], lw=1)
    for key in ("pose_acc30", "pose_best_of_h_acc30", "mask_iou"):
        rows = [e for e in epochs if key in e]
        if rows:
            axes[2].plot([e["epoch"] for e in rows], [e[key] for e in rows], "o-", label=key)
    axes[2].set_ylim(0, 1)
    finish_plot(fig, (axes[0], "render loss"), (axes[1], "mean weight entropy"))
    return finish_plot(fig, (axes[2], "per evaluated epoch"), xlabel="epoch")


def _figure(images, masks, rendered, weights, novel, step: int) -> plt.Figure:
    n = images.shape[0]
    h = weights.shape[1]
    cols = 4 + novel["rgb"].shape[1]
    fig, axes = plt.subplots(n, cols, figsize=(cols * 1.2, n * 1.2), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(images[i].permute(1, 2, 0).cpu().numpy())
        axes[i, 1].imshow(rendered["rgb"][i].clamp(0, 1).cpu().numpy())
        axes[i, 2].imshow(rendered["mask"][i].cpu().numpy(), cmap="gray", vmin=0, vmax=1)
        axes[i, 3].bar(range(h), weights[i].numpy(), color="tab:blue")
        axes[i, 3].set_ylim(0, 1)
        for j in range(novel["rgb"].shape[1]):
            axes[i, 4 + j].imshow(novel["rgb"][i, j].clamp(0, 1).cpu().numpy())
    titles = ["input", "render (chosen)", "mask (chosen)", "weights"] + [
        f"novel {j + 1}" for j in range(novel["rgb"].shape[1])]
    for j, title in enumerate(titles):
        axes[0, j].set_title(title, fontsize=7)
    return finish_grid(fig, axes, f"Self-training (step {step})", fontsize=8)


@torch.no_grad()
def hypotheses_figure(net: ReconstructionNet, data: Collection, chosen: torch.Tensor,
                      cfg: ExperimentConfig, device: torch.device, step: int) -> plt.Figure:
    """The first four images: input, render and mask from the chosen camera, weights, and the
    figure views (:data:`ss3d.cameras.FIGURE_POSES`)."""
    fixed = torch.arange(min(4, len(data.dataset)))
    items = [data.dataset[int(i)] for i in fixed]
    images = torch.stack([b["image"] for b in items]).to(device)
    masks = torch.stack([b["mask"] for b in items]).to(device)
    latent = net.encode(images)
    rendered = render_chosen(net, latent, data.bank, fixed, chosen, data.intrinsics, cfg)
    n = len(fixed)
    novel = {"rgb": torch.stack([render_network(
        lambda p: net.query(p, latent), torch.full((n,), az, device=device),
        torch.full((n,), el, device=device), torch.full((n,), FIGURE_DISTANCE, device=device),
        data.intrinsics, cfg.model)["rgb"] for az, el in FIGURE_POSES], dim=1).cpu()}
    return _figure(images, masks, rendered, data.bank.weights(fixed), novel, step)


# ----------------------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------------------
@dataclass
class SelftrainState:
    """Everything a self-training checkpoint holds besides the weights and the optimiser: the
    whole camera bank (so any number of processes resumes), the epoch reached, the last
    evaluation's choice and frame alignment, and the histories."""

    bank: CameraBank
    category: str
    pretrained: str
    step: int = 0
    epoch: int = 0
    # the previous evaluation's chosen hypotheses (None before the pre-search evaluation)
    last_choice: torch.Tensor | None = None
    # x_learned = G x_true, from the hidden cameras (evaluation only)
    alignment: list[list[float]] | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    epochs: list[dict[str, float]] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        return {"bank": self.bank.state_dict(), "epoch": self.epoch, "history": self.history,
                "epochs": self.epochs, "category": self.category,
                "pretrained": self.pretrained, "last_choice": self.last_choice,
                "alignment": self.alignment}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.bank.load_state_dict(state["bank"])
        self.epoch = state["epoch"]
        self.last_choice, self.alignment = state.get("last_choice"), state.get("alignment")
        self.history, self.epochs = state["history"], state["epochs"]


@dataclass
class _Selftraining:
    """One self-training run's parts, so that the stage function reads as its outline."""

    cfg: ExperimentConfig
    run: StageRun
    net: ReconstructionNet
    data: Collection
    state: SelftrainState
    result: SelftrainResult
    optimizer: torch.optim.Optimizer = field(init=False)
    scaler: torch.amp.GradScaler = field(init=False)

    def __post_init__(self) -> None:
        self.optimizer = make_adam(self.net.reconstruction_parameters(), self.cfg.selftrain.lr)
        # fp16 on CUDA only; a pass-through elsewhere
        self.scaler = grad_scaler(self.run.device, self.cfg.optim.amp)

    def evaluate(self) -> None:
        """Evaluate the cameras and network at ``state.epoch``: log, keep, show."""
        run, net, data, state = self.run, self.net, self.data, self.state
        merge_bank(data.bank, data.owned, run.runtime)
        metrics, state.last_choice = evaluate_epoch(net, data, self.cfg, run.runtime,
                                                    state.last_choice)
        if data.truth:
            g = frame_alignment(data.bank, data.truth, state.last_choice)
            state.alignment = None if g is None else g.tolist()
        state.epochs.append({"epoch": state.epoch, **metrics})
        run.log_metrics(metrics, step=state.step, prefix="epoch/")
        if run.is_main:
            net.eval()
            self.result.figures["hypotheses"] = hypotheses_figure(
                net, data, state.last_choice, self.cfg, run.device, state.step)
            train_mode(net)
            run.log_figure(self.result.figures["hypotheses"],
                           f"hypotheses/epoch_{state.epoch:03d}")
        pose = (f", pose acc@30 {metrics['pose_acc30']:.2f} (best-of-H "
                f"{metrics['pose_best_of_h_acc30']:.2f})") if "pose_acc30" in metrics else ""
        run.print(f"epoch {state.epoch}: mask IoU {metrics['mask_iou']:.3f}{pose}")

    def save(self, final: bool = False) -> None:
        """The checkpoint (every rank merges the bank first: the file holds all of it)."""
        merge_bank(self.data.bank, self.data.owned, self.run.runtime)
        save = self.run.finish if final else self.run.save
        save(self.state, model=self.net, optimizer=self.optimizer)

    def train_epoch(self, loader: DataLoader, steps: int, rehearsal: Any) -> None:
        """One epoch of :func:`selftrain_step` (phase B from ``selftrain.phase_a_epochs``)."""
        s, state = self.cfg.selftrain, self.state
        phase_b = state.epoch >= s.phase_a_epochs
        bar = self.run.bar(total=steps, unit="batch",
                           desc=f"selftrain {state.category} epoch {state.epoch + 1}/{s.epochs} "
                                f"({'B' if phase_b else 'A'})")
        for batch, _ in zip(loader, range(steps)):
            tic = time.perf_counter()
            record = selftrain_step(self.net, batch, self.data, self.optimizer, self.scaler,
                                    self.cfg, self.run.runtime, phase_b, rehearsal)
            state.step += 1
            record.update(step=state.step, epoch=state.epoch + 1,
                          step_seconds=time.perf_counter() - tic)
            state.history.append(record)
            self.run.log_metrics(record, step=state.step)
            bar.update()
            bar.set_postfix(loss=f"{record['loss_after_cameras']:.4f}", refresh=False)
        bar.close()
        state.epoch += 1


def _collection_of(cfg: ExperimentConfig, category: str, collection: str | Path | None) -> Path:
    """The collection file to self-train on; fails early when it is missing."""
    path = Path(collection) if collection else data_paths(cfg).collection(category)
    if not path.is_file():
        raise FileNotFoundError(f"no image collection for '{category}' at {path}: run "
                                "notebooks/00_render.ipynb (or `ss3d render`) or `ss3d ingest` "
                                "first")
    return path


def _check_grid_losses(grid_losses: torch.Tensor | None, data: Collection,
                       cfg: ExperimentConfig, collection: Path,
                       grid_offsets: torch.Tensor | None = None) -> None:
    expected = (len(data.dataset), pose_grid(cfg)[0].numel())
    if grid_losses is not None and tuple(grid_losses.shape) != expected:
        raise ValueError(f"grid_losses has shape {tuple(grid_losses.shape)}, this run needs "
                         f"{expected} (images of {collection} × grid poses)")
    if grid_offsets is not None and tuple(grid_offsets.shape) != (*expected, 2):
        raise ValueError(f"grid_offsets has shape {tuple(grid_offsets.shape)}, this run needs "
                         f"{(*expected, 2)} (images of {collection} × grid poses × 2)")


def selftrain_stage(cfg: ExperimentConfig, *, category: str | None = None,
                    pretrained: str | Path | None = None, collection: str | Path | None = None,
                    resume: bool | str | Path = False, progress: bool = True,
                    track: bool = True, run_tags: dict[str, str] | None = None,
                    grid_losses: torch.Tensor | None = None,
                    grid_offsets: torch.Tensor | None = None) -> SelftrainResult:
    """Self-train the pre-trained model on one category's image collection.

    Under ``torchrun`` each process owns every ``world``-th image (its camera hypotheses, its
    share of each global batch ``optim.batch_size``); the network's gradients are averaged and
    the camera bank is merged for evaluation and checkpoints, so a checkpoint resumes on any
    number of processes.

    ``grid_losses``: the :attr:`SelftrainResult.grid_losses` of a run on the same collection
    and pre-trained checkpoint (any H), reused instead of scoring the pose grid again (with
    ``selftrain.offsets``, together with its ``grid_offsets``).
    ``cfg`` is not changed.
    """
    cfg = copy.deepcopy(cfg)
    category = category or cfg.selftrain.category
    category = taxonomy.canonical_name(category) or category  # as validated: 'couch' -> sofa
    cfg.selftrain.category = category
    collection = _collection_of(cfg, category, collection)
    ckpt_in, pretrain_run = find_pretrained(cfg, pretrained, track)
    saved = load_checkpoint(ckpt_in, map_location="cpu")
    # the network runs as it was pre-trained (and this run's params and checkpoints say so)
    adopted = adopt_checkpoint_model(cfg.model, saved, ckpt_in)
    _check_viewpoint_prior(cfg, ckpt_in)
    suffix = "" if not run_tags else "-" + "-".join(f"{v}" for v in run_tags.values())
    # ablation runs get their own stage tag, so later stages never take them as inputs
    run = StageRun(cfg, STAGE if not run_tags else f"{STAGE}-ablation",
                   out_dir=stage_dir(cfg, f"{STAGE}-{category}{suffix}"), track=track,
                   progress=progress, category=category, extra_tags=run_tags, seed=cfg.seed)
    runtime, s = run.runtime, cfg.selftrain

    data = Collection.load(collection, cfg, runtime)
    _check_grid_losses(grid_losses, data, cfg, collection, grid_offsets)
    if adopted:
        run.print(f"model settings taken from {ckpt_in}: " + "; ".join(adopted))
    net = _pretrained_network(saved, cfg, run.device)
    if s.viewpoint_weight > 0:
        data.prior = ViewpointPrior.compute(net.viewpoint, data.dataset, data.owned,
                                            s.viewpoint_weight, runtime)
    train_mode(net)
    state = SelftrainState(bank=data.bank, category=category, pretrained=str(ckpt_in))
    result = SelftrainResult(run_id=None, checkpoint=run.checkpoint, bank=data.bank)
    job = _Selftraining(cfg, run, net, data, state, result)
    run.resume(resume, state, model=net, optimizer=job.optimizer)
    local_batch = runtime.local_batch(cfg.optim.batch_size, len(data.dataset))
    # BatchNorm needs batches > 1; every rank takes the same number of steps per epoch
    loader = DataLoader(Subset(data.dataset, data.owned.tolist()), batch_size=local_batch,
                        shuffle=True, drop_last=True, num_workers=cfg.data.num_workers)
    steps_per_epoch = (len(data.dataset) // runtime.world_size) // local_batch
    # synthetic batches with known cameras mixed into phase B (None when off)
    rehearsal = synthetic_batches(cfg, run.device, local_batch) if s.rehearsal > 0 else None

    with run.open(consumed=[pretrain_run]):
        if state.epoch == 0 and not state.epochs:
            if s.init == "grid":
                result.grid_losses, result.grid_offsets = _grid_start(
                    net, data, cfg, run, grid_losses, grid_offsets)
            job.evaluate()  # the pre-trained starting point, before any search
        while state.epoch < s.epochs:
            job.train_epoch(loader, steps_per_epoch, rehearsal)
            if state.epoch % s.eval_every == 0 or state.epoch == s.epochs:
                job.evaluate()
            job.save()
        job.save(final=True)
        if state.epochs:
            last = state.epochs[-1]
            # viewpoint_net_acc30: the pose prior's own accuracy (rendered collections with a
            # viewpoint prior), so that sweeps over pre-training report it per collection
            run.log_headline({key: last.get(key) for key in (
                "mask_iou", "pose_acc30", "pose_acc30_vertical", "pose_best_of_h_acc30",
                "viewpoint_net_acc30")})
        result.figures["curves"] = curves_figure(state.history, state.epochs)
        run.log_figure(result.figures["curves"], "curves")
        _log_cameras(run, data, state.alignment)
    result.run_id = run.run_id
    result.history, result.epochs = state.history, state.epochs
    result.wall_seconds = run.wall_seconds
    return result


def _check_viewpoint_prior(cfg: ExperimentConfig, ckpt_in: Path) -> None:
    if cfg.selftrain.viewpoint_weight > 0 and not cfg.model.viewpoint_net:
        raise ValueError(f"selftrain.viewpoint_weight = {cfg.selftrain.viewpoint_weight} needs a "
                         f"pre-trained model with a viewpoint network, and {ckpt_in} has none: "
                         "pre-train with model.viewpoint_net=true, or set "
                         "selftrain.viewpoint_weight=0")


def _pretrained_network(saved: dict, cfg: ExperimentConfig,
                        device: torch.device) -> ReconstructionNet:
    """The pre-trained network of checkpoint payload ``saved``, built from
    ``cfg.model`` once :func:`adopt_checkpoint_model` has made its function fields the
    checkpoint's. The encoder's initial weights file is not read: the checkpoint has the
    weights (and a self-training node need not hold that file)."""
    net = ReconstructionNet(replace(cfg.model, pretrained_weights=""))
    net.load_state_dict(saved["model"])
    return net.to(device)


def _grid_start(net: ReconstructionNet, data: Collection, cfg: ExperimentConfig, run: StageRun,
                grid_losses: torch.Tensor | None, grid_offsets: torch.Tensor | None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`initialise_from_grid` in eval mode, timed; returns the grid losses and (with
    offsets) the grid offsets."""
    tic = time.perf_counter()
    net.eval()
    try:
        found = initialise_from_grid(net, data.dataset, data.bank, cfg, run.runtime,
                                     data.owned, run.progress, grid_losses, data.prior,
                                     grid_offsets)
    finally:
        train_mode(net)
    run.log_metrics({"grid_init_seconds": time.perf_counter() - tic})
    return found


def _log_cameras(run: StageRun, data: Collection, alignment: list[list[float]] | None) -> None:
    """The final camera bank (``camera_bank.pt``) and, for rendered collections, the frame
    alignment ``G`` as artifacts of the run."""
    merge_bank(data.bank, data.owned, run.runtime)
    if run.is_main and run.out_dir is not None:
        torch.save(data.bank.state_dict(), run.out_dir / "camera_bank.pt")
        run.log_artifact(run.out_dir / "camera_bank.pt", "cameras")
    if alignment is not None:
        run.log_dict({"G": alignment, "convention": "x_learned = G x_true (column vectors), "
                      "from the hidden cameras; evaluation only"}, "cameras/alignment.json")


ABLATION_TAG = "ss3d.ablation"


def single_hypothesis_ablation(cfg: ExperimentConfig, reference: SelftrainResult, *,
                               pretrained: str | Path | None = None, progress: bool = True,
                               track: bool = True) -> SelftrainResult:
    """The H = 1 ablation of ``reference`` (a multi-hypothesis run of ``cfg``): the same data,
    pre-trained model and budget with one camera per image, logged as stage
    ``selftrain-ablation`` so later stages never take it as a teacher. Reuses the reference's
    pose-grid scores, which do not depend on H. ``cfg`` is not changed."""
    single = copy.deepcopy(cfg)
    single.selftrain.hypotheses = 1
    return selftrain_stage(single, pretrained=pretrained, progress=progress, track=track,
                           run_tags={ABLATION_TAG: "H1"}, grid_losses=reference.grid_losses,
                           grid_offsets=reference.grid_offsets)
