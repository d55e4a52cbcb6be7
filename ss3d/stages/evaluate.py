"""Evaluation of every stage of an experiment (README: Evaluation).

Models: the pre-trained model, each category's self-trained model and the distilled student,
found in MLflow (latest finished runs) or in ``<output_dir>/<name>/``; stages that have not
run are skipped and listed. Test items:

* ``synthetic``: held-out (test split) models of every pre-training category and of the
  held-out (zero-shot) categories, input = view 0, ground truth = surface and inside/outside
  samples and novel views from the renders;
* ``collection``: test images of the rendered collections, ground truth = the hidden model's
  mesh (3D) — and the pose accuracy of the self-training runs.

Learned frames: a self-trained model predicts in its own canonical frame, related to the true
one by the global rotation ``G`` found from the hidden cameras (``x_learned = G x_true``, saved by
self-training). Its predictions are mapped back with ``G`` before any 3D metric; the student is
evaluated in the frame of the teacher that taught that kind of image (collection images: the
category's self-trained teacher; synthetic renders: the synthetic model, identity).

Baselines next to every number: a sphere of the mean object size and the category's medoid
shape (the training model with the smallest mean Chamfer distance to the others; its
inside/outside at the test points comes from its nearest own volume sample).
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import matplotlib.pyplot as plt
import numpy as np
import torch

from ss3d import tracking
from ss3d.cameras import FIGURE_POSES, Intrinsics
from ss3d.config import SYNSETS, ExperimentConfig
from ss3d.data.datasets import ImageCollection, read_hidden_cameras
from ss3d.data.render import MeshRenderer
from ss3d.data.shapenet import load_model
from ss3d.engine import autocast, load_checkpoint
from ss3d.eval.baselines import (
    PRIMARY,
    EvalItem,
    baseline_rows,
    build_baselines,
)
from ss3d.eval.mesh import ExtractedMesh, extract_mesh
from ss3d.eval.metrics import (
    chamfer_fscore,
    sample_mesh_surface,
    volumetric_iou,
)
from ss3d.eval.stats import Interval, bootstrap_ci, paired_bootstrap_diff, wilson_interval
from ss3d.eval.texture import paint_from_input
from ss3d.eval.views import figure_renderer, mesh_views, to_trimesh, write_turntable
from ss3d.geometry import merge_meshes, occupancy, sample_surface
from ss3d.metrics import colour_spread, mask_iou, psnr
from ss3d.model import ReconstructionNet, load_network
from ss3d.stages.data import data_paths, find_renders
from ss3d.stages.shell import StageRun, find_pretrained, latest_checkpoint, stage_dir
from ss3d.viz import finish_grid
from ss3d.volume import render_network

__all__ = ["EvalItem", "EvalModel", "EvalResult", "Table", "evaluate_stage", "find_models",
           "fmt", "tables"]

log = logging.getLogger(__name__)
STAGE = "evaluate"
METRICS = ("fscore@0.02", "fscore@0.05", "fscore@0.1", "chamfer_l1", "chamfer_l2", "vol_iou",
           "mask_iou", "psnr", "colour_spread")
#: Paired differences (model minus the pre-trained model, same items) are reported for these.
DIFF_METRICS = ("fscore@0.05", "fscore@0.1", "chamfer_l1")


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


@dataclass
class EvalResult:
    run_id: str | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)
    poses: list[dict[str, Any]] = field(default_factory=list)
    ratios: list[dict[str, Any]] = field(default_factory=list)
    differences: list[dict[str, Any]] = field(default_factory=list)
    baseline_differences: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)
    models: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    turntables: dict[str, Path] = field(default_factory=dict)
    tables_markdown: str = ""
    wall_seconds: float = 0.0


# ----------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------
def _alignment_of(checkpoint: Path) -> torch.Tensor | None:
    g = load_checkpoint(checkpoint)["extra"].get("alignment")
    return None if g is None else torch.tensor(g, dtype=torch.float32)


def find_models(cfg: ExperimentConfig, track: bool = True
                ) -> tuple[list[EvalModel], list[str]]:
    """The experiment's trained models (pre-trained first) and notes on stages not found."""
    models: list[EvalModel] = []
    skipped: list[str] = []
    path, run_id = find_pretrained(cfg, None, track)  # no pre-trained model: nothing to do
    models.append(EvalModel("pretrained", "pretrain", path, run_id))

    teachers: dict[str, torch.Tensor] = {}  # alignments of the self-trained teachers that have one
    selftrained: list[str] = []
    for category in cfg.data.collections:
        found = latest_checkpoint(cfg, "selftrain", category, track)
        if found is None:
            skipped.append(f"selftrained {category}: no self-training run (notebook 02)")
            continue
        selftrained.append(category)
        g = _alignment_of(found[0])
        if g is not None:
            teachers[category] = g
        models.append(EvalModel(f"selftrained-{category}", "selftrain", found[0], found[1],
                                category, {category: g} if g is not None else {}))
    found = latest_checkpoint(cfg, "distill", track=track)
    if found is None:
        skipped.append("distilled: no distillation run (notebook 03)")
    else:
        distill_cfg = load_checkpoint(found[0])["config"].get("distill", {})
        specialists = frozenset(selftrained if distill_cfg.get("renders_to_specialist", False)
                                else ())
        models.append(EvalModel("distilled", "distill", found[0], found[1],
                                alignments=dict(teachers), specialist_renders=specialists))
    return models, skipped


