"""Evaluation of every stage of an experiment (README: Evaluation).

Models: the pre-trained model, each category's self-trained model and the distilled student,
found in MLflow (latest finished runs) or in ``<output_dir>/<name>/``; stages that have not
run are skipped and listed. Test items (:mod:`ss3d.eval.items`): held-out synthetic models
and collection test images with 3D ground truth; and the pose accuracy of the self-training
runs. Statistics, verdicts and tables: :mod:`ss3d.eval.summary`.

Items are evaluated by :mod:`ss3d.stages.evaluate_items` (in ``evaluate.workers`` processes on
a CPU). Learned frames: a self-trained model predicts in its own canonical frame, related to the
true one by the global rotation ``G`` found from the hidden cameras (saved by self-training).
Its predictions are mapped back with ``G`` before any 3D metric; the student is evaluated in the
frame of the teacher that taught that kind of image (collection images: the category's
self-trained teacher; synthetic renders: the synthetic model, identity).

Baselines next to every number: a sphere of the mean object size and the category's medoid
shape (the training model with the smallest mean Chamfer distance to the others; its
inside/outside at the test points comes from its nearest own volume sample).
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

from ss3d import tracking
from ss3d.cameras import FIGURE_POSES
from ss3d.config import ExperimentConfig
from ss3d.data.render import MeshRenderer
from ss3d.data.shapenet import load_model
from ss3d.engine import autocast, load_checkpoint
from ss3d.eval.baselines import build_baselines
from ss3d.eval.items import EvalItem, collection_items, synthetic_items
from ss3d.eval.keys import ModelKey
from ss3d.eval.level import LevelChoice, choose_level, level_scores, validation_items
from ss3d.eval.mesh import ExtractedMesh
from ss3d.eval.summary import (
    METRICS,
    PRETRAINED,
    PRIMARY,
    baseline_differences,
    fmt,
    frame_checks,
    half_widths,
    markdown_tables,
    paired_differences,
    summarise,
    verdicts,
)
from ss3d.eval.views import figure_renderer, mesh_views, to_trimesh, write_turntable
from ss3d.model import ReconstructionNet
from ss3d.stages.data import data_paths, find_renders
from ss3d.stages.evaluate_items import (
    EvalModel,
    ItemJob,
    aligned_field,
    evaluate_item,
    evaluate_positions,
    load_networks,
)
from ss3d.stages.shell import StageRun, find_pretrained, latest_checkpoint, stage_dir
from ss3d.viz import finish_grid, metric_small_multiples

__all__ = ["EvalModel", "EvalResult", "aligned_field", "evaluate_item", "evaluate_stage",
           "find_models"]

STAGE = "evaluate"


@dataclass
class EvalResult:
    run_id: str | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)
    poses: list[dict[str, Any]] = field(default_factory=list)
    ratios: list[dict[str, Any]] = field(default_factory=list)
    differences: list[dict[str, Any]] = field(default_factory=list)
    frames: list[dict[str, Any]] = field(default_factory=list)  # summary.frame_checks
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
    models.append(EvalModel(PRETRAINED, "pretrain", path, run_id))

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
        models.append(EvalModel(ModelKey.selftrained(category).label, "selftrain", found[0],
                                found[1],
                                category, {category: g} if g is not None else {}))
    found = latest_checkpoint(cfg, "distill", track=track)
    if found is None:
        skipped.append("distilled: no distillation run (notebook 03)")
    else:
        distill_cfg = load_checkpoint(found[0])["config"].get("distill", {})
        specialists = frozenset(selftrained if distill_cfg.get("renders_to_specialist", False)
                                else ())
        models.append(EvalModel(ModelKey("distilled").label, "distill", found[0], found[1],
                                alignments=dict(teachers), specialist_renders=specialists))
    return models, skipped


# ----------------------------------------------------------------------------------------------


def level_items(cfg: ExperimentConfig, renders: Path, skipped: list[str]) -> list[EvalItem]:
    """The val split's seen-category items that surface levels are chosen on (none without
    ``evaluate.surface_levels``). None there: a note in ``skipped``, and every model is read at
    ``evaluate.peak_fraction`` (a pipeline that trained for an hour is not stopped for this)."""
    if not cfg.evaluate.surface_levels:
        return []
    items = validation_items(synthetic_items(cfg, renders, data_paths(cfg), split="val")[0])
    if not items:
        skipped.append(f"surface levels: {renders} has no val models of a seen category to "
                       f"choose them on (data.val_fraction {cfg.data.val_fraction}); every "
                       f"model is read at evaluate.peak_fraction {cfg.evaluate.peak_fraction}")
    return items


@torch.no_grad()
def choose_surface_levels(cfg: ExperimentConfig, models: list[EvalModel],
                          nets: dict[str, ReconstructionNet], val_items: list[EvalItem],
                          device: torch.device, run: StageRun) -> dict[str, LevelChoice]:
    """Each model's surface level (:mod:`ss3d.eval.level`), set on ``models`` in place: the
    pre-trained and distilled models' chosen on ``val_items`` among
    ``evaluate.surface_levels``, the self-trained ones' their prior's (``models[0]``, the
    pre-trained model). No candidates or no ``val_items``: nothing changes, nothing is
    returned.

    Every rank of a distributed run chooses alone (the same deterministic choice)."""
    candidates = list(cfg.evaluate.surface_levels)
    if not candidates or not val_items:
        return {}
    chosen = [m for m in models if m.stage != "selftrain"]
    choices: dict[str, LevelChoice] = {}
    with run.bar(total=len(chosen) * len(val_items), desc="surface level", unit="item") as bar:
        for model in chosen:
            net = nets[model.label]
            scores = []
            for item in val_items:
                g = (model.alignment_for(item) if cfg.evaluate.learned_frame == "poses"
                     else None)
                with autocast(device, cfg.optim.amp):
                    latent = net.encode(item.image[None].to(device))
                    scores.append(level_scores([aligned_field(net, latent, g)], [item.surface],
                                               candidates, cfg, device)[0])
                bar.update()
            choices[model.label] = choose_level(np.stack(scores), candidates)
    prior = choices[models[0].label]
    for model in models:
        model.peak_fraction = choices.get(model.label, prior).level
    return choices


def surface_level_table(models: list[EvalModel], choices: dict[str, LevelChoice]) -> str:
    """Markdown: each model's surface level and, where chosen, every candidate's val F@0.05."""
    if not choices:
        return ""
    candidates = list(next(iter(choices.values())).scores)
    lines = ["## Surface levels (chosen on the val split)", "",
             "Each model's meshes are cut at the fraction of its own peak density whose meshes "
             "score the highest mean F@0.05 over the val split's seen-category models; a "
             "self-trained model takes its prior's.", "",
             "| model | level | " + " | ".join(f"val F@0.05 at {c:g}" for c in candidates) + " |",
             "|---|---:|" + "---:|" * len(candidates)]
    for m in models:
        choice = choices.get(m.label)
        cells = ([f"{choice.scores[c]:.3f}" for c in candidates] if choice
                 else ["(the prior's)"] + [""] * (len(candidates) - 1))
        lines.append(f"| {m.label} | {m.peak_fraction:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Figures, poses and student/teacher ratios (statistics and tables: ss3d.eval.summary)
# ----------------------------------------------------------------------------------------------
def metric_bars(summary: list[dict[str, Any]], metric: str = PRIMARY) -> plt.Figure:
    """One small panel per (set, category) with every model's mean and 95% bootstrap interval
    (:func:`ss3d.viz.metric_small_multiples`: readable at 500 px, where one bar strip of every
    category grew to 3,500 px)."""
    return metric_small_multiples(summary, metric)


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


@dataclass
class FigureJob:
    """One set and category's reconstruction figure and turntable (of the most advanced model
    there, the last of ``meshes``); picklable for a worker process."""

    name: str  # "<set>_<category>"
    item: EvalItem
    meshes: dict[str, ExtractedMesh]
    turntable: Path
    size: int
    frames: int


_RENDERERS: dict[int, MeshRenderer] = {}  # a worker process's figure renderer, per size


def _figure_and_turntable(job: FigureJob, renderer: MeshRenderer | None = None) -> plt.Figure:
    if renderer is None:  # in a worker: one renderer per process, kept for its next job
        # (never a second one in a process: deleting a pyrender EGL renderer terminates the
        # display that the others use)
        if job.size not in _RENDERERS:
            _RENDERERS[job.size] = figure_renderer(job.size)
        renderer = _RENDERERS[job.size]
    figure = reconstruction_figure(job.item, job.meshes, renderer)
    write_turntable(to_trimesh(list(job.meshes.values())[-1]), job.turntable,
                    frames=job.frames, renderer=renderer)
    return figure


def figures_and_turntables(jobs: list[FigureJob], workers: int = 1) -> list[plt.Figure]:
    """The figures of ``jobs`` (in order; their turntables written), in ``workers`` spawned
    processes when there are several jobs (pyrender and matplotlib are CPU work)."""
    if workers <= 1 or len(jobs) < 2:
        with figure_renderer(jobs[0].size if jobs else 96) as renderer:
            return [_figure_and_turntable(job, renderer) for job in jobs]
    with ProcessPoolExecutor(min(workers, len(jobs)),
                             mp_context=mp.get_context("spawn")) as pool:
        return list(pool.map(_figure_and_turntable, jobs))


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
        if ModelKey.parse(s["model"]).kind != "distilled":
            continue
        specialist = ModelKey.selftrained(s["category"]).label
        taught = s["set"] == "collection" or s["category"] in specialist_renders
        teacher = (specialist if taught and (s["set"], s["category"], specialist) in lookup
                   else PRETRAINED)
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
    paths = data_paths(cfg)
    renders = find_renders(cfg)[0] if track else paths.renders
    if not renders.is_file():
        raise FileNotFoundError(f"no rendered data at {renders}: run notebooks/00_render.ipynb")
    out = Path(out_dir) if out_dir else stage_dir(cfg, STAGE)
    result = EvalResult(run_id=None, skipped=skipped)
    synth, intrinsics = synthetic_items(cfg, renders, paths)
    if not cfg.evaluate.synthetic:
        synth = []
        result.skipped.append("synthetic test models: evaluate.synthetic is off")
    coll, notes = collection_items(cfg, paths)
    result.skipped += notes
    items = synth + coll
    baselines = build_baselines(cfg, renders)
    nets = load_networks(models, device)
    result.models = [{"label": m.label, "stage": m.stage, "run_id": m.run_id,
                      "checkpoint": str(m.checkpoint),
                      "aligned_categories": sorted(m.alignments)} for m in models]
    first: dict[tuple[str, str], int] = {}  # the item of each set and category in the figures
    for i, item in enumerate(items):
        first.setdefault((item.set, item.category), i)
    figure_items = {key: items[i] for key, i in first.items()}
    figure_positions = set(first.values())
    others = [i for i in range(len(items)) if i not in figure_positions]
    mine = (sorted(figure_positions) if run.is_main else []) + others[
        runtime.rank::runtime.world_size]
    job = ItemJob(cfg, models, baselines, intrinsics)
    # processes of their own on a CPU only: the ranks of torchrun already share the items
    workers = 1 if runtime.distributed or device.type != "cpu" else cfg.evaluate.workers

    val_items = level_items(cfg, renders, result.skipped)

    with run.open(consumed=[m.run_id for m in models]):
        levels = choose_surface_levels(cfg, models, nets, val_items, device, run)
        for entry, model in zip(result.models, models):
            entry["surface_level"] = model.surface_level(cfg)
            if model.label in levels:
                entry["surface_level_choice"] = levels[model.label].as_dict()
        if levels:
            run.log_headline({f"surface_level.{m.label}": m.peak_fraction for m in models})
        with run.bar(total=len(mine), desc="evaluate", unit="item") as bar:
            rows, meshes = evaluate_positions(job, nets, items, mine, figure_positions, device,
                                              workers=workers, on_item=bar.update)
        figure_meshes = {(items[p].set, items[p].category): m for p, m in meshes.items()}
        gathered = sorted((r for part in runtime.gather_objects(rows) for r in part),
                          key=lambda r: r[:2])
        result.rows = [row for _, _, row in gathered]
        if run.is_main:
            report_evaluation(result, cfg, models, figure_items, figure_meshes, out, track,
                              workers, surface_level_table(models, levels))
            _log_evaluation(run, result, out)
            run.print(result.tables_markdown)
    result.run_id = run.run_id
    result.wall_seconds = run.wall_seconds
    return result


def report_evaluation(result: EvalResult, cfg: ExperimentConfig, models: list[EvalModel],
                      figure_items: dict[tuple[str, str], EvalItem],
                      figure_meshes: dict[tuple[str, str], dict[str, ExtractedMesh]], out: Path,
                      track: bool, workers: int = 1, levels_markdown: str = "") -> None:
    """Summary, intervals, verdicts, tables, figures and turntables of ``result.rows``, written
    to ``out`` (evaluation.json, tables.md, PNGs, turntables/); figures in ``workers``
    processes."""
    out.mkdir(parents=True, exist_ok=True)
    result.summary = summarise(result.rows, seed=cfg.seed)
    result.poses = pose_rows(cfg, models, track)
    result.ratios = ratio_rows(result.summary, models)
    result.differences = paired_differences(result.rows, seed=cfg.seed)
    result.baseline_differences = baseline_differences(result.rows, seed=cfg.seed)
    result.frames = frame_checks(result.rows, seed=cfg.seed)
    result.verdicts = verdicts(result.summary, result.differences,
                               against_baselines=result.baseline_differences)
    result.tables_markdown = markdown_tables(result.summary, result.poses, result.ratios,
                                             result.differences, result.verdicts,
                                             result.frames)
    if levels_markdown:
        result.tables_markdown += "\n" + levels_markdown
    result.figures["fscore_bars"] = metric_bars(result.summary)
    jobs = [FigureJob(f"{set_}_{category}", figure_items[(set_, category)], meshes,
                      out / "turntables" / f"{set_}_{category}.gif", cfg.evaluate.figure_size,
                      cfg.evaluate.turntable_frames)
            for (set_, category), meshes in figure_meshes.items() if meshes]
    for job, figure in zip(jobs, figures_and_turntables(jobs, workers)):
        result.figures[f"reconstructions_{job.name}"] = figure
        result.turntables[job.name] = job.turntable
    payload = {"experiment": cfg.name, "models": result.models, "skipped": result.skipped,
               "summary": result.summary, "poses": result.poses, "ratios": result.ratios,
               "differences": result.differences, "frames": result.frames,
               "baseline_differences": result.baseline_differences, "verdicts": result.verdicts,
               "half_widths": half_widths(result.summary, result.poses),
               "rows": result.rows}
    (out / "evaluation.json").write_text(json.dumps(payload, indent=1, default=float))
    (out / "tables.md").write_text(result.tables_markdown)
    for name, fig in result.figures.items():
        fig.savefig(out / f"{name}.png", dpi=110)


def _log_evaluation(run: StageRun, result: EvalResult, out: Path) -> None:
    # one table per set, every (category, model) a row: each metric's mean and its 95% interval,
    # sortable on the run's artifact page (one metric per cell made ~900 one-bar charts)
    for set_name in dict.fromkeys(s["set"] for s in result.summary):
        run.log_table([{"category": s["category"], "model": s["model"], "n": s.get("n"),
                        **{k: v for m in METRICS if m in s for k, v in (
                            (m, round(float(s[m]), 4)),
                            (f"{m} 95%", f"[{fmt(s.get(m + '_lo'))}, {fmt(s.get(m + '_hi'))}]"))}}
                       for s in result.summary if s["set"] == set_name], set_name)
    run.log_table(result.ratios, "distillation_ratios")
    # per set, the mean over categories of each learned model's F@0.05 (the runs table's columns)
    for model in ("distilled", "pretrained", "selftrained"):
        for set_name in dict.fromkeys(s["set"] for s in result.summary):
            values = [s[PRIMARY] for s in result.summary
                      if ModelKey.parse(s["model"]).kind == model and s["set"] == set_name
                      and math.isfinite(s.get(PRIMARY, math.nan))]
            if values:
                run.log_headline({f"{set_name}.{model}.fscore_0.05": sum(values) / len(values)})
    run.log_artifact(out / "evaluation.json")
    run.log_artifact(out / "tables.md")
    for name, fig in result.figures.items():
        run.log_figure(fig, name)
    if (out / "turntables").is_dir():
        run.log_artifact(out / "turntables", "turntables")
