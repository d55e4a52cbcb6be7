"""Typed experiment configuration.

One config system for the CLI, the notebooks and MLflow:

* every section is a dataclass whose defaults are the embedded CPU run (``experiments/smoke.yaml``);
* an experiment is a YAML file that overrides some fields (``load_config("experiments/x.yaml")``);
* single values are overridden with dotted keys (``--set model.hidden=128`` on the CLI,
  ``overrides={"model.hidden": 128}`` in Python, ``-p`` parameters in notebooks);
* the same YAML is valid input for ``papermill -f``: its top-level keys are the section names,
  which the notebooks' parameters cells declare as (empty) dicts;
* :func:`flatten` gives the ``{"model.hidden": 128, ...}`` dict logged as MLflow params.

Validation happens once, up front: an unknown key, a value of the wrong type or a value out of
range raises :class:`ConfigError` naming the key, the value and the file it came from.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ss3d.data import taxonomy

__all__ = [
    "ConfigError",
    "DataConfig",
    "DistillConfig",
    "EvalConfig",
    "ExperimentConfig",
    "ModelConfig",
    "OptimConfig",
    "PretrainConfig",
    "RenderConfig",
    "SelftrainConfig",
    "apply_overrides",
    "config_from_namespace",
    "describe_fields",
    "flatten",
    "load_config",
    "format_set_args",
    "parse_set_args",
    "to_dict",
]


class ConfigError(ValueError):
    """A config value or key is invalid. The message names the key, the value and the source."""


# Keys that were renamed: an old name fails with a message naming the new one (never silently
# ignored, never silently mapped: an experiment file should say what it means).
RENAMED: dict[str, str] = {
    "optim.lr": "pretrain.lr",
    "optim.weight_decay": "pretrain.weight_decay",
    "optim.schedule": "pretrain.schedule",
    "selftrain.stage_one_epochs": "selftrain.phase_a_epochs",
    "selftrain.n_cam_iters": "selftrain.camera_steps",
    "selftrain.grid_resolution": "selftrain.score_size",
    "selftrain.selection_resolution": "selftrain.selection_size",
    "evaluate.grid_resolution": "evaluate.mesh_resolution",
}


def _f(default: Any, *, ge: float | None = None, gt: float | None = None,
       le: float | None = None, lt: float | None = None,
       choices: tuple[Any, ...] | None = None, help: str = "") -> Any:
    """A dataclass field with range / choice metadata checked by :func:`validate`."""
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "help": help}
    if isinstance(default, list | dict):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


# Canonical category names and their ShapeNet synset ids: the 55 ShapeNetCore v2 categories
# plus the procedural bird (ShapeNet has no birds; its id lies outside ShapeNet's range). The
# procedural generator writes the same ids, so a real ShapeNetCore root and the embedded data
# are read by the same loader. Aliases and ids are resolved by ss3d.data.taxonomy.
SYNSETS: dict[str, str] = taxonomy.SYNSETS
# Category keys: validate() rewrites every entry to its canonical name (04256520 -> sofa), so
# that renders.h5, collection files, MLflow params and evaluation all use one spelling.
CATEGORY_KEYS: tuple[str, ...] = (
    "data.categories", "data.heldout_categories", "data.collections", "selftrain.category")


def _canonical_categories(cfg: ExperimentConfig, source: str) -> None:
    """Resolve every category key to canonical names (in place); ConfigError if unknown.

    Accepted: a taxonomy name, alias or synset id, or any 8-digit synset folder of
    ``data.shapenet_root`` (then the id is its own name). Without ``data.shapenet_root``,
    models are generated, so pre-training and held-out categories need a procedural generator.
    Collections and ``selftrain.category`` may be ingested photos: the render stage checks them.
    """
    root = cfg.data.shapenet_root
    folders: list[str] | None = None

    def canonical(key: str, value: str) -> str:
        nonlocal folders
        is_id = taxonomy.is_synset_id(value)
        if folders is None and root and is_id and value.strip() not in taxonomy.NAMES:
            folders = taxonomy.synsets_under(root)  # the disk is read for such ids only
        try:
            return taxonomy.resolve(value, extra_synsets=folders or ())[0]
        except taxonomy.UnknownCategoryError as err:
            hint = ""
            if is_id:
                hint = (f", and data.shapenet_root={root!r} has no folder {value.strip()}"
                        if root else "; a synset outside the taxonomy needs data.shapenet_root "
                        "set to a ShapeNet folder that has it")
            raise ConfigError(f"{key}: {err}{hint} ({source})") from None

    def generated(key: str, value: str) -> str:
        name = canonical(key, value)
        if root:
            return name
        from ss3d.data.procedural import PROCEDURAL_CATEGORIES  # imports config: not at the top

        if name not in PROCEDURAL_CATEGORIES:
            written = "" if value == name else f" ({name})"
            raise ConfigError(
                f"{key}: category {value!r}{written}, synset {SYNSETS[name]}, has no procedural "
                f"generator (those are: {', '.join(PROCEDURAL_CATEGORIES)}) and "
                f"data.shapenet_root is empty: set data.shapenet_root to a ShapeNetCore folder "
                f"that has it ({source})")
        return name

    d = cfg.data
    d.categories = [generated("data.categories", c) for c in d.categories]
    d.heldout_categories = [generated("data.heldout_categories", c)
                            for c in d.heldout_categories]
    d.collections = [canonical("data.collections", c) for c in d.collections]
    cfg.selftrain.category = canonical("selftrain.category", cfg.selftrain.category)


@dataclass
class DataConfig:
    """Where data comes from and goes to, and how much of it."""

    root: str = _f("data/smoke", help="Output folder of every generated or ingested file.")
    shapenet_root: str = _f(
        "", help="A real ShapeNetCore (v1 or v2) folder. Empty: generate procedural models.")
    categories: list[str] = _f(["airplane", "car", "laptop", "trash_bin"],
                               help="Categories used for synthetic pre-training.")
    heldout_categories: list[str] = _f(
        ["chair"], help="Categories never trained on (zero-shot evaluation).")
    models_per_category: int = _f(72, ge=1)
    val_fraction: float = _f(0.1, ge=0.0, lt=1.0)
    test_fraction: float = _f(0.3, ge=0.0, lt=1.0)
    collections: list[str] = _f(["bird", "airplane"],
                                help="Rendered 'photo' collections for self-training.")
    images_per_collection: int = _f(128, ge=1)
    collection_instances: int = _f(48, ge=1, help="Distinct procedural models that a rendered "
                                   "collection's photos show (test images of one model are "
                                   "not independent items).")
    collection_image_size: int = _f(128, ge=16, help="Size of the rendered 'photos' (pixels).")
    cub_root: str = _f("", help="A real CUB-200-2011 folder to ingest (optional).")
    csv: str = _f("", help="A generic CSV (category, rgb, mask[, box]) to ingest (optional).")
    crop_size: int = _f(64, ge=16, help="Side of the square crops stored for collections.")
    crop_margin: float = _f(0.25, ge=0.0, le=1.0, help="Margin around the box, per side "
                              "(0.25: objects fill the crop about as much as in the renders).")
    min_mask_fraction: float = _f(0.005, ge=0.0, lt=1.0,
                                  help="Masks covering less of the image are skipped as tiny.")
    num_workers: int = _f(0, ge=0)


@dataclass
class RenderConfig:
    """Synthetic renders (pyrender) and the shared pinhole camera."""

    image_size: int = _f(64, ge=8)
    views_per_model: int = _f(6, ge=1)
    fov_degrees: float = _f(40.0, gt=1.0, lt=170.0)
    elevation_range: list[float] = _f([-75.0, 75.0])
    distance_range: list[float] = _f([1.7, 2.1])
    supersample: int = _f(2, ge=1, le=8, help="Render at k× size and average (anti-aliasing, "
                          "exact silhouettes).")
    light_intensity: float = _f(4.0, ge=0.0)
    ambient: float = _f(0.35, ge=0.0, le=1.0)
    background: list[float] = _f([0.0, 0.0, 0.0])
    surface_samples: int = _f(4096, ge=16, help="GT surface points per model (evaluation).")
    volume_samples: int = _f(4096, ge=16, help="GT inside/outside samples per model.")
    shard: str = _f("0/1", help="'i/N': render only the i-th of N shards.")


@dataclass
class ModelConfig:
    """Encoder + FiLM-SIREN decoder (README: Pre-training)."""

    encoder: Literal["resnet18", "resnet34"] = _f("resnet18", help="torchvision ResNet "
                                                  "backbone of the image encoder.")
    encoder_size: int = _f(64, ge=32)
    pretrained_weights: str = _f("", help="Local torchvision weights file; never downloaded.")
    latent_dim: int = _f(256, ge=8)
    hidden: int = _f(64, ge=8)
    layers: int = _f(3, ge=1)
    omega_0: float = _f(30.0, gt=0.0)
    density_scale: float = _f(10.0, gt=0.0)
    ray_bounds: Literal["cube", "sphere"] = _f("cube",
                         help="Where samples go: 'cube' = the ray's segment inside the object "
                         "cube (denser samples, same integral); 'sphere' = dist ± object_radius "
                         "(the paper).")
    object_radius: float = _f(0.9, gt=0.0, help="r of the 'sphere' ray bounds.")
    n_samples: int = _f(32, ge=2, help="Samples per ray.")
    fused_layers: bool = _f(True, help="FiLM-SIREN hidden layers as one fused op with a "
                            "hand-written backward (ss3d.fused); false = plain autograd ops "
                            "(the baseline; same parameters and checkpoints).")
    viewpoint_net: bool = _f(True, help="A viewpoint classifier (its own encoder; azimuth "
                             "and elevation bins) trained in pre-training on the input views' "
                             "cameras; self-training can use it as a pose prior "
                             "(selftrain.viewpoint_weight).")


@dataclass
class OptimConfig:
    """Numerics and batching shared by every training stage (each stage's learning rate is in
    its own section)."""

    grad_clip: float = _f(1.0, ge=0.0, help="Gradient-norm clip of every network update; 0 "
                          "disables clipping.")
    batch_size: int = _f(8, ge=1, help="Global batch of every training stage: under torchrun "
                         "each process takes batch_size / processes.")
    device: str = _f("auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'.")
    amp: bool = _f(True, help="Mixed precision: bf16/fp16 on CUDA, bf16 on CPUs with native bf16 "
                    "instructions (AVX-512 BF16, AMX); fp32 elsewhere.")


@dataclass
class PretrainConfig:
    """Synthetic pre-training with known cameras."""

    steps: int = _f(900, ge=1)
    lr: float = _f(1e-3, gt=0.0, help="Adam learning rate (peak of the schedule).")
    weight_decay: float = _f(0.0, ge=0.0)
    schedule: Literal["constant", "cosine"] = _f("cosine",
                       help="Learning rate over the steps: constant, or a short linear warm-up "
                       "then cosine decay to 5% of lr.")
    views_per_object: int = _f(3, ge=1, help="Supervision views per object and step.")
    rays_per_view: int = _f(256, ge=1)
    foreground_fraction: float = _f(0.1, ge=0.0, le=1.0,
                                    help="Share of sampled rays drawn from the object mask.")
    # Both targets are exact here (rendered views, known cameras), unlike self-training's
    # photos, which weight the mask lower (selftrain.mask_weight / rgb_weight) because a
    # searched camera explains a silhouette more loosely than colours.
    mask_weight: float = _f(0.5, ge=0.0, help="Weight of the mask MSE in the pre-training loss.")
    rgb_weight: float = _f(0.5, ge=0.0, help="Weight of the colour MSE (black background) in "
                           "that loss.")
    val_every: int = _f(100, ge=1)
    val_models: int = _f(16, ge=1, help="Held-out models used for validation.")
    val_views: int = _f(2, ge=1, help="Novel views per held-out model.")
    checkpoint_every: int = _f(100, ge=1)
    viewpoint_batch: int = _f(16, ge=1, help="Rendered views per step that train the viewpoint "
                              "network (model.viewpoint_net), beside the reconstruction "
                              "batch.")


@dataclass
class SelftrainConfig:
    """Self-training on one category's image collection with multi-hypothesis cameras."""

    category: str = _f("bird", help="The collection (data.collections entry) to train on.")
    hypotheses: int = _f(8, ge=1, help="Camera hypotheses per image (H).")
    camera_steps: int = _f(15, ge=0, help="Adam steps of the camera search per batch, network "
                           "frozen.")
    epochs: int = _f(4, ge=1)
    phase_a_epochs: int = _f(2, ge=0, help="Leading epochs that train cameras only (phase A); "
                             "the rest also train the network (phase B).")
    # Each evaluation scores every hypothesis of every image and renders every image: on the
    # embedded run ~25 s, as much as an epoch of training. Every 2nd epoch still shows the
    # start, the end of the cameras-only phase (with the default 2 of 4) and the end.
    eval_every: int = _f(2, ge=1, help="Epochs between evaluations of the chosen cameras "
                         "(pose accuracy, mask IoU, figures); the start and the last epoch are "
                         "always evaluated.")
    # 1e-4 lowered the mask IoU of the chosen cameras from 0.54 to 0.44 within one phase-B
    # epoch on the embedded bird (Adam's first steps move every weight by ~lr); 1e-5 keeps it.
    lr: float = _f(1e-5, gt=0.0, help="Network learning rate in phase B (fine-tuning).")
    # 0.05 (3° of azimuth per Adam step) let noisy few-ray gradients walk good poses away
    camera_lr: float = _f(0.02, gt=0.0, help="Adam lr of the raw camera parameters "
                          "(azimuth: 60× this, in degrees).")
    max_azimuth_offset: float = _f(0.0, ge=0.0, le=180.0, help="Bounded camera search: each "
                                   "hypothesis' azimuth stays within this many degrees of "
                                   "where it started (U-CMR bounds offsets to ±30°); 0 = "
                                   "unbounded (the paper).")
    camera_rays: int = _f(64, ge=1, help="Rays per image and hypothesis in the camera search.")
    camera_samples: int = _f(16, ge=2, help="Samples per ray in the camera search.")
    selection_size: int = _f(32, ge=2, help="Side (pixels) of the downsampled images that "
                             "hypotheses are compared on when choosing (every pixel a ray).")
    select: Literal["loss", "weights"] = _f("loss",
                     help="Chosen pose: lowest low-noise loss, or highest weight (paper).")
    # Per-hypothesis losses differ by ~0.01: at 500 the weights stayed uniform (entropy ln 8)
    # through the whole embedded run and phase B trained the network on all 8 poses at once.
    logit_lr: float = _f(5000.0, gt=0.0, help="SGD step of the hypothesis logits (per image).")
    init: Literal["grid", "spread"] = _f("grid",
                   help="Initial hypotheses: 'spread' = one per azimuth sector with random "
                   "elevation and distance (the paper); 'grid' = in each sector, the pose of a "
                   "coarse grid that the pre-trained model explains best.")
    grid_azimuths: int = _f(24, ge=1, help="Azimuths of the initial pose grid.")
    grid_elevations: list[float] = _f([-20.0, 10.0, 40.0])
    grid_distances: list[float] = _f([1.2, 1.7, 2.3])
    score_size: int = _f(16, ge=2, help="Side (pixels) of the downsampled images that the "
                         "pose grid and each step's logit update are scored on (every pixel a "
                         "ray).")
    grid_samples: int = _f(8, ge=2, help="Samples per ray when scoring the grid.")
    elevation_init: list[float] = _f([-30.0, 60.0], help="Initial elevations (uniform).")
    # Crops have a 0.25 margin, so the object's projected half-extent r fills 2/3 of the crop:
    # at the 40° field of view that is a distance of about 4.1 r, i.e. 1.0–2.9 for r in
    # 0.25–0.7 (measured on the embedded collections: 0.95–2.15).
    distance_range: list[float] = _f([1.0, 3.0], help="Allowed camera distances.")
    rays_per_image: int = _f(256, ge=1)
    ablation: bool = _f(True, help="Notebook 02 also runs H = 1 with the same budget on the "
                        "first collection (the pipeline's multi-hypothesis check).")
    mask_weight: float = _f(0.2, ge=0.0, help="Weight of the mask MSE in self-training's one "
                            "loss (search, scores, network).")
    rgb_weight: float = _f(0.8, ge=0.0, help="Weight of the colour MSE in that loss.")
    network_target: Literal["weighted", "chosen"] = _f("weighted",
                             help="What phase B trains the network on: every hypothesis "
                             "weighted by its softmax weight (the paper), or only each image's "
                             "best-scoring hypothesis of the step (one render per image).")
    gate_margin: float = _f(0.0, ge=0.0, help="Phase B leaves out images whose best hypothesis "
                            "does not score at least this fraction below the runner-up "
                            "(ambiguous poses); 0 keeps every image.")
    # 0.02: on the embedded airplanes (seen in pre-training) the chosen pose's acc@30 went
    # from 0.33 to 0.62 at the end of self-training (0.005: 0.59); on the birds (never seen),
    # where the viewpoint network is not better than chance, it changed nothing measurable.
    viewpoint_weight: float = _f(0.02, ge=0.0, help="Pose prior: each hypothesis' score (the "
                                 "grid start, the logits, the choice) adds this times "
                                 "-log p(azimuth, elevation) of the pre-trained viewpoint "
                                 "network (model.viewpoint_net); 0 = off (the paper). Needs a "
                                 "pre-trained model with a viewpoint network.")
    rehearsal: float = _f(0.0, ge=0.0, help="Weight of a synthetic pre-training batch (known "
                          "cameras) added to every phase-B step so the prior is not forgotten; "
                          "0 = off.")