# ----------------------------------------------------------------------------------------------
# Test items
# ----------------------------------------------------------------------------------------------
def _mesh_path(root: Path, category: str, model_id: str) -> Path:
    return root / SYNSETS.get(category, category) / model_id / "models" / "model_normalized.obj"


def synthetic_items(cfg: ExperimentConfig, renders: Path) -> tuple[list[EvalItem], Intrinsics]:
    """Test-split models of every pre-training and held-out category."""
    e = cfg.evaluate
    items: list[EvalItem] = []
    shapenet = data_paths(cfg).shapenet
    with h5py.File(renders, "r") as f:
        n = int(f.attrs["complete_models"])
        cats = f["category"].asstr()[:n]
        splits = f["split"].asstr()[:n]
        ids = f["model_id"].asstr()[:n]
        size = int(f.attrs["image_size"])
        intrinsics = Intrinsics(focal=float(f.attrs["focal"]), width=size, height=size,
                                cx=float(f.attrs["cx"]), cy=float(f.attrs["cy"]))
        views = min(e.novel_views, int(f.attrs["views_per_model"]) - 1)
        for category in [*cfg.data.categories, *cfg.data.heldout_categories]:
            rows = np.flatnonzero((cats == category) & (splits == "test"))[:e.models_per_category]
            if len(rows) == 0:
                log.warning("%s: no test models of %s", renders, category)
            for r in rows:
                rgb = torch.from_numpy(f["rgb"][r]).float() / 255.0  # (V, H, W, 3)
                mask = torch.from_numpy(f["mask"][r]).float()
                masked = rgb * mask[..., None]
                novel = {k: torch.from_numpy(f[k][r][1:views + 1]).float()
                         for k in ("azimuth", "elevation", "distance")}
                novel.update(masks=mask[1:views + 1], rgb=masked[1:views + 1])
                items.append(EvalItem(
                    "synthetic", category, str(ids[r]), masked[0].permute(2, 0, 1).contiguous(),
                    torch.from_numpy(f["surface_points"][r]).float(),
                    torch.from_numpy(f["volume_points"][r]).float(),
                    torch.from_numpy(f["volume_occupancy"][r]).bool(),
                    _mesh_path(shapenet, category, str(ids[r])),
                    zero_shot=category in cfg.data.heldout_categories, novel=novel,
                    mask=mask[0]))
    return items, intrinsics


