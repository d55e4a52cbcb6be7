"""One evaluation item through every model that applies to it, on one core or several.

:func:`item_rows` is the unit of evaluation: a test item (:class:`ss3d.eval.items.EvalItem`)
through the baselines and every applicable model, giving the item's rows (and, for the items
that make the figures, the models' meshes). :func:`evaluate_positions` runs a list of items in
this process or, on a CPU with ``evaluate.workers > 1``, shares them with spawned worker
processes: the items whose meshes make the figures stay in this process, the others go to
whichever process is free. Rows are keyed by item position, so the order of completion
changes nothing; each process runs ``cores // workers`` threads (tested equal to the serial
run).

Learned frames: a self-trained model predicts in its own canonical frame, related to the true
one by the global rotation ``G`` found from the hidden cameras (``x_learned = G x_true``). Its
predictions are mapped back with ``G`` before any 3D metric (:func:`aligned_field`).
"""

from __future__ import annotations

import multiprocessing as mp
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ss3d.cameras import Intrinsics
from ss3d.config import ExperimentConfig
from ss3d.engine import autocast
from ss3d.eval.baselines import Baselines, baseline_rows
from ss3d.eval.items import EvalItem
from ss3d.eval.mesh import ExtractedMesh, extract_mesh
from ss3d.eval.metrics import chamfer_fscore, sample_mesh_surface, volumetric_iou
from ss3d.eval.summary import ALIGNED, FRAME_CHECK_METRICS, PRIOR_FRAME
from ss3d.eval.texture import input_view_camera, input_view_fit, paint_from_input
from ss3d.hypotheses import vertical_turn
from ss3d.image_metrics import colour_spread, mask_iou, psnr
from ss3d.model import ReconstructionNet, load_network
from ss3d.volume import render_network

__all__ = ["EvalModel", "ItemJob", "aligned_field", "evaluate_item", "evaluate_positions",
           "frame_check_metrics", "image_coloured", "item_rows"]

Row = tuple[int, int, dict[str, Any]]  # (item position, order within the item, row)


@dataclass
class EvalModel:
    """One trained model to evaluate. ``alignments``: per collection category, ``G`` (3, 3).
    ``specialist_renders``: for a student distilled with ``distill.renders_to_specialist``, the
    synthetic categories whose renders it learned from their self-trained teacher: there it is
    compared with, and aligned like, that teacher."""

    label: str
    stage: str
    checkpoint: Path
    run_id: str | None = None
    category: str | None = None
    alignments: dict[str, torch.Tensor] = field(default_factory=dict)
    specialist_renders: frozenset[str] = frozenset()
    peak_fraction: float | None = None  # its surface level; None: evaluate.peak_fraction

    def surface_level(self, cfg: ExperimentConfig) -> float:
        """The peak fraction its meshes are cut at: its own, else ``evaluate.peak_fraction``."""
        return cfg.evaluate.peak_fraction if self.peak_fraction is None else self.peak_fraction

    def applies_to(self, item: EvalItem) -> bool:
        """Self-trained models are evaluated on their own category only."""
        return self.stage != "selftrain" or item.category == self.category

    def alignment_for(self, item: EvalItem) -> torch.Tensor | None:
        if (item.set == "collection" or self.stage == "selftrain"
                or item.category in self.specialist_renders):
            return self.alignments.get(item.category)
        return None  # the student on synthetic renders: the synthetic teacher's frame


@dataclass
class ItemJob:
    """Everything evaluating an item needs besides the networks (picklable: it is sent to
    worker processes, which load the networks from ``models``' checkpoints)."""

    cfg: ExperimentConfig
    models: list[EvalModel]
    baselines: Baselines
    intrinsics: Intrinsics  # of the synthetic renders


def aligned_field(net: ReconstructionNet, latent: torch.Tensor, g: torch.Tensor | None
                  ) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The model's field in the true frame: ``f_true(x) = f_learned(G x)``."""
    if g is None:
        return lambda p: net.query(p, latent)
    gt = g.to(latent.device).T
    return lambda p: net.query(p @ gt, latent)


def frame_check_metrics(pred: torch.Tensor, item: EvalItem, g: torch.Tensor, aligned: bool,
                        thresholds: tuple[float, ...]) -> dict[str, float]:
    """The frame check of a model with a frame ``G`` from its poses (``x_learned = G x_true``):
    its surface samples ``pred (S, 3)``, scored in one frame, read in the other, and
    ``frame_turn_deg``, G's turn about the up axis.

    ``aligned``: ``pred`` is in the true frame (the model was scored turned by ``G``); it is
    turned back into the learned frame, i.e. the pre-trained prior's, which self-training
    starts from (``<metric>_prior_frame``). Otherwise ``pred`` is in the learned frame and is
    turned into the true one by ``G^T`` (``<metric>_aligned``).

    ``G`` comes from the chosen poses against the hidden cameras; where those are near chance
    it is close to arbitrary, and a right shape turned by 90° scores like a wrong one.
    """
    g = g.to(pred)
    other, suffix = (pred @ g.T, PRIOR_FRAME) if aligned else (pred @ g, ALIGNED)
    scores = chamfer_fscore(other, item.surface, thresholds)
    out = {f"{k}{suffix}": v for k, v in scores.items() if k in FRAME_CHECK_METRICS}
    out["frame_turn_deg"] = float(torch.rad2deg(vertical_turn(g)))
    return out