@dataclass
class DistillConfig:
    """Distilling the category teachers into one student."""

    mode: Literal["point", "ray"] = _f("point", help="What the student matches: the teachers' "
                                       "colour and density at random points, or their "
                                       "renders along random rays.")
    steps: int = _f(200, ge=1)
    p_synthetic: float = _f(0.3, ge=0.0, le=1.0)
    # On the embedded run, the airplane student followed its photo teacher on the synthetic
    # airplanes too (0.96 of that teacher's F@0.1, 0.92 of the synthetic model's); with this
    # on, its F@0.1 on the airplane photos rose from 0.92 to 0.96 of their teacher's (lr 1e-4,
    # 400 steps; 0.94 -> 0.95 at lr 3e-5, 200 steps).
    renders_to_specialist: bool = _f(True, help="Synthetic renders of a category that has a "
                                     "self-trained teacher (a collection of that category) "
                                     "are labelled with that teacher instead of the synthetic "
                                     "model, so that one category never has two teachers.")
    points_per_image: int = _f(4096, ge=1)
    point_cube: float = _f(0.6, gt=0.0, help="Points are drawn in [-c, c]^3.")
    # 1e-4 drifted from every teacher (student/teacher F@0.1 0.87-0.91 on the airplanes and
    # the birds, mask agreement with the airplane teacher 0.74); 3e-5: 0.94-0.97, 0.86.
    lr: float = _f(3e-5, gt=0.0, help="Student learning rate (it starts from the synthetic "
                   "model, so this is fine-tuning).")
    density_weight: float = _f(1.0, ge=0.0, help="Weight of the relu(density) MSE (point mode; "
                               "density in units of model.density_scale).")
    rays_per_image: int = _f(256, ge=1, help="Rays per image and step (ray mode).")
    teachers_on_device: bool = _f(True, help="Keep every teacher on the device; False moves "
                                  "each one there only for its forward (saves GPU memory).")
    augment: bool = _f(False, help="Colour jitter and blur on the student's input only.")
    checkpoint_every: int = _f(100, ge=1)
    agreement_images: int = _f(4, ge=1, help="Images per category for the student-teacher "
                               "agreement (mask IoU from random poses).")


