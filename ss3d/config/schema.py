"""The experiment config's schema: one dataclass per section, defaults and field metadata.

Every field is declared with :func:`_f`: its default (the embedded CPU run,
``experiments/smoke.yaml``), its range or choices, and a help text that ``ss3d config
--fields`` prints. Reading, checking and writing configs is :mod:`ss3d.config.loading`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

# the names of ss3d.data.appearance.APPEARANCE_SETS (a test keeps them equal; the config does not
# import the data package)
APPEARANCE_CHOICES = ("plain", "photo", "heldout")

__all__ = ["DataConfig", "DistillConfig", "EvalConfig", "ExperimentConfig", "ModelConfig",
           "OptimConfig", "PretrainConfig", "RenderConfig", "SelftrainConfig"]


def _f(default: Any, *, ge: float | None = None, gt: float | None = None,
       le: float | None = None, lt: float | None = None,
       choices: tuple[Any, ...] | None = None, help: str = "") -> Any:
    """A dataclass field with range / choice metadata, checked by :mod:`ss3d.config.loading`."""
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "help": help}
    if isinstance(default, list | dict):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    """Where data comes from and goes to, and how much of it."""

    root: str = _f("data/smoke", help="Output folder of every generated or ingested file.")
    shapenet_root: str = _f(
        "", help="A real ShapeNetCore (v1 or v2) folder. Empty: generate procedural models.")
    categories: list[str] = _f(
        ["airplane", "car", "laptop", "trash_bin", "bench", "sofa", "table", "cabinet",
         "bookshelf", "display", "lamp", "loudspeaker", "telephone", "bottle", "mug", "bowl",
         "bed", "rifle", "watercraft", "motorbike"],
        help="Categories used for synthetic pre-training.")
    heldout_categories: list[str] = _f(
        ["chair", "fish", "guitar"], help="Categories never trained on (zero-shot evaluation).")
    models_per_category: int = _f(24, ge=1)
    val_fraction: float = _f(0.1, ge=0.0, lt=1.0)
    test_fraction: float = _f(0.3, ge=0.0, lt=1.0)
    collections: list[str] = _f(["bird", "quadruped", "airplane"],
                                help="Rendered 'photo' collections for self-training.")
    images_per_collection: int = _f(128, ge=1)
    collection_instances: int = _f(48, ge=1, help="Distinct procedural models that a rendered "
                                   "collection's photos show (test images of one model are "
                                   "not independent items).")
    collection_image_size: int = _f(128, ge=16, help="Size of the rendered 'photos' (pixels).")
    collection_appearance: str = _f(
        "plain", choices=APPEARANCE_CHOICES,
        help="Appearance set of the rendered collections (ss3d.data.appearance): 'plain' part "
             "colours and white light; 'photo' procedural textures, materials, coloured key "
             "lights and camera nuisances; 'heldout' other textures and lights, never trained "
             "on (for transfer).")
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
    appearance: str = _f("plain", choices=APPEARANCE_CHOICES,
                         help="Appearance set of the pre-training renders (as "
                              "data.collection_appearance); textures are drawn per model, "
                              "lights and camera nuisances per view.")
    ambient: float = _f(0.35, ge=0.0, le=1.0)
    background: list[float] = _f([0.0, 0.0, 0.0])
    surface_samples: int = _f(4096, ge=16, help="GT surface points per model (evaluation).")
    volume_samples: int = _f(4096, ge=16, help="GT inside/outside samples per model.")
    shard: str = _f("0/1", help="'i/N': render only the i-th of N shards.")
    workers: int = _f(2, ge=1, help="Processes that render at once on this machine (each a "
                      "shard, merged in model order: the same file as one process writes).")


@dataclass
class ModelConfig:
    """Encoder + FiLM-SIREN decoder (README: Pre-training)."""

    encoder: Literal["resnet18", "resnet34"] = _f("resnet18", help="ResNet backbone of "
                                                  "the image encoder (torchvision's, in "
                                                  "ss3d.resnet).")
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
    decoder: Literal["film_siren", "triplane"] = _f(
        "film_siren", help="The field decoder: 'film_siren' (the paper: the latent modulates a "
        "sine MLP of model.layers x model.hidden) or 'triplane' (the latent generates three "
        "feature planes of model.plane_channels x model.plane_resolution^2, read by an MLP of "
        "model.layers x model.hidden).")
    plane_channels: int = _f(16, ge=1, help="Feature channels of each tri-plane.")
    plane_resolution: int = _f(32, ge=4, help="Side of each tri-plane (a power of two).")
    symmetric: bool = _f(False, help="Bilateral symmetry of the canonical field about the Y-Z "
                         "plane (ShapeNetCore v2's plane of symmetry): the decoder reads "
                         "(|x|, y, z), so one side's shape and colours are learned for both. Any "
                         "decoder; checkpoints written before this key are not symmetric.")
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
    edge_fraction: float = _f(0.0, ge=0.0, le=1.0,
                              help="Share of sampled rays drawn from the silhouette's edge "
                              "(where thin parts are); foreground_fraction + edge_fraction "
                              "must be at most 1.")
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
    viewpoint_lr: float = _f(3e-4, gt=0.0, help="Adam learning rate (peak of the schedule) of "
                             "the viewpoint network, which has its own optimiser; lower than "
                             "the reconstruction's lr (docs/results.md: the viewpoint network "
                             "on the world).")
    viewpoint_crop: bool = _f(True, help="The viewpoint network trains (and is validated) on "
                              "each input view cropped around its object's box with "
                              "data.crop_margin, as the collection photos it reads in "
                              "self-training are; the reconstruction's views stay whole.")


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
    # Each evaluation scores every hypothesis of every image and renders every image, which
    # costs about as much as an epoch of training. Every 2nd epoch still shows the start, the
    # end of the cameras-only phase (with the default 2 of 4) and the end.
    eval_every: int = _f(2, ge=1, help="Epochs between evaluations of the chosen cameras "
                         "(pose accuracy, mask IoU, figures); the start and the last epoch are "
                         "always evaluated.")
    # 1e-4 lowered the mask IoU of the chosen cameras within one phase-B epoch on the embedded
    # bird (Adam's first steps move every weight by ~lr); 1e-5 keeps it.
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
    # Per-hypothesis losses differ very little, so the step must be large: at 500 the weights
    # stayed uniform through the whole embedded run and phase B trained the network on all 8
    # poses at once.
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
    # 0.25–0.7 (the embedded collections' distances lie inside that range).
    distance_range: list[float] = _f([1.0, 3.0], help="Allowed camera distances.")
    rays_per_image: int = _f(256, ge=1)
    offsets: bool = _f(False, help="Each hypothesis also carries a principal-point offset "
                       "(where the object's origin falls in a photo cropped around its box), "
                       "started where the render's box meets the photo's and searched with the "
                       "rest of the camera; false = cameras centred on the origin (the paper).")
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
    # 0.02: on the embedded airplanes (seen in pre-training) the prior made the chosen poses
    # clearly more accurate by the end of self-training (a quarter of it helped less); on the
    # birds (never seen), where the viewpoint network is not better than chance, it changed
    # nothing measurable.
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
    # Off since the world became the default: a self-trained specialist can be worse than the
    # pre-trained model on its category's renders, and the rule hands that loss to the student
    # (docs/results.md, Distillation).
    renders_to_specialist: bool = _f(False, help="Synthetic renders of a category that has a "
                                     "self-trained teacher (a collection of that category) "
                                     "are labelled with that teacher instead of the synthetic "
                                     "model, so that one category never has two teachers.")
    points_per_image: int = _f(4096, ge=1)
    point_cube: float = _f(0.6, gt=0.0, help="Points are drawn in [-c, c]^3.")
    # 1e-4 drifted away from every teacher (shapes and masks on the airplanes and the birds);
    # 3e-5 stays closer to them.
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
    peak_fraction: float = _f(0.7, ge=0.0, lt=1.0, help="If > 0: extract every shape at this "
                              "fraction of its own peak density on the grid instead of at "
                              "density_threshold (needs no re-tuning for another "
                              "model.density_scale); the level of `ss3d reconstruct`, and of "
                              "the evaluation when surface_levels is empty.")
    surface_levels: list[float] = _f(
        [0.4, 0.5, 0.6, 0.7, 0.8],
        help="If not empty: each pre-trained and distilled model is read at the peak fraction "
        "among these whose meshes score the highest mean F@0.05 over the val split's "
        "seen-category models (never the test split); self-trained models take their prior's "
        "level. Empty, or no val models: every model at peak_fraction (ss3d.eval.level).")
    # Self-training starts from the prior at a small lr and keeps its frame; the rotation G
    # that the chosen poses give against the hidden cameras is close to arbitrary while the
    # poses are near chance (docs/results.md: the frame the poses gave decided the scores).
    learned_frame: Literal["prior", "poses"] = _f("prior", help="Frame in which models with "
                                                  "a frame from their poses (self-trained; the "
                                                  "distilled model on collections) are "
                                                  "scored: 'prior' = as they stand, the frame "
                                                  "the pre-trained model is scored in; 'poses' "
                                                  "= turned by G, the alignment their chosen "
                                                  "poses give against the hidden cameras. Each "
                                                  "row also carries the other reading (the "
                                                  "frame check).")
    mesh_colours: Literal["image", "field"] = _f("image", help="Colours of the meshes in "
                                                 "figures, turntables and `ss3d reconstruct`: "
                                                 "'image' paints the input image onto the "
                                                 "side its (estimated) camera sees, 'field' "
                                                 "= the colour head only (ss3d.eval.texture).")
    camera_refine: int = _f(32, ge=0, help="'image' colours: the input's camera is searched "
                            "on self-training's pose grid coarse to fine, every camera at half "
                            "selftrain.score_size and this many best at full size; 0 = every "
                            "camera at full size.")
    surface_points: int = _f(4096, ge=16)
    fscore_thresholds: list[float] = _f([0.02, 0.05, 0.1], help="F-score distance thresholds "
                                        "(fractions of the cube side).")
    coarse_factor: int = _f(2, ge=1, le=8, help="Coarse-to-fine mesh extraction: query every "
                            "k-th grid point, then full resolution only near the surface.")
    synthetic: bool = _f(True, help="Evaluate on the held-out synthetic models; False: on the "
                         "collections' test images only (a sweep of self-training needs no "
                         "more).")
    workers: int = _f(2, ge=1, help="Processes that evaluate items, and then draw figures "
                      "and turntables, at once on a CPU (the same rows and pixels as one "
                      "process's; ignored on a GPU and under torchrun, where the ranks share "
                      "the items).")
    models_per_category: int = _f(6, ge=1, help="Held-out synthetic models per category.")
    collection_images: int = _f(16, ge=0, help="Test images per collection with 3D ground "
                                "truth.")
    novel_views: int = _f(2, ge=1, help="Novel views per synthetic model (mask IoU, PSNR).")
    input_view: bool = _f(True, help="Input-view fidelity of every model on every item: its "
                          "reconstruction rendered from the input's camera (a render's known "
                          "one; a photo's searched on the pose grid) against the input's mask "
                          "and colours (input_mask_iou, input_psnr).")
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