@torch.no_grad()
def evaluate_item(net: ReconstructionNet, item: EvalItem, g: torch.Tensor | None,
                  cfg: ExperimentConfig, intrinsics: Intrinsics | None,
                  device: torch.device, frame: torch.Tensor | None = None,
                  peak_fraction: float | None = None) -> tuple[dict[str, float], ExtractedMesh]:
    """3D metrics of one model on one item (and novel-view metrics with ``intrinsics``), scored
    turned by ``g`` (None: as the model stands).

    ``frame``: the model's frame from its poses, ``G``, scored in (``g`` is ``G``) or not
    (``g`` is None); the row then also carries the other reading (:func:`frame_check_metrics`).
    ``peak_fraction``: the model's surface level (None: ``evaluate.peak_fraction``).
    """
    e = cfg.evaluate
    latent = net.encode(item.image[None].to(device))
    field_fn = aligned_field(net, latent, g)
    mesh = extract_mesh(field_fn, e.mesh_resolution, e.density_threshold,
                        peak_fraction=e.peak_fraction if peak_fraction is None
                        else peak_fraction, coarse_factor=e.coarse_factor, device=device)
    pred = sample_mesh_surface(mesh.verts, mesh.faces, e.surface_points, seed=0)
    metrics = chamfer_fscore(pred, item.surface, tuple(e.fscore_thresholds))
    _, density = field_fn(item.volume_points[None].to(device))
    metrics["vol_iou"] = volumetric_iou(density[0, :, 0].cpu() > mesh.level,
                                        item.volume_inside)
    metrics["empty_mesh"] = float(mesh.empty)
    if frame is not None:
        metrics.update(frame_check_metrics(pred, item, frame, g is not None,
                                           tuple(e.fscore_thresholds)))
    if item.novel is not None and intrinsics is not None:
        n = item.novel["azimuth"].shape[0]
        # one camera per rendered image: the same latent for each of the n novel views
        rendered = render_network(aligned_field(net, latent.expand(n, -1), g),
                                  item.novel["azimuth"].to(device),
                                  item.novel["elevation"].to(device),
                                  item.novel["distance"].to(device), intrinsics, cfg.model)
        metrics["mask_iou"] = float(mask_iou(rendered["mask"].cpu(), item.novel["masks"]).mean())
        metrics["psnr"] = float(psnr(rendered["rgb"].cpu().clamp(0, 1), item.novel["rgb"]).mean())
        spread = colour_spread(rendered["rgb"].cpu().clamp(0, 1), rendered["mask"].cpu(),
                               item.novel["rgb"], item.novel["masks"])
        if not spread.isnan().all():  # no object pixel in common: no colour to compare
            metrics["colour_spread"] = float(spread.nanmean())
    if item.mask is not None and cfg.evaluate.input_view:
        metrics.update(input_view_metrics(net, latent, g, item, cfg, intrinsics, device))
    return metrics, mesh


@torch.no_grad()
def input_view_metrics(net: ReconstructionNet, latent: torch.Tensor, g: torch.Tensor | None,
                       item: EvalItem, cfg: ExperimentConfig, intrinsics: Intrinsics | None,
                       device: torch.device) -> dict[str, float]:
    """Does the reconstruction explain the image it was given? ``input_mask_iou`` and
    ``input_psnr`` of the model's field (in the frame it is scored in) rendered from the input's
    camera: a render's known camera (``item.input_camera`` with the renders' ``intrinsics``), or
    on a photo the camera the field explains it best from (:func:`input_view_camera`, with
    ``selftrain.offsets`` its box offset too)."""
    image, mask = item.image.to(device), item.mask.to(device)

    def field_for(n: int):
        return aligned_field(net, latent.expand(n, -1), g)

    if item.input_camera is not None and intrinsics is not None:
        camera, intr = item.input_camera, intrinsics
    else:
        camera = input_view_camera(field_for, image, mask, cfg)
        intr = Intrinsics.from_fov(cfg.render.fov_degrees, image.shape[-1])
    return input_view_fit(field_for(1), image, mask, camera, intr, cfg)


@torch.no_grad()
def image_coloured(net: ReconstructionNet, item: EvalItem, g: torch.Tensor | None,
                   mesh: ExtractedMesh, cfg: ExperimentConfig,
                   device: torch.device) -> ExtractedMesh:
    """``mesh`` with the input image painted onto the side that the camera estimated from the
    model's own field (in the frame the mesh is in) sees (:mod:`ss3d.eval.texture`)."""
    if item.mask is None or mesh.empty:
        return mesh
    image = item.image.to(device)
    latent = net.encode(image[None])
    return paint_from_input(mesh, lambda n: aligned_field(net, latent.expand(n, -1), g), image,
                            item.mask.to(device), cfg)


