"""Stage 3: distil every category model into one unified student (README: Distillation).

Teachers: the pre-trained synthetic model (``"synthetic"``) and the self-trained model of each
collection category, found in MLflow (latest finished run per category) or given as paths.
Each training image is labelled with its teacher: collection images with their category's
model, synthetic renders (drawn with probability ``p_synthetic``) with the synthetic model,
or, with ``renders_to_specialist``, renders of a category that has its own self-trained model
with that model (one teacher per category: two teachers that disagree about similar images
pull the student between them). The student has the same architecture and starts from the
synthetic model.

Per step the batch is grouped by teacher and every teacher runs once, without gradients, on
its images (:class:`TeacherPool`). Losses:

* ``point``: ``points_per_image`` random points in ``[-point_cube, point_cube]^3`` per image;
  MSE of colour logits plus ``density_weight`` × MSE of ``relu(density) / density_scale``
  (the paper's relu-density MSE, in units of the raw output so both terms are O(1));
* ``ray``: ``rays_per_image`` random rays from random poses per image; MSE of mask and colour
  of the two renders.

Under ``torchrun`` each process draws its share of every global batch and the gradients are
averaged (:func:`distill_stage`); CUDA runs under autocast.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import torch

from ss3d.cameras import FIGURE_DISTANCE, FIGURE_POSES, Intrinsics
from ss3d.config import ExperimentConfig
from ss3d.engine import (
    autocast,
    grad_scaler,
    make_adam,
    optimiser_step,
)
from ss3d.image_metrics import mask_iou
from ss3d.model import ReconstructionNet, adopt_checkpoint_model, load_network
from ss3d.stages.data import data_paths, find_renders
from ss3d.stages.distill_data import (
    SYNTHETIC,
    DistillData,
    MissingTeacherError,
    TeacherPool,
    augment_images,
    find_teachers,
)
from ss3d.stages.shell import (
    StageRun,
    TrainingResult,
    stage_dir,
)
from ss3d.stages.unified import register_student
from ss3d.viz import finish_grid, finish_plot
from ss3d.volume import Rays, camera_rays, render_network, render_rays

__all__ = ["SYNTHETIC", "DistillResult", "DistillState", "MissingTeacherError", "distill_stage",
           "distill_step", "find_teachers"]

log = logging.getLogger(__name__)
STAGE = "distill"


@dataclass
class DistillResult(TrainingResult):
    """Plus the teachers, the student-teacher agreement before and after, and the registered
    model version."""

    teachers: dict[str, str] = field(default_factory=dict)
    agreement: dict[str, float] = field(default_factory=dict)
    agreement_before: dict[str, float] = field(default_factory=dict)
    model_version: str | None = None


# ----------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------
def random_points(batch: int, count: int, cube: float, device: torch.device,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """``(B, P, 3)`` uniform in ``[-cube, cube]^3``."""
    return ((torch.rand(batch, count, 3, generator=generator) * 2 - 1) * cube).to(device)


def random_poses(count: int, cfg: ExperimentConfig, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Azimuth, elevation, distance ``(count,)`` uniform in the renders' ranges."""
    lo_el, hi_el = cfg.render.elevation_range
    lo_d, hi_d = cfg.render.distance_range
    u = torch.rand(count, 3, generator=generator)
    return u[:, 0] * 360.0, lo_el + (hi_el - lo_el) * u[:, 1], lo_d + (hi_d - lo_d) * u[:, 2]


def random_rays(batch: int, rays: int, cfg: ExperimentConfig, intrinsics: Intrinsics,
                device: torch.device, generator: torch.Generator | None = None) -> Rays:
    """Rays of random pixels from one random pose per image: origins, dirs ``(B, R, 3)``,
    near, far ``(B, R)``."""
    azimuth, elevation, distance = random_poses(batch, cfg, generator)
    pixels = torch.rand(batch, rays, 2, generator=generator) * torch.tensor(
        [intrinsics.width, intrinsics.height], dtype=torch.float32)
    return camera_rays(azimuth.to(device), elevation.to(device), distance.to(device),
                       intrinsics, cfg.model, pixels=pixels.to(device))