@dataclass
class EvalConfig:
    """3D evaluation, baselines, figures and turntables."""

    mesh_resolution: int = _f(48, ge=8, help="Voxels per side of the marching-cubes grid.")
    density_threshold: float = _f(5.0, ge=0.0, help="Density of the extracted surface (and of "
                                  "the volumetric IoU's inside), unless peak_fraction > 0.")
    peak_fraction: float = _f(0.0, ge=0.0, lt=1.0, help="If > 0: extract every shape at this "
                              "fraction of its own peak density on the grid instead of at "
                              "density_threshold (needs no re-tuning for another "
                              "model.density_scale; 0.6 matched level 5 on the validation "
                              "split).")
    mesh_colours: Literal["image", "field"] = _f("image", help="Colours of the meshes in "
                                                 "figures, turntables and `ss3d reconstruct`: "
                                                 "'image' paints the input image onto the "
                                                 "side its (estimated) camera sees, 'field' "
                                                 "= the colour head only (ss3d.eval.texture).")
    surface_points: int = _f(4096, ge=16)
    fscore_thresholds: list[float] = _f([0.02, 0.05, 0.1], help="F-score distance thresholds "
                                        "(fractions of the cube side).")
    coarse_factor: int = _f(2, ge=1, le=8, help="Coarse-to-fine mesh extraction: query every "
                            "k-th grid point, then full resolution only near the surface.")
    models_per_category: int = _f(20, ge=1, help="Held-out synthetic models per category.")
    collection_images: int = _f(16, ge=0, help="Test images per collection with 3D ground "
                                "truth.")
    novel_views: int = _f(2, ge=1, help="Novel views per synthetic model (mask IoU, PSNR).")
    figure_size: int = _f(96, ge=16, help="Pixels of the mesh renders in figures and GIFs.")
    turntable_frames: int = _f(24, ge=4)