def item_rows(job: ItemJob, nets: dict[str, ReconstructionNet], item: EvalItem,
              device: torch.device, keep_meshes: bool = False
              ) -> tuple[list[dict[str, Any]], dict[str, ExtractedMesh]]:
    """The rows of one item (baselines first, then each applicable model in ``job.models``'
    order) and, with ``keep_meshes``, each model's mesh (coloured for the figures)."""
    cfg = job.cfg
    intrinsics = job.intrinsics if item.set == "synthetic" else None
    base = {"set": item.set, "category": item.category, "item": item.key,
            "zero_shot": item.zero_shot}
    rows = [{**base, **row} for row in baseline_rows(item, job.baselines, cfg, intrinsics)]
    meshes: dict[str, ExtractedMesh] = {}
    for model in job.models:
        if not model.applies_to(item):
            continue
        frame = model.alignment_for(item)
        g = frame if cfg.evaluate.learned_frame == "poses" else None
        # The network in mixed precision where it pays (query returns fp32); its effect on the
        # metrics is far inside the intervals (docs/results.md, Evaluation).
        with autocast(device, cfg.optim.amp):
            metrics, mesh = evaluate_item(nets[model.label], item, g, cfg, intrinsics, device,
                                          frame, model.peak_fraction)
        rows.append({**base, "model": model.label, **metrics})
        if keep_meshes:
            if cfg.evaluate.mesh_colours == "image":
                mesh = image_coloured(nets[model.label], item, g, mesh, cfg, device)
            meshes[model.label] = mesh
    return rows, meshes


def load_networks(models: Iterable[EvalModel], device: torch.device
                  ) -> dict[str, ReconstructionNet]:
    return {m.label: load_network(m.checkpoint, device)[0] for m in models}


# -- worker processes ----------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}  # the job and networks of this worker process


def _start_worker(job: ItemJob, threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER.update(job=job, nets=load_networks(job.models, torch.device("cpu")))


def _worker_item(position: int, item: EvalItem) -> list[Row]:
    rows, _ = item_rows(_WORKER["job"], _WORKER["nets"], item, torch.device("cpu"))
    return [(position, k, row) for k, row in enumerate(rows)]


def evaluate_positions(job: ItemJob, nets: dict[str, ReconstructionNet], items: list[EvalItem],
                       positions: list[int], figure_positions: set[int], device: torch.device,
                       workers: int = 1, on_item: Callable[[], None] = lambda: None
                       ) -> tuple[list[Row], dict[int, dict[str, ExtractedMesh]]]:
    """Rows of ``items[p]`` for every ``p`` in ``positions``, and the meshes of the figure
    items; ``on_item`` is called once per finished item (a progress bar).

    With ``workers > 1`` on the CPU, ``workers - 1`` spawned processes take items beside this
    one (which keeps the figure items). Each process then runs ``cores // workers`` threads;
    this process's thread count is restored afterwards.
    """
    rows: list[Row] = []
    meshes: dict[int, dict[str, ExtractedMesh]] = {}

    def here(position: int) -> None:
        keep = position in figure_positions
        item_out, item_meshes = item_rows(job, nets, items[position], device, keep)
        rows.extend((position, k, row) for k, row in enumerate(item_out))
        if keep:
            meshes[position] = item_meshes
        on_item()

    first = [p for p in positions if p in figure_positions]
    queue = deque(p for p in positions if p not in figure_positions)
    if workers <= 1 or device.type != "cpu" or not queue:
        for position in first + list(queue):
            here(position)
        return rows, meshes
    previous = torch.get_num_threads()
    threads = max(1, previous // workers)
    torch.set_num_threads(threads)
    spawned = min(workers - 1, len(queue))
    try:
        with ProcessPoolExecutor(spawned, mp_context=mp.get_context("spawn"),
                                 initializer=_start_worker, initargs=(job, threads)) as pool:
            running: set[Future] = set()
            only_here = deque(first)  # the figure items: their meshes stay in this process

            def collect(done: Iterable[Future]) -> None:
                for future in done:
                    rows.extend(future.result())  # re-raises a worker's error
                    running.discard(future)
                    on_item()

            while only_here or queue or running:
                collect([f for f in running if f.done()])
                # two items queued per worker: none waits for this process
                while queue and len(running) < 2 * spawned:
                    position = queue.popleft()
                    running.add(pool.submit(_worker_item, position, items[position]))
                if only_here or queue:
                    here((only_here or queue).popleft())
                else:
                    wait(running, return_when=FIRST_COMPLETED)
    finally:
        torch.set_num_threads(previous)
    return rows, meshes