def point_outputs(net: ReconstructionNet, images: torch.Tensor,
                  points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour logits ``(B, P, 3)`` and ``relu(density) / density_scale`` ``(B, P, 1)``."""
    rgb_logits, density = net.query(points, net.encode(images))
    return rgb_logits.float(), density.float() / net.density_scale


def ray_outputs(net: ReconstructionNet, images: torch.Tensor, rays: tuple[torch.Tensor, ...],
                n_samples: int, generator_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask ``(B, R)`` and colour ``(B, R, 3)`` of the rays (same samples for every net)."""
    origins = rays[0]
    latent = net.encode(images)
    # teacher and student see identical samples; the caller's RNG streams are left untouched
    devices = [origins.device.index or 0] if origins.is_cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(generator_seed)
        out = render_rays(lambda p: net.query(p, latent), *rays, n_samples, stratified=True)
    return out["mask"], out["rgb"]


def per_image_loss(cfg: ExperimentConfig, student: tuple[torch.Tensor, torch.Tensor],
                   teacher: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``(B,)`` distillation loss of each image: in ``point`` mode colour MSE +
    ``distill.density_weight`` · density MSE at the sampled points; in ``ray`` mode mask MSE +
    colour MSE of the rendered rays, 1:1 (the student copies both of the teacher's outputs, and
    neither is a noisier target than the other)."""
    if cfg.distill.mode == "point":
        rgb = (student[0] - teacher[0]).pow(2).mean((-1, -2))
        dens = (student[1] - teacher[1]).pow(2).mean((-1, -2))
        return rgb + cfg.distill.density_weight * dens
    mask = (student[0] - teacher[0]).pow(2).mean(-1)
    rgb = (student[1] - teacher[1]).pow(2).mean((-1, -2))
    return mask + rgb


# ----------------------------------------------------------------------------------------------
# Agreement and figures
# ----------------------------------------------------------------------------------------------
@torch.no_grad()
def _render(net: ReconstructionNet, images: torch.Tensor, azimuth: torch.Tensor,
            elevation: torch.Tensor, distance: torch.Tensor, intrinsics: Intrinsics,
            cfg: ExperimentConfig) -> dict[str, torch.Tensor]:
    latent = net.encode(images)
    return render_network(lambda p: net.query(p, latent), azimuth, elevation, distance,
                          intrinsics, cfg.model)


@torch.no_grad()
def agreement(student: ReconstructionNet, pool: TeacherPool,
              fixed: Mapping[str, tuple[torch.Tensor, str]], cfg: ExperimentConfig,
              intrinsics: Intrinsics, device: torch.device, views: int = 3,
              seed: int = 0) -> dict[str, float]:
    """Per category: mean mask IoU of student vs teacher renders from random poses."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for category, (images, teacher) in fixed.items():
        images = images.to(device)
        n = images.shape[0]
        ious = []
        for _ in range(views):
            cams = [c.to(device) for c in random_poses(n, cfg, g)]
            s = _render(student, images, *cams, intrinsics, cfg)
            t = pool.run(teacher,
                         lambda net, im=images, c=cams: _render(net, im, *c, intrinsics, cfg))
            ious.append(mask_iou(s["mask"].cpu(), t["mask"].cpu()))
        out[category] = float(torch.cat(ious).mean())
    return out


@torch.no_grad()
def comparison_figure(student: ReconstructionNet, pool: TeacherPool,
                      fixed: Mapping[str, tuple[torch.Tensor, str]], cfg: ExperimentConfig,
                      intrinsics: Intrinsics, device: torch.device, step: int) -> plt.Figure:
    """For one image per category: input | teacher and student (colour, mask) at the figure
    views (:data:`ss3d.cameras.FIGURE_POSES`)."""
    rows = list(fixed.items())
    cols = 1 + 4 * len(FIGURE_POSES)
    fig, axes = plt.subplots(len(rows), cols, figsize=(cols * 0.9, len(rows) * 1.0),
                             squeeze=False)
    for r, (category, (images, teacher)) in enumerate(rows):
        image = images[:1].to(device)
        axes[r, 0].imshow(image[0].permute(1, 2, 0).cpu().numpy())
        axes[r, 0].set_ylabel(f"{category}\n({teacher})", fontsize=6)
        for k, (az, el) in enumerate(FIGURE_POSES):
            cams = [torch.tensor([v], device=device) for v in (az, el, FIGURE_DISTANCE)]
            t = pool.run(teacher,
                         lambda net, im=image, c=cams: _render(net, im, *c, intrinsics, cfg))
            s = _render(student, image, *cams, intrinsics, cfg)
            panels = [(t["rgb"][0], "teacher"), (s["rgb"][0], "student"),
                      (t["mask"][0], "T mask"), (s["mask"][0], "S mask")]
            for j, (img, title) in enumerate(panels):
                ax = axes[r, 1 + 4 * k + j]
                ax.imshow(img.clamp(0, 1).cpu().numpy(), cmap="gray" if img.ndim == 2 else None,
                          vmin=0, vmax=1)
                if r == 0:
                    ax.set_title(f"{title}\naz {az:.0f}", fontsize=5)
    axes[0, 0].set_title("input", fontsize=6)
    return finish_grid(fig, axes, f"Student vs teacher (step {step})", fontsize=8)


def agreement_figure(before: Mapping[str, float], after: Mapping[str, float]) -> plt.Figure:
    """Student-teacher mask IoU per category, before and after distillation."""
    fig, ax = plt.subplots(figsize=(6, 2.6))
    categories = list(after)
    x = range(len(categories))
    ax.bar([i - 0.2 for i in x], [before.get(c, 0.0) for c in categories], 0.4, label="before")
    ax.bar([i + 0.2 for i in x], [after[c] for c in categories], 0.4, label="after")
    ax.set_xticks(list(x), categories, fontsize=7)
    ax.set_ylim(0, 1)
    return finish_plot(fig, (ax, "student-teacher mask IoU (random poses)"), xlabel="")


def curves_figure(history: list[dict[str, float]], teachers: list[str]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(6, 3))
    for name in teachers:
        pts = [(h["step"], h[f"loss/{name}"]) for h in history if f"loss/{name}" in h]
        if pts:
            ax.plot(*zip(*pts), lw=1, label=name)
    ax.set_yscale("log")
    return finish_plot(fig, (ax, "distillation loss per teacher"))


# ----------------------------------------------------------------------------------------------
# The stage
# ----------------------------------------------------------------------------------------------
@dataclass
class DistillState:
    """Everything a distillation checkpoint holds besides the student and its optimiser."""

    generator: torch.Generator  # the batches' random stream (rank 0's is saved)
    teachers: dict[str, str]
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    agreement_before: dict[str, float] = field(default_factory=dict)
    data_rng: torch.Tensor | None = None  # the stream's state as read from a checkpoint

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "teachers": self.teachers,
                "agreement_before": self.agreement_before,
                "data_rng": self.generator.get_state()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.history = state["history"]
        self.agreement_before = state.get("agreement_before", {})
        self.data_rng = state["data_rng"]


def _distill_inputs(cfg: ExperimentConfig, track: bool) -> tuple[dict[str, Path], Path | None]:
    """The collections and (with ``distill.p_synthetic > 0``) the renders the batches come
    from; fails early, naming what is missing."""
    paths = data_paths(cfg)
    collections = {c: paths.collection(c) for c in cfg.data.collections}
    missing = [str(p) for p in collections.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"collections not found: {missing}; run notebooks/00_render"
                                ".ipynb (or `ss3d render`) first")
    renders = None
    if cfg.distill.p_synthetic > 0:
        renders = find_renders(cfg)[0] if track else paths.renders
        if not renders.is_file():
            raise FileNotFoundError(f"no synthetic renders at {renders} (needed for "
                                    "distill.p_synthetic > 0): run notebooks/00_render.ipynb")
    return collections, renders


def distill_stage(cfg: ExperimentConfig, *, teachers: Mapping[str, str] | None = None,
                  resume: bool | str | Path = False, progress: bool = True,
                  track: bool = True, register: bool = True) -> DistillResult:
    """Distil the experiment's teachers into one student; returns its checkpoint and logs.

    Under ``torchrun`` each process draws its share of every global batch
    (``optim.batch_size``) from its own random stream and the gradients are averaged; the
    agreement figures and the registered model come from rank 0.

    Args:
        teachers: ``{name: checkpoint}`` overrides (``synthetic`` or a collection category).
        resume: ``True`` for ``<output_dir>/<name>/distill/last.pt`` or a checkpoint path.
        register: log the student with ``mlflow.pytorch.log_model`` and register it as
            ``ss3d-unified``.
    """
    cfg = copy.deepcopy(cfg)  # the student's model settings are adopted below
    d = cfg.distill
    run = StageRun(cfg, STAGE, out_dir=stage_dir(cfg, STAGE), track=track, progress=progress,
                   seed=cfg.seed)
    runtime, device = run.runtime, run.device
    found = find_teachers(cfg, teachers, track)  # fails at once when a teacher is missing
    collections, renders = _distill_inputs(cfg, track)
    local_batch = runtime.local_batch(cfg.optim.batch_size)
    data = DistillData(cfg, collections, renders, run.rank_seed())
    intrinsics = Intrinsics.from_fov(cfg.render.fov_degrees, cfg.data.crop_size)

    pool = TeacherPool({name: load_network(path, device)[0] for name, (path, _) in found.items()},
                       device, on_device=d.teachers_on_device)
    student, student_payload = load_network(found[SYNTHETIC][0], device)
    # the student is saved (and registered) with the model settings it runs with
    adopted = adopt_checkpoint_model(cfg.model, student_payload, found[SYNTHETIC][0])
    if adopted:
        run.print(f"model settings taken from {found[SYNTHETIC][0]}: " + "; ".join(adopted))
    student.train()
    optimizer = make_adam(student.reconstruction_parameters(), d.lr)
    scaler = grad_scaler(device, cfg.optim.amp)  # fp16 on CUDA only; a pass-through elsewhere
    aug_rng = torch.Generator().manual_seed(cfg.seed + 1 + runtime.rank)
    state = DistillState(generator=data.generator,
                         teachers={k: str(v[0]) for k, v in found.items()})
    if run.resume(resume, state, model=student, optimizer=optimizer) is not None:
        if runtime.is_main:
            data.generator.set_state(state.data_rng)
        else:  # the file holds rank 0's stream; the others draw fresh ones
            data.generator.manual_seed(run.rank_seed(state.step))
    result = DistillResult(run_id=None, checkpoint=run.checkpoint, teachers=state.teachers,
                           agreement_before=state.agreement_before)
    fixed = data.fixed_images(d.agreement_images)

    with run.open(consumed=[r for _, r in found.values()]):
        # lineage by run id (the UI links runs); a teacher given as a file keeps its path
        for name, (path, teacher_run) in found.items():
            run.set_tag(f"ss3d.teacher.{name}", teacher_run or str(path))
        if not state.agreement_before and run.is_main:
            # the starting point (the synthetic model) against every teacher
            student.eval()
            state.agreement_before.update(agreement(student, pool, fixed, cfg, intrinsics,
                                                    device, seed=cfg.seed))
            student.train()
            run.log_metrics(state.agreement_before, prefix="agreement_before/")
        bar = run.bar(range(state.step, d.steps), desc=f"distill ({d.mode})", unit="step",
                      initial=state.step, total=d.steps)
        for step in bar:
            tic = time.perf_counter()
            images, labels, _ = data.batch(local_batch)
            loss, per_teacher = distill_step(student, pool, images.to(device), labels, cfg,
                                             intrinsics, aug_rng)
            optimiser_step(loss, optimizer, scaler, student.reconstruction_parameters(),
                           cfg.optim.grad_clip, runtime=runtime)
            state.step = step + 1
            record = {"loss": float(loss.detach()), "step_seconds": time.perf_counter() - tic,
                      **{f"loss/{k}": v for k, v in per_teacher.items()}, "step": state.step}
            state.history.append(record)
            run.log_metrics(record, step=state.step)
            bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
            if state.step % d.checkpoint_every == 0 or state.step == d.steps:
                run.save(state, model=student, optimizer=optimizer)
        run.finish(state, model=student, optimizer=optimizer)
        if run.is_main:
            _final_agreement(student, pool, fixed, cfg, intrinsics, run, result, state, register)
    result.run_id = run.run_id
    result.history = state.history
    result.wall_seconds = run.wall_seconds
    return result


def _final_agreement(student: ReconstructionNet, pool: TeacherPool,
                     fixed: Mapping[str, tuple[torch.Tensor, str]], cfg: ExperimentConfig,
                     intrinsics: Intrinsics, run: StageRun, result: DistillResult,
                     state: DistillState, register: bool) -> None:
    """Rank 0 after the last step: agreement with every teacher, the figures, and the
    registered model."""
    student.eval()
    result.agreement = agreement(student, pool, fixed, cfg, intrinsics, run.device,
                                 seed=cfg.seed)
    result.figures["comparison"] = comparison_figure(student, pool, fixed, cfg, intrinsics,
                                                     run.device, cfg.distill.steps)
    result.figures["curves"] = curves_figure(state.history, pool.names)
    result.figures["agreement"] = agreement_figure(result.agreement_before, result.agreement)
    run.print("student-teacher agreement (mask IoU, random poses), before -> after: "
              + ", ".join(f"{k} {result.agreement_before.get(k, float('nan')):.3f} -> "
                          f"{v:.3f}" for k, v in result.agreement.items()))
    run.log_metrics(result.agreement, prefix="agreement/")
    if result.agreement:
        run.log_headline({"agreement": sum(result.agreement.values()) / len(result.agreement)})
    for name, fig in result.figures.items():
        run.log_figure(fig, name)
    if register and run.logging:
        result.model_version = register_student(
            student, cfg, description=(
                f"distilled for {cfg.distill.steps} steps from "
                f"{', '.join(sorted(result.teachers))}; run {run.run_id}"),
            tags={"ss3d.run_id": run.run_id or "", "ss3d.experiment": cfg.name,
                  "ss3d.teachers": ",".join(sorted(result.teachers))})


def distill_step(student: ReconstructionNet, pool: TeacherPool, images: torch.Tensor,
                 labels: list[str], cfg: ExperimentConfig, intrinsics: Intrinsics,
                 aug_rng: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
    """The student's loss on one batch ``images (B, 3, S, S)`` against each image's teacher
    (``labels``): the mean per-image loss, and its mean per teacher."""
    d, device = cfg.distill, images.device
    b = images.shape[0]
    if d.mode == "point":
        inputs = random_points(b, d.points_per_image, d.point_cube, device)
        targets = pool.grouped(labels, lambda net, rows, im=images, x=inputs:
                               point_outputs(net, im[rows], x[rows]))
    else:
        inputs = random_rays(b, d.rays_per_image, cfg, intrinsics, device)
        sample_seed = int(torch.randint(2**31, ()))
        targets = pool.grouped(labels, lambda net, rows, im=images, x=inputs,
                               seed=sample_seed: ray_outputs(
            net, im[rows], tuple(r[rows] for r in x), cfg.model.n_samples, seed))
    student_in = augment_images(images, aug_rng) if d.augment else images
    with autocast(device, cfg.optim.amp):
        if d.mode == "point":
            pred = point_outputs(student, student_in, inputs)
        else:
            pred = ray_outputs(student, student_in, inputs, cfg.model.n_samples, sample_seed)
    losses = torch.zeros(b, device=device)
    for rows, target in targets.values():
        rows_d = rows.to(device)
        losses = losses.index_add(0, rows_d, per_image_loss(
            cfg, tuple(p[rows_d] for p in pred), target))
    per_teacher = {name: float(losses[rows.to(device)].mean().detach())
                   for name, (rows, _) in targets.items()}
    return losses.mean(), per_teacher