@dataclass
class ExperimentConfig:
    """The root config: experiment identity plus one section per concern and per stage."""

    name: str = _f("smoke", help="Experiment name; also the MLflow experiment.")
    seed: int = _f(0, ge=0)
    output_dir: str = _f("outputs", help="Checkpoints and executed notebooks go to "
                         "<output_dir>/<name>/ (relative paths: from the repo root).")
    data: DataConfig = field(default_factory=DataConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    selftrain: SelftrainConfig = field(default_factory=SelftrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    evaluate: EvalConfig = field(default_factory=EvalConfig)


# ----------------------------------------------------------------------------------------------
# Type checking and coercion
# ----------------------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Return ``value`` as type ``tp`` or raise a ConfigError naming key, value and source."""
    origin = typing.get_origin(tp)

    def bad() -> ConfigError:
        return ConfigError(
            f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r} ({source})")

    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, tuple):
            value = list(value)
        if isinstance(value, str):  # "car,chair" from --set or papermill -p
            value = [v.strip() for v in value.split(",") if v.strip()]
            if item_tp in (int, float):
                try:
                    value = [item_tp(v) for v in value]
                except ValueError:
                    raise bad() from None
        if not isinstance(value, list):
            raise bad()
        return [_coerce(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key}: value {value!r} is not one of {list(allowed)} ({source})")
        return value
    if origin in (typing.Union, types.UnionType):
        raise bad()  # no unions in our configs
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 (PyYAML) reads "5e-4" or "1e3" (no dot) as a string: accept it here
            try:
                return float(value)
            except ValueError:
                raise bad() from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad()
        return float(value)
    if tp is str:
        # YAML 1.1 reads an unquoted synset id (04256520) as an octal or decimal number, and so
        # does papermill's -p: give category keys their synset back
        if (key.split("[")[0] in CATEGORY_KEYS and isinstance(value, int)
                and not isinstance(value, bool)
                and (synset := taxonomy.synset_from_yaml_int(value)) is not None):
            return synset
        if not isinstance(value, str):
            raise bad()
        return value
    raise bad()


def _check_range(value: Any, meta: Mapping[str, Any], key: str, source: str) -> None:
    def fail(rule: str) -> None:
        raise ConfigError(f"{key}: value {value!r} out of range, must be {rule} ({source})")

    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ConfigError(
            f"{key}: value {value!r} is not one of {list(meta['choices'])} ({source})")
    if meta.get("ge") is not None and not value >= meta["ge"]:
        fail(f">= {meta['ge']}")
    if meta.get("gt") is not None and not value > meta["gt"]:
        fail(f"> {meta['gt']}")
    if meta.get("le") is not None and not value <= meta["le"]:
        fail(f"<= {meta['le']}")
    if meta.get("lt") is not None and not value < meta["lt"]:
        fail(f"< {meta['lt']}")


def _resolved_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _set_field(obj: Any, key_parts: list[str], value: Any, full_key: str, source: str) -> None:
    hints = _resolved_hints(type(obj))
    name = key_parts[0]
    known = [f.name for f in dataclasses.fields(obj)]
    if full_key in RENAMED:
        raise ConfigError(f"'{full_key}' was renamed '{RENAMED[full_key]}' ({source})")
    if name not in known:
        prefix = full_key[: len(full_key) - len(".".join(key_parts))]
        raise ConfigError(
            f"unknown key '{full_key}' ({source}); known keys under "
            f"'{prefix.rstrip('.') or '<root>'}': {', '.join(known)}")
    current = getattr(obj, name)
    if dataclasses.is_dataclass(current):
        if len(key_parts) == 1:
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"{full_key}: expected a mapping of keys, got {type(value).__name__} "
                    f"{value!r} ({source})")
            for sub_key, sub_value in value.items():
                _set_field(current, [str(sub_key)], sub_value, f"{full_key}.{sub_key}", source)
            return
        _set_field(current, key_parts[1:], value, full_key, source)
        return
    if len(key_parts) > 1:
        raise ConfigError(f"unknown key '{full_key}' ({source}): '{name}' has no sub-keys")
    meta = next(f.metadata for f in dataclasses.fields(obj) if f.name == name)
    coerced = _coerce(value, hints[name], full_key, source)
    _check_range(coerced, meta, full_key, source)
    setattr(obj, name, coerced)


def apply_overrides(cfg: ExperimentConfig, overrides: Mapping[str, Any],
                    source: str = "overrides") -> ExperimentConfig:
    """Apply ``{"section.key": value}`` or nested ``{"section": {...}}`` overrides in place."""
    for key, value in overrides.items():
        _set_field(cfg, str(key).split("."), value, str(key), source)
    validate(cfg, source)
    return cfg


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _numbers(cfg: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """``(dotted key, value)`` of every float in the config, list items included."""
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            yield from _numbers(value, f"{key}.")
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, float):
                yield key, item


def validate(cfg: ExperimentConfig, source: str = "config") -> None:
    """Cross-field checks that a single field's metadata cannot express."""
    for key, value in _numbers(cfg):
        if not math.isfinite(value):
            raise ConfigError(f"{key}: value {value!r} is not a finite number ({source})")
    if not _DEVICE.fullmatch(cfg.optim.device):
        raise ConfigError(f"optim.device: value {cfg.optim.device!r} is not 'auto', 'cpu', "
                          f"'cuda' or 'cuda:N' ({source})")
    r = cfg.render
    for key, pair in (("render.elevation_range", r.elevation_range),
                      ("render.distance_range", r.distance_range)):
        if len(pair) != 2 or pair[0] > pair[1]:
            raise ConfigError(f"{key}: value {pair!r} must be [low, high] with low <= high "
                              f"({source})")
    if not (-90.0 < r.elevation_range[0] and r.elevation_range[1] < 90.0):
        raise ConfigError(f"render.elevation_range: value {r.elevation_range!r} must lie "
                          f"strictly inside (-90, 90) ({source})")
    if r.distance_range[0] <= cfg.model.object_radius:
        raise ConfigError(
            f"render.distance_range: value {r.distance_range!r} must stay beyond "
            f"model.object_radius={cfg.model.object_radius} (the camera would sit inside the "
            f"sampled volume) ({source})")
    if len(r.background) != 3 or not all(0.0 <= c <= 1.0 for c in r.background):
        raise ConfigError(f"render.background: value {r.background!r} must be 3 values in "
                          f"[0, 1] ({source})")
    if cfg.data.val_fraction + cfg.data.test_fraction >= 1.0:
        raise ConfigError(
            f"data.val_fraction + data.test_fraction: values {cfg.data.val_fraction} + "
            f"{cfg.data.test_fraction} leave no training models ({source})")
    _canonical_categories(cfg, source)
    try:
        parse_shard(r.shard)
    except ValueError as err:
        raise ConfigError(f"render.shard: {err} ({source})") from None
    s = cfg.selftrain
    if len(s.distance_range) != 2 or not (
            cfg.model.object_radius < s.distance_range[0] < s.distance_range[1]):
        raise ConfigError(
            f"selftrain.distance_range: value {s.distance_range!r} must be [low, high] with "
            f"model.object_radius={cfg.model.object_radius} < low < high ({source})")
    outside = [d for d in s.grid_distances
               if not s.distance_range[0] < d < s.distance_range[1]]
    if outside or not s.grid_distances:
        raise ConfigError(f"selftrain.grid_distances: values {outside or s.grid_distances!r} "
                          f"must be non-empty and lie inside selftrain.distance_range="
                          f"{s.distance_range!r} ({source})")
    if not s.grid_elevations or not all(-85.0 < e < 85.0 for e in s.grid_elevations):
        raise ConfigError(f"selftrain.grid_elevations: value {s.grid_elevations!r} must be "
                          f"non-empty and inside (-85, 85) ({source})")
    if cfg.selftrain.phase_a_epochs > cfg.selftrain.epochs:
        raise ConfigError(
            f"selftrain.phase_a_epochs: value {cfg.selftrain.phase_a_epochs} exceeds "
            f"selftrain.epochs={cfg.selftrain.epochs} ({source})")


def describe_fields(cfg: Any | None = None, prefix: str = "") -> list[dict[str, str]]:
    """Every config key with its type, default (or ``cfg``'s value) and documentation, in
    declaration order; sections as rows with an empty type. ``ss3d config --fields`` prints it.
    """
    cfg = cfg if cfg is not None else ExperimentConfig()
    hints = _resolved_hints(type(cfg))
    rows: list[dict[str, str]] = []
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            doc = (type(value).__doc__ or "").strip().split("\n\n")[0]
            rows.append({"key": key, "type": "", "value": "", "help": " ".join(doc.split())})
            rows += describe_fields(value, f"{key}.")
            continue
        meta = f.metadata
        limits = [f"{op} {meta[name]}" for name, op in
                  (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
                  if meta.get(name) is not None]
        help_text = meta.get("help", "") + (f" ({', '.join(limits)})" if limits else "")
        rows.append({"key": key, "type": _type_name(hints[f.name]), "value": json.dumps(value),
                     "help": help_text.strip()})
    return rows


def parse_shard(spec: str) -> tuple[int, int]:
    """Parse ``'i/N'`` into ``(i, N)`` with ``0 <= i < N``."""
    try:
        index_text, count_text = spec.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ValueError(f"value {spec!r} is not of the form 'i/N'") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"value {spec!r} needs 0 <= i < N")
    return index, count


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------
def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty; an experiment file sets at least "
                          "`name:` (an empty one would run as the default 'smoke' experiment "
                          "and write into its folders)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got "
                          f"{type(data).__name__}")
    return data