def collection_items(cfg: ExperimentConfig) -> tuple[list[EvalItem], list[str]]:
    """Test images of rendered collections whose hidden model meshes are on disk."""
    e = cfg.evaluate
    paths = data_paths(cfg)
    items: list[EvalItem] = []
    notes: list[str] = []
    for category in cfg.data.collections:
        path = paths.collection(category)
        truth = read_hidden_cameras(path) if path.is_file() else None
        if not truth or e.collection_images == 0:
            notes.append(f"collection {category}: no 3D ground truth (real photos or missing)")
            continue
        ds = ImageCollection(path, split="test")
        for i in range(min(e.collection_images, len(ds))):
            item = ds[i]
            model_id = truth[item["image_id"]]["model_id"]
            mesh_path = _mesh_path(paths.root / "collection_models", category, model_id)
            if not mesh_path.is_file():
                notes.append(f"collection {category}: mesh {mesh_path} missing")
                break
            mesh = merge_meshes(load_model(mesh_path))
            rng = np.random.default_rng(i)
            uniform = rng.uniform(-0.55, 0.55, (cfg.render.volume_samples // 2, 3))
            near = (sample_surface(mesh, cfg.render.volume_samples // 2, seed=i)
                    + rng.normal(0, 0.02, (cfg.render.volume_samples // 2, 3)))
            points = np.concatenate([uniform, near]).astype(np.float32)
            items.append(EvalItem(
                "collection", category, item["image_id"], item["image"],
                torch.from_numpy(sample_surface(mesh, cfg.render.surface_samples, seed=i)),
                torch.from_numpy(points), torch.from_numpy(occupancy(points, mesh)),
                mesh_path, mask=item["mask"][0]))
    return items, notes


# ----------------------------------------------------------------------------------------------
# Evaluating one model on one item
# ----------------------------------------------------------------------------------------------
def aligned_field(net: ReconstructionNet, latent: torch.Tensor, g: torch.Tensor | None
                  ) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The model's field in the true frame: ``f_true(x) = f_learned(G x)``."""
    if g is None:
        return lambda p: net.query(p, latent)
    gt = g.to(latent.device).T
    return lambda p: net.query(p @ gt, latent)


@torch.no_grad()
def evaluate_item(net: ReconstructionNet, item: EvalItem, g: torch.Tensor | None,
                  cfg: ExperimentConfig, intrinsics: Intrinsics | None,
                  device: torch.device) -> tuple[dict[str, float], ExtractedMesh]:
    e = cfg.evaluate
    latent = net.encode(item.image[None].to(device))
    field_fn = aligned_field(net, latent, g)
    mesh = extract_mesh(field_fn, e.mesh_resolution, e.density_threshold,
                        peak_fraction=e.peak_fraction, coarse_factor=e.coarse_factor,
                        device=device)
    pred = sample_mesh_surface(mesh.verts, mesh.faces, e.surface_points, seed=0)
    metrics = chamfer_fscore(pred, item.surface, tuple(e.fscore_thresholds))
    _, density = field_fn(item.volume_points[None].to(device))
    metrics["vol_iou"] = volumetric_iou(density[0, :, 0].cpu() > mesh.level,
                                        item.volume_inside)
    metrics["empty_mesh"] = float(mesh.empty)
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
    return metrics, mesh


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


def _alignment_for(model: EvalModel, item: EvalItem) -> torch.Tensor | None:
    if (item.set == "collection" or model.stage == "selftrain"
            or item.category in model.specialist_renders):
        return model.alignments.get(item.category)
    return None  # the student on synthetic renders: the synthetic teacher's frame


def _applies(model: EvalModel, item: EvalItem) -> bool:
    """Self-trained models are evaluated on their own category only."""
    return model.stage != "selftrain" or item.category == model.category


# ----------------------------------------------------------------------------------------------
# Tables and figures
# ----------------------------------------------------------------------------------------------
def summarise(rows: list[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """Mean and 95% bootstrap interval of every metric per (set, category, model).

    Each entry holds ``n`` (items) and, per metric ``m``, ``m`` (mean), ``m_lo`` and ``m_hi``
    (percentile bootstrap over items; NaN bounds for fewer than two items).
    """
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["set"], r["category"], r["model"])].append(r)
    out = []
    for (set_, category, model), rs in groups.items():
        entry: dict[str, Any] = {"set": set_, "category": category, "model": model,
                                 "n": len(rs), "zero_shot": rs[0].get("zero_shot", False)}
        for m in METRICS:
            values = [r[m] for r in rs if m in r]
            if values:
                ci = bootstrap_ci(np.asarray(values, dtype=float), seed=seed)
                entry.update({m: ci.estimate, f"{m}_lo": ci.low, f"{m}_hi": ci.high})
        out.append(entry)
    return out


def interval_of(entry: dict[str, Any], metric: str) -> Interval:
    """The interval of ``metric`` stored in a summary or difference entry."""
    est = entry.get(metric)
    if est is None:
        return Interval.empty()
    return Interval(float(est), float(entry.get(f"{metric}_lo", math.nan)),
                    float(entry.get(f"{metric}_hi", math.nan)), int(entry.get("n", 0)))


def paired_differences(rows: list[dict[str, Any]], reference: str = "pretrained",
                       metrics: tuple[str, ...] = DIFF_METRICS, seed: int = 0
                       ) -> list[dict[str, Any]]:
    """Each trained model minus ``reference`` on the same items, with paired bootstrap intervals.

    Returns one entry per (set, category, model): ``n`` (shared items) and, per metric ``m``,
    ``m`` (mean difference), ``m_lo``, ``m_hi``. Pairing removes the per-item difficulty that
    both models share, so these intervals are much narrower than the two models' own.
    """
    by_item: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        by_item[(r["set"], r["category"], r["model"])][r["item"]] = r
    out = []
    for (set_, category, model), items in by_item.items():
        if model == reference or model.startswith("baseline"):
            continue
        ref = by_item.get((set_, category, reference))
        if not ref:
            continue
        shared = [k for k in items if k in ref]
        entry: dict[str, Any] = {"set": set_, "category": category, "model": model,
                                 "reference": reference, "n": len(shared)}
        for m in metrics:
            pairs = [(items[k][m], ref[k][m]) for k in shared if m in items[k] and m in ref[k]]
            if pairs:
                a, b = np.asarray(pairs, dtype=float).T
                ci = paired_bootstrap_diff(a, b, seed=seed)
                entry.update({m: ci.estimate, f"{m}_lo": ci.low, f"{m}_hi": ci.high})
        out.append(entry)
    return out


def baseline_differences(rows: list[dict[str, Any]], metric: str = PRIMARY, seed: int = 0
                         ) -> list[dict[str, Any]]:
    """Each learned model minus each baseline on the same items (:func:`paired_differences`
    with the baseline as reference), on ``metric`` only.

    A baseline is scored on exactly the items the models are, so "model A beats the medoid" is
    a paired question; two unpaired intervals that must not overlap ask for far more than 95%
    confidence and miss differences that every item agrees on.
    """
    names = dict.fromkeys(r["model"] for r in rows if r["model"].startswith("baseline"))
    return [d for name in names
            for d in paired_differences(rows, reference=name, metrics=(metric,), seed=seed)]


def verdicts(summary: list[dict[str, Any]], differences: list[dict[str, Any]],
             metric: str = PRIMARY, against_baselines: list[dict[str, Any]] | None = None
             ) -> list[str]:
    """Plain sentences: per (set, category), which baselines each model beats on ``metric``,
    which beat it, and its paired difference to the pre-trained model.

    With ``against_baselines`` (:func:`baseline_differences`) a model beats a baseline where
    the 95% paired interval of model minus baseline is above 0 (below: under 0); a baseline
    without a paired entry, and every baseline without ``against_baselines``, is compared by
    the two unpaired intervals being clear of each other.
    """
    diff = {(d["set"], d["category"], d["model"]): d for d in differences}
    paired = {(d["set"], d["category"], d["model"], d["reference"]): d
              for d in against_baselines or [] if metric in d}
    lines = []
    for set_, category in dict.fromkeys((s["set"], s["category"]) for s in summary):
        group = [s for s in summary if (s["set"], s["category"]) == (set_, category)]
        bases = [s for s in group if s["model"].startswith("baseline")]
        for s in group:
            if s["model"].startswith("baseline") or metric not in s:
                continue
            mine = interval_of(s, metric)
            beats, below, tied = [], [], []
            for b in bases:
                name = b["model"].removeprefix("baseline: ")
                d = paired.get((set_, category, s["model"], b["model"]))
                if d is not None:
                    di = interval_of(d, metric)
                    label = f"{name} (paired Δ {di.fmt(3)})"
                    is_above, is_below = di.low > 0, di.high < 0
                else:
                    label = name
                    theirs = interval_of(b, metric)
                    is_above, is_below = mine.above(theirs), mine.below(theirs)
                (beats if is_above else below if is_below else tied).append(label)
            text = (f"{set_} {category}: {s['model']} {metric} {mine.fmt(2)} (n={s['n']}) "
                    f"beats {', '.join(beats) or 'no baseline'}")
            if below:
                text += f"; below {', '.join(below)}"
            if tied:
                text += f"; not separable from {', '.join(tied)}"
            d = diff.get((set_, category, s["model"]))
            if d is not None and metric in d:
                di = interval_of(d, metric)
                sign = ("above" if di.low > 0 else "below" if di.high < 0 else
                        "not separable from")
                text += f"; {sign} the pre-trained model (paired Δ {di.fmt(3)})"
            lines.append(text + ".")
    return lines


def half_widths(summary: list[dict[str, Any]], poses: list[dict[str, Any]],
                metric: str = PRIMARY) -> dict[str, float]:
    """The largest 95% half-width of ``metric`` per set over the learned models, and of the
    pose accuracy@30 (Wilson) over the self-training runs."""
    out: dict[str, float] = {}
    for s in summary:
        if s["model"].startswith("baseline") or metric not in s:
            continue
        hw = interval_of(s, metric).half_width
        if not math.isnan(hw):
            key = f"{s['set']} {metric}"
            out[key] = max(out.get(key, 0.0), hw)
    for p in poses:
        ci = pose_interval(p, "pose_acc30")
        if not math.isnan(ci.half_width):
            out["pose acc@30"] = max(out.get("pose acc@30", 0.0), ci.half_width)
    return out


def pose_interval(pose: dict[str, Any], key: str) -> Interval:
    """Wilson interval of a pose accuracy stored with its image count ``pose_n``."""
    n = pose.get("pose_n")
    if pose.get(key) is None or not n:
        return Interval.empty(estimate=float(pose.get(key, math.nan) or math.nan))
    return wilson_interval(round(float(pose[key]) * int(n)), int(n))


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: ``digits`` decimals, '–' for missing or NaN."""
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}f}"


def fmt_ci(entry: dict[str, Any], metric: str, digits: int = 3) -> str:
    """``mean [low, high]`` of a summary cell, or just the mean where no interval exists."""
    ci = interval_of(entry, metric)
    if math.isnan(ci.estimate):
        return "–"
    if math.isnan(ci.low):
        return fmt(ci.estimate, digits)
    return ci.fmt(digits)


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    baseline_rows: list[bool]


def tables(summary: list[dict[str, Any]], poses: list[dict[str, Any]],
           ratios: list[dict[str, Any]], differences: list[dict[str, Any]] | None = None
           ) -> list[Table]:
    """The evaluation tables as formatted cells (rendered as Markdown here, HTML in reports).

    Every cell is the mean over items with its 95% bootstrap interval; pose accuracies carry
    Wilson intervals.
    """
    out = []
    for set_, title in (("synthetic", "Held-out synthetic models (input: one render)"),
                        ("collection", "Collection test images (3D ground truth from the "
                                       "hidden models)")):
        entries = [s for s in summary if s["set"] == set_]
        if entries:
            out.append(Table(
                title + " — mean [95% bootstrap interval]",
                ["category", "model", "n", "F@0.02 ↑", "F@0.05 ↑", "F@0.1 ↑", "Chamfer-L1 ↓",
                 "vol IoU ↑", "mask IoU ↑", "PSNR ↑", "colour spread →1"],
                [[s["category"] + (" (zero-shot)" if s["zero_shot"] else ""), s["model"],
                  str(s["n"]), fmt_ci(s, "fscore@0.02", 2), fmt_ci(s, "fscore@0.05", 2),
                  fmt_ci(s, "fscore@0.1", 2), fmt_ci(s, "chamfer_l1", 3),
                  fmt_ci(s, "vol_iou", 2), fmt_ci(s, "mask_iou", 2), fmt_ci(s, "psnr", 1),
                  fmt_ci(s, "colour_spread", 2)]
                 for s in entries],
                [s["model"].startswith("baseline") for s in entries]))
    if differences:
        out.append(Table(
            "Paired differences: model minus the pre-trained model on the same items "
            "— mean [95% paired bootstrap interval]",
            ["set", "category", "model", "n", "ΔF@0.05", "ΔF@0.1", "ΔChamfer-L1"],
            [[d["set"], d["category"], d["model"], str(d["n"]), fmt_ci(d, "fscore@0.05", 3),
              fmt_ci(d, "fscore@0.1", 3), fmt_ci(d, "chamfer_l1", 4)] for d in differences],
            [False] * len(differences)))
    if poses:
        out.append(Table(
            "Poses of the self-trained collections (after global alignment) — Wilson 95% "
            "intervals",
            ["category", "run", "H", "images", "acc@15 ↑", "acc@30 ↑", "median ° ↓",
             "best-of-H acc@30", "acc@30 before search", "pose prior's acc@30", "mask IoU"],
            [[str(p["category"]), p["run"], str(p["hypotheses"]),
              str(int(p["pose_n"])) if p.get("pose_n") else "–",
              pose_interval(p, "pose_acc15").fmt(2), pose_interval(p, "pose_acc30").fmt(2),
              fmt(p.get("pose_median_deg"), 1),
              pose_interval(p, "pose_best_of_h_acc30").fmt(2),
              fmt(p.get("initial_pose_acc30"), 2), fmt(p.get("viewpoint_net_acc30"), 2),
              fmt(p.get("mask_iou"))] for p in poses],
            [False] * len(poses)))
    if ratios:
        out.append(Table(
            "Distilled student vs its teacher (F@0.1, aim ≥ 0.95)",
            ["set", "category", "teacher", "student F@0.1", "teacher F@0.1", "ratio"],
            [[r["set"], r["category"], r["teacher"], fmt(r["student"]),
              fmt(r["teacher_fscore"]), fmt(r["ratio"], 2)] for r in ratios],
            [False] * len(ratios)))
    return out


def markdown_tables(summary: list[dict[str, Any]], poses: list[dict[str, Any]],
                    ratios: list[dict[str, Any]], differences: list[dict[str, Any]] | None = None,
                    verdict_lines: list[str] | None = None) -> str:
    lines = []
    if verdict_lines:
        lines += ["### What beats what (F@0.05, 95% paired intervals of model minus baseline "
                  "on the same items)", ""]
        lines += [f"* {v}" for v in verdict_lines]
        lines.append("")
    widths = half_widths(summary, poses)
    if widths:
        lines += ["Largest 95% interval half-widths: " + ", ".join(
            f"{k} ±{v:.3f}" for k, v in widths.items()) + ".", ""]
    for t in tables(summary, poses, ratios, differences):
        lines += [f"### {t.title}", "", "| " + " | ".join(t.header) + " |",
                  "|" + "---|" * len(t.header)]
        lines += ["| " + " | ".join(row) + " |" for row in t.rows]
        lines.append("")
    return "\n".join(lines)


def metric_bars(summary: list[dict[str, Any]], metric: str = PRIMARY) -> plt.Figure:
    """Bars per (set, category) and model, with 95% bootstrap intervals as error bars."""
    groups = sorted({(s["set"], s["category"]) for s in summary})
    models = list(dict.fromkeys(s["model"] for s in summary))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(groups)) + 1.5, 3.2))
    width = 0.8 / max(len(models), 1)
    lookup = {(s["set"], s["category"], s["model"]): s for s in summary}
    for k, model in enumerate(models):
        cells = [(i, interval_of(lookup[(st, c, model)], metric))
                 for i, (st, c) in enumerate(groups) if (st, c, model) in lookup
                 and metric in lookup[(st, c, model)]]
        if not cells:
            continue
        xs = [i + k * width for i, _ in cells]
        est = np.array([ci.estimate for _, ci in cells])
        err = np.nan_to_num(np.array([[ci.estimate - ci.low, ci.high - ci.estimate]
                                      for _, ci in cells]).T, nan=0.0)
        ax.bar(xs, est, width, yerr=err, capsize=1.5, error_kw={"elinewidth": 0.6},
               label=model, hatch="//" if model.startswith("baseline") else None,
               alpha=0.6 if model.startswith("baseline") else 1.0)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(groups))],
                  [f"{c}\n({st})" for st, c in groups], fontsize=7)
    ax.set_ylabel(metric)
    ax.set_ylim(0, 1)
    # legend to the right of the axes: inside, it hides the tallest bars
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"{metric} per category and model (95% bootstrap intervals)", fontsize=9)
    fig.tight_layout()
    plt.close(fig)  # closed: notebooks show it only where the caller displays it
    return fig


def reconstruction_figure(item: EvalItem, meshes: dict[str, ExtractedMesh],
                          renderer: MeshRenderer) -> plt.Figure:
    """Rows: models; columns: input | GT | prediction, each from the figure views
    (:data:`ss3d.cameras.FIGURE_POSES`)."""
    size, views = renderer.intrinsics.width, len(FIGURE_POSES)
    gt_views = (mesh_views(load_model(item.mesh_path), renderer=renderer)
                if item.mesh_path is not None and item.mesh_path.is_file() else None)
    cols = 1 + 2 * views
    fig, axes = plt.subplots(len(meshes), cols, figsize=(cols * 1.1, len(meshes) * 1.15),
                             squeeze=False)
    for r, (label, mesh) in enumerate(meshes.items()):
        panels = [item.image.permute(1, 2, 0).numpy()]
        panels += gt_views if gt_views else [np.ones((size, size, 3))] * views
        panels += mesh_views(to_trimesh(mesh), renderer=renderer)
        for c, img in enumerate(panels):
            axes[r, c].imshow(img)
        axes[r, 0].set_ylabel(label, fontsize=6)
    titles = ["input"] + [f"GT az {az:.0f}" for az, _ in FIGURE_POSES] + [
        f"predicted az {az:.0f}" for az, _ in FIGURE_POSES]
    for c, title in enumerate(titles):
        axes[0, c].set_title(title, fontsize=6)
    return finish_grid(fig, axes, f"{item.set} {item.category} ({item.key[:10]})")


def pose_rows(cfg: ExperimentConfig, models: list[EvalModel], track: bool) -> list[dict]:
    """Final-epoch pose metrics of each self-training run (and its H = 1 ablation)."""
    rows = []
    for model in models:
        if model.stage != "selftrain":
            continue
        runs = [(model.label, model.checkpoint)]
        if track:
            ablation = tracking.latest_run(cfg.name, "selftrain-ablation", category=model.category)
            if ablation is not None:
                path = tracking.artifact_path(ablation, "checkpoints/last.pt")
                if path.is_file():
                    runs.append((f"{model.label} (ablation)", path))
        for label, path in runs:
            payload = load_checkpoint(path)
            epochs = payload["extra"].get("epochs", [])
            if not epochs or "pose_acc30" not in epochs[-1]:
                continue
            hyp = payload["config"].get("selftrain", {}).get("hypotheses")
            rows.append({"category": model.category, "run": label, "hypotheses": hyp,
                         "initial_pose_acc30": epochs[0].get("pose_acc30"),
                         **{k: v for k, v in epochs[-1].items() if k != "epoch"}})
    return rows


def ratio_rows(summary: list[dict[str, Any]], models: list[EvalModel]) -> list[dict[str, Any]]:
    """Student F@0.1 over its teacher's, per (set, category) where both were evaluated."""
    lookup = {(s["set"], s["category"], s["model"]): s.get("fscore@0.1") for s in summary}
    out = []
    students = [m for m in models if m.stage == "distill"]
    if not students:
        return out
    specialist_renders = students[0].specialist_renders
    for s in summary:
        if s["model"] != "distilled":
            continue
        specialist = f"selftrained-{s['category']}"
        taught = s["set"] == "collection" or s["category"] in specialist_renders
        teacher = (specialist if taught and (s["set"], s["category"], specialist) in lookup
                   else "pretrained")
        t = lookup.get((s["set"], s["category"], teacher))
        if t is None or s.get("fscore@0.1") is None:
            continue
        out.append({"set": s["set"], "category": s["category"], "teacher": teacher,
                    "student": s["fscore@0.1"], "teacher_fscore": t,
                    "ratio": s["fscore@0.1"] / t if t > 0 else float("nan")})
    return out


# ----------------------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------------------
def evaluate_stage(cfg: ExperimentConfig, *, progress: bool = True, track: bool = True,
                   out_dir: str | Path | None = None) -> EvalResult:
    """Evaluate every available stage of the experiment; tables, figures and turntables.

    Under ``torchrun`` the items are shared over the processes (the first item of each set and
    category, whose meshes make the figures, on rank 0); rank 0 gathers the rows and writes
    the tables, figures and turntables.
    """
    run = StageRun(cfg, STAGE, track=track, progress=progress, seed=cfg.seed)
    runtime, device = run.runtime, run.device
    models, skipped = find_models(cfg, track)
    renders = find_renders(cfg)[0] if track else data_paths(cfg).renders
    if not renders.is_file():
        raise FileNotFoundError(f"no rendered data at {renders}: run notebooks/00_render.ipynb")
    out = Path(out_dir) if out_dir else stage_dir(cfg, STAGE)
    result = EvalResult(run_id=None, skipped=skipped)
    synth, intrinsics = synthetic_items(cfg, renders)
    coll, notes = collection_items(cfg)
    result.skipped += notes
    items = synth + coll
    baselines = build_baselines(cfg, renders)
    nets = {m.label: load_network(m.checkpoint, device)[0] for m in models}
    result.models = [{"label": m.label, "stage": m.stage, "run_id": m.run_id,
                      "checkpoint": str(m.checkpoint),
                      "aligned_categories": sorted(m.alignments)} for m in models]
    figure_meshes: dict[tuple[str, str], dict[str, ExtractedMesh]] = defaultdict(dict)
    figure_items: dict[tuple[str, str], EvalItem] = {}
    for item in items:
        figure_items.setdefault((item.set, item.category), item)
    figure_keys = {id(item) for item in figure_items.values()}
    others = [i for i, item in enumerate(items) if id(item) not in figure_keys]
    mine = ([i for i, item in enumerate(items) if id(item) in figure_keys] if run.is_main
            else []) + others[runtime.rank::runtime.world_size]

    with run.open(consumed=[m.run_id for m in models]):
        rows: list[tuple[int, int, dict[str, Any]]] = []  # (item, order in item, row)
        for position in run.bar(mine, desc="evaluate", unit="item"):
            item = items[position]
            base = {"set": item.set, "category": item.category, "item": item.key,
                    "zero_shot": item.zero_shot}
            item_rows = [{**base, **row} for row in baseline_rows(
                item, baselines, cfg, intrinsics if item.set == "synthetic" else None)]
            for model in models:
                if not _applies(model, item):
                    continue
                # The network in mixed precision where it pays (query returns fp32). Measured on
                # 12 held-out items: 3.3x faster on a bf16 CPU, mean F@0.05 / mask IoU / vol IoU
                # within 0.004 of fp32 (largest single item 0.013), far inside the intervals.
                with autocast(device, cfg.optim.amp):
                    metrics, mesh = evaluate_item(nets[model.label], item,
                                                  _alignment_for(model, item), cfg,
                                                  intrinsics if item.set == "synthetic"
                                                  else None, device)
                item_rows.append({**base, "model": model.label, **metrics})
                if id(item) in figure_keys:
                    if cfg.evaluate.mesh_colours == "image":
                        mesh = image_coloured(nets[model.label], item,
                                              _alignment_for(model, item), mesh, cfg, device)
                    figure_meshes[(item.set, item.category)][model.label] = mesh
            rows += [(position, k, row) for k, row in enumerate(item_rows)]
        gathered = sorted((r for part in runtime.gather_objects(rows) for r in part),
                          key=lambda r: r[:2])
        result.rows = [row for _, _, row in gathered]
        if run.is_main:
            report_evaluation(result, cfg, models, figure_items, figure_meshes, out, track)
            _log_evaluation(run, result, out)
            run.print(result.tables_markdown)
    result.run_id = run.run_id
    result.wall_seconds = run.wall_seconds
    return result


def report_evaluation(result: EvalResult, cfg: ExperimentConfig, models: list[EvalModel],
                      figure_items: dict[tuple[str, str], EvalItem],
                      figure_meshes: dict[tuple[str, str], dict[str, ExtractedMesh]], out: Path,
                      track: bool) -> None:
    """Summary, intervals, verdicts, tables, figures and turntables of ``result.rows``, written
    to ``out`` (evaluation.json, tables.md, PNGs, turntables/)."""
    out.mkdir(parents=True, exist_ok=True)
    result.summary = summarise(result.rows, seed=cfg.seed)
    result.poses = pose_rows(cfg, models, track)
    result.ratios = ratio_rows(result.summary, models)
    result.differences = paired_differences(result.rows, seed=cfg.seed)
    result.baseline_differences = baseline_differences(result.rows, seed=cfg.seed)
    result.verdicts = verdicts(result.summary, result.differences,
                               against_baselines=result.baseline_differences)
    result.tables_markdown = markdown_tables(result.summary, result.poses, result.ratios,
                                             result.differences, result.verdicts)
    result.figures["fscore_bars"] = metric_bars(result.summary)
    with figure_renderer(cfg.evaluate.figure_size) as renderer:
        for (set_, category), meshes in figure_meshes.items():
            if not meshes:
                continue
            name = f"reconstructions_{set_}_{category}"
            result.figures[name] = reconstruction_figure(figure_items[(set_, category)],
                                                         meshes, renderer)
            # turntable of the most advanced model available for this item
            label = list(meshes)[-1]
            result.turntables[f"{set_}_{category}"] = write_turntable(
                to_trimesh(meshes[label]), out / "turntables" / f"{set_}_{category}.gif",
                frames=cfg.evaluate.turntable_frames, renderer=renderer)
    payload = {"experiment": cfg.name, "models": result.models, "skipped": result.skipped,
               "summary": result.summary, "poses": result.poses, "ratios": result.ratios,
               "differences": result.differences,
               "baseline_differences": result.baseline_differences, "verdicts": result.verdicts,
               "half_widths": half_widths(result.summary, result.poses),
               "rows": result.rows}
    (out / "evaluation.json").write_text(json.dumps(payload, indent=1, default=float))
    (out / "tables.md").write_text(result.tables_markdown)
    for name, fig in result.figures.items():
        fig.savefig(out / f"{name}.png", dpi=110)


def _log_evaluation(run: StageRun, result: EvalResult, out: Path) -> None:
    for s in result.summary:
        # "synthetic/airplane/pretrained.fscore_0.05": the UI groups charts by the part before
        # the last '/', one section per set and category. MLflow metric names allow no '@' or
        # ':' (fscore@0.1 -> fscore_0.1)
        model = s["model"].replace(": ", "-").replace(" ", "_")
        prefix = f"{s['set']}/{s['category']}/{model}"
        run.log_metrics({f"{prefix}.{m}".replace(" ", "_").replace("@", "_"): s[m]
                         for m in METRICS if m in s and math.isfinite(s[m])})
    run.log_metrics({f"ratio/{r['set']}/{r['category']}": r["ratio"] for r in result.ratios})
    run.log_artifact(out / "evaluation.json")
    run.log_artifact(out / "tables.md")
    for name, fig in result.figures.items():
        run.log_figure(fig, name)
    if (out / "turntables").is_dir():
        run.log_artifact(out / "turntables", "turntables")