def load_config(path: str | Path | None = None,
                overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Defaults, then the YAML file (if any), then dotted overrides; validated throughout."""
    cfg = ExperimentConfig()
    if path is not None and str(path) != "":
        path = Path(path)
        apply_overrides(cfg, _read_yaml(path), source=str(path))
    if overrides:
        apply_overrides(cfg, overrides, source="overrides")
    validate(cfg)
    return cfg


def parse_set_args(items: list[str] | None) -> dict[str, Any]:
    """``["model.hidden=128", "data.categories=[car, chair]"]`` → dict; values parsed as YAML."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text) if text != "" else ""
        except yaml.YAMLError:
            value = text
        out[key.strip()] = value
    return out


def format_set_args(overrides: Mapping[str, Any]) -> list[str]:
    """The inverse of :func:`parse_set_args`: ``["--set", "key=value", ...]`` for a command line
    (lists written in YAML flow style, which the parser reads back)."""
    args: list[str] = []
    for key, value in overrides.items():
        text = json.dumps(value) if isinstance(value, list | dict) else str(value)
        args += ["--set", f"{key}={text}"]
    return args


def config_from_namespace(namespace: Mapping[str, Any], experiment_file: str = "",
                          overrides: Mapping[str, Any] | None = None,
                          parameters: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Build the config inside a notebook from its (papermill-injected) parameters.

    ``papermill -f experiments/x.yaml`` injects the YAML's top-level keys as variables: the
    section dicts (``data = {...}``) and root scalars (``name``, ``seed``). They are applied on
    top of the defaults and ``experiment_file`` (if given), then ``overrides`` (dotted keys,
    as ``ss3d pipeline --set`` passes them), then ``parameters``: the notebook's convenience
    parameters by dotted key (``{"render.image_size": image_size}``), where ``None`` means
    "not set" and leaves the value of ``overrides`` or the experiment in place.
    """
    cfg = load_config(experiment_file or None)
    injected: dict[str, Any] = {}
    for f in dataclasses.fields(ExperimentConfig):
        if f.name in namespace and namespace[f.name] not in (None, {}):
            injected[f.name] = namespace[f.name]
    if injected:
        apply_overrides(cfg, injected, source="notebook parameters")
    if overrides:
        apply_overrides(cfg, {k: v for k, v in overrides.items() if v is not None},
                        source="notebook overrides")
    given = {k: v for k, v in (parameters or {}).items() if v is not None}
    if given:
        apply_overrides(cfg, given, source="notebook parameters")
    return cfg


# ----------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------
def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain-dict form (YAML-serialisable; what checkpoints store)."""
    return dataclasses.asdict(cfg)


def from_dict(data: Mapping[str, Any], source: str = "checkpoint") -> ExperimentConfig:
    """Rebuild a config from :func:`to_dict` output (validated)."""
    cfg = ExperimentConfig()
    apply_overrides(cfg, data, source=source)
    return cfg


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """``{"model.hidden": 64, "data.categories": "airplane,car", ...}`` for MLflow params."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(flatten(value, prefix=f"{key}."))
        elif isinstance(value, list):
            out[key] = ",".join(str(v) for v in value)
        else:
            out[key] = value
    return out


def dump_yaml(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
