"""What can self-training's pose machinery do when the shape is right? (issue: cameras that see
what the photo sees)

Self-training's poses are read through two things at once: the prior's shapes and the search
and choice that use them. This benchmark takes the shapes out of the question. Every photo of a
rendered collection is explained by its own hidden ground-truth mesh, turned into a density and
colour field (a voxelised winding-number occupancy and the nearest surface colour, read by
trilinear interpolation) and rendered through the same volume renderer; the pose grid, the
camera search and the choice then run exactly as in self-training's cameras-only phase
(:func:`ss3d.stages.selftrain_loops.initialise_from_grid`, ``selftrain_step`` with phase A,
``evaluate_epoch``). The ground truth is used only here, as the shape a perfect prior would
give; the cameras are never told.

Per collection and camera model (centred cameras, and ``selftrain.offsets``) it reports the
chosen pose's acc@30 (full and about the vertical), best-of-H and the chosen renders' mask IoU,
after the grid start and after the cameras-only epochs; with ``--checkpoint`` the same with the
network's own shapes beside them.

It also makes the separability reading repeatable: each photo's shape rendered at the photo's
true rotation and at seven turns of 45° about the vertical (each at its best distance, its box
moved to the photo's box), the mask IoU of each, and the share of photos whose true rotation
ranks first (chance: 1 in 8). "Can a pose be found from these shapes" becomes a number.

    python benchmarks/pose_ceiling.py --config experiments/smoke.yaml --images 48 \\
        [--checkpoint outputs/smoke/pretrain/last.pt ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pytorch3d.ops import knn_points
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ss3d.cameras import Intrinsics
from ss3d.config import ExperimentConfig, load_config
from ss3d.config.loading import parse_set_args
from ss3d.data.datasets import ImageCollection, read_hidden_cameras
from ss3d.data.shapenet import index_shapenet, load_model
from ss3d.engine import Runtime
from ss3d.eval.mesh import GRID_HALF  # the voxel grids cover [-0.55, 0.55]^3
from ss3d.eval.mesh import _grid_points as mesh_grid_points
from ss3d.geometry import merge_meshes, occupancy
from ss3d.hypotheses import CameraBank
from ss3d.image_metrics import mask_iou
from ss3d.scoring import box_centres, shift_images
from ss3d.stages.data import build_rendered_collection, data_paths
from ss3d.stages.selftrain_loops import (
    Collection,
    evaluate_epoch,
    initialise_from_grid,
    selftrain_step,
)
from ss3d.volume import render_network

DENSITY = 200.0  # inside the mesh: opaque within a few samples


# ----------------------------------------------------------------------------------------------
# Ground-truth meshes as fields
# ----------------------------------------------------------------------------------------------
def _grid_points(resolution: int) -> torch.Tensor:
    """``(D, D, D, 3)`` cell centres over the evaluation's mesh grid, ordered ``(z, y, x)`` as
    ``grid_sample`` reads them (:mod:`ss3d.eval.mesh`'s own grid)."""
    return mesh_grid_points(resolution, GRID_HALF, torch.device("cpu"))


def mesh_grids(parts: list, resolution: int = 48, colour_resolution: int = 24
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """A mesh (its textured parts) as ``occupancy (1, D, D, D)`` in [0, 1] and ``colour
    (3, C, C, C)``: inside by the winding number (:func:`ss3d.geometry.occupancy`), colour of
    the nearest vertex (textures read as vertex colours), both in ``(z, y, x)`` order."""
    points = _grid_points(resolution).reshape(-1, 3)
    inside = occupancy(points.numpy(), merge_meshes(parts))
    density = torch.from_numpy(inside).float().reshape(1, *(resolution,) * 3)
    vertices, colours = [], []
    for part in parts:
        visual = part.visual
        rgba = (visual.to_color().vertex_colors if hasattr(visual, "to_color")
                else visual.vertex_colors)
        vertices.append(np.asarray(part.vertices, np.float32))
        colours.append(np.asarray(rgba, np.float32)[:, :3] / 255.0)
    vertices_t = torch.from_numpy(np.concatenate(vertices))
    colours_t = torch.from_numpy(np.concatenate(colours))
    # PyTorch3D's KNN, not a hand-written nearest-neighbour search
    queries = _grid_points(colour_resolution).reshape(1, -1, 3)
    nearest = knn_points(queries, vertices_t[None], K=1).idx[0, :, 0]
    colour = colours_t[nearest].T.reshape(3, *(colour_resolution,) * 3)
    return density, colour


class GroundTruthShapes(nn.Module):
    """Stands in for the network: ``encode`` recognises each photo (by its pixels, among the
    collection's images) and returns its index as the latent; ``query`` reads that photo's
    mesh field. Only this benchmark sees the meshes."""

    def __init__(self, images: torch.Tensor, model_of_image: torch.Tensor,
                 density: torch.Tensor, colour: torch.Tensor):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))  # the camera search freezes "the network"
        self.images = images.flatten(1)  # (N, 3·S·S)
        self.model_of_image = model_of_image  # (N,)
        self.density, self.colour = density, colour  # (M, 1, D, D, D), (M, 3, C, C, C)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 1)``: each image's row among the collection's (exact pixel match)."""
        distance = torch.cdist(images.flatten(1).float(), self.images)
        return distance.argmin(1).float()[:, None]

    def _read(self, grids: torch.Tensor, models: torch.Tensor, points: torch.Tensor
              ) -> torch.Tensor:
        coords = (points / GRID_HALF).clamp(-1.0, 1.0)  # outside the grid: its empty border
        if bool((models == models[0]).all()):  # one shape: one grid, no copies
            out = F.grid_sample(grids[models[:1]], coords.reshape(1, -1, 1, 1, 3),
                                align_corners=True)
            return out.reshape(grids.shape[1], *points.shape[:2]).permute(1, 2, 0)
        out = F.grid_sample(grids[models], coords[:, :, None, None], align_corners=True)
        return out[..., 0, 0].permute(0, 2, 1)

    def query(self, points: torch.Tensor, latent: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``points (B, P, 3)``, ``latent (B, 1)`` -> colour logits ``(B, P, 3)``, density
        ``(B, P, 1)``."""
        models = self.model_of_image[latent[:, 0].round().long().cpu()]
        points = points.float()
        density = self._read(self.density, models, points) * DENSITY
        colour = self._read(self.colour, models, points).clamp(0.01, 0.99)
        return torch.logit(colour), density


def ground_truth_shapes(cfg: ExperimentConfig, dataset: Dataset, truth: dict[str, dict],
                        resolution: int) -> GroundTruthShapes:
    """The hidden meshes of the photos of ``dataset``, voxelised once per model."""
    root = data_paths(cfg).root / "collection_models"
    paths = {r.model_id: r.path for r in index_shapenet(root, None)}
    model_ids = sorted({truth[i]["model_id"] for i in dataset.image_ids})
    grids = [mesh_grids(load_model(paths[m]), resolution) for m in model_ids]
    row = {m: k for k, m in enumerate(model_ids)}
    images = torch.stack([dataset[k]["image"] for k in range(len(dataset))])
    return GroundTruthShapes(
        images, torch.tensor([row[truth[i]["model_id"]] for i in dataset.image_ids]),
        torch.stack([g[0] for g in grids]), torch.stack([g[1] for g in grids]))


class FirstImages(Dataset):
    """The first ``count`` training images of a collection (indices re-numbered from 0)."""

    def __init__(self, collection: ImageCollection, count: int):
        self.collection = collection
        self.count = min(count, len(collection))
        self.image_ids = list(collection.image_ids[:self.count])
        self.crop_size = collection.crop_size

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        return self.collection[index]


# ----------------------------------------------------------------------------------------------
# The machinery, as self-training runs it
# ----------------------------------------------------------------------------------------------
def run_machinery(net: nn.Module, dataset: Dataset, truth: dict[str, dict],
                  cfg: ExperimentConfig) -> dict[str, dict[str, float]]:
    """Grid start, then ``selftrain.phase_a_epochs`` cameras-only epochs; the evaluation of the
    chosen cameras after each (``start``, ``cameras``)."""
    runtime = Runtime(torch.device("cpu"))
    s = cfg.selftrain
    bank = CameraBank(list(dataset.image_ids), s.hypotheses, tuple(s.elevation_init),
                      tuple(s.distance_range), seed=cfg.seed, offsets=s.offsets)
    data = Collection(dataset=dataset, bank=bank, owned=torch.arange(len(dataset)),
                      intrinsics=Intrinsics.from_fov(cfg.render.fov_degrees, dataset.crop_size),
                      truth=truth)
    net.eval()
    torch.manual_seed(cfg.seed)
    out = {}
    with torch.no_grad():
        initialise_from_grid(net, dataset, bank, cfg, runtime, data.owned, progress=False)
    out["start"], _ = evaluate_epoch(net, data, cfg, runtime, None)
    net.eval()
    loader = DataLoader(dataset, batch_size=min(cfg.optim.batch_size, len(dataset)),
                        shuffle=True, drop_last=True)
    for _ in range(s.phase_a_epochs):
        for batch in loader:
            selftrain_step(net, batch, data, None, None, cfg, runtime, phase_b=False)
    out["cameras"], _ = evaluate_epoch(net, data, cfg, runtime, None)
    net.eval()
    return out


@torch.no_grad()
def separability(net: nn.Module, dataset: Dataset, truth: dict[str, dict],
                 cfg: ExperimentConfig, size: int = 32, turns: int = 8) -> dict[str, float]:
    """Mask IoU of each photo's shape at its true rotation and at ``turns - 1`` other turns
    about the vertical (each at its best distance among ``selftrain.distance_range``, its box
    moved onto the photo's), and the share of photos whose true rotation ranks first."""
    intrinsics = Intrinsics.from_fov(cfg.render.fov_degrees, size)
    distances = torch.linspace(*cfg.selftrain.distance_range, 9)
    per_turn = []
    for k in range(len(dataset)):
        item = dataset[k]
        target = F.interpolate(item["mask"][None], size=size, mode="area")[0, 0]
        camera = truth[dataset.image_ids[k]]
        latent = net.encode(item["image"][None])
        azimuth = (camera["azimuth"] + 360.0 / turns * torch.arange(turns)).repeat_interleave(
            len(distances))
        elevation = torch.full_like(azimuth, camera["elevation"])
        distance = distances.repeat(turns)
        rendered = render_network(
            lambda p, latent=latent: net.query(p, latent.expand(p.shape[0], -1)),
            azimuth, elevation, distance, intrinsics, cfg.model, cfg.selftrain.grid_samples * 2)
        mask = rendered["mask"]
        moved = shift_images(mask[:, None], box_centres(target[None]) - box_centres(mask))[:, 0]
        iou = mask_iou((moved > 0.5).float(), (target > 0.5).float().expand_as(moved))
        per_turn.append(iou.reshape(turns, len(distances)).amax(1))
    ious = torch.stack(per_turn)  # (N, turns): column 0 is the truth
    wrong = ious[:, 1:]
    return {"iou_true": float(ious[:, 0].mean()), "iou_wrong_mean": float(wrong.mean()),
            "iou_wrong_best_turn": float(wrong.mean(0).max()),
            "true_ranks_first": float((ious[:, 0] > wrong.max(1).values).float().mean()),
            "chance": 1.0 / turns}


# ----------------------------------------------------------------------------------------------
def _row(metrics: dict[str, float]) -> str:
    keys = ("pose_acc30_vertical", "pose_acc30", "pose_best_of_h_acc30_vertical", "mask_iou")
    return " | ".join(f"{metrics.get(k, float('nan')):.2f}" for k in keys)


def checkpoint_name(path: Path) -> str:
    """A short name for a checkpoint: its nearest folder that names neither a stage nor the
    embedded experiment (``outputs/sweeps/prior_steps/steps_7200-seed0/smoke/pretrain/last.pt``
    -> ``steps_7200-seed0``)."""
    generic = {"pretrain", "checkpoints", "artifacts", "smoke", "outputs", ""}
    for folder in [path.parent, *path.parent.parents]:
        if folder.name not in generic:
            return folder.name
    return path.stem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="experiments/smoke.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config overrides, as `ss3d --set`")
    parser.add_argument("--collections", nargs="*", default=None,
                        help="default: the config's data.collections")
    parser.add_argument("--images", type=int, default=48, help="training photos per collection")
    parser.add_argument("--resolution", type=int, default=48, help="voxels per side of a mesh")
    parser.add_argument("--checkpoint", nargs="+", default=[],
                        help="pre-trained checkpoints: their shapes are measured beside (one "
                        "'network' row each, named by the checkpoint's folder when several)")
    parser.add_argument("--json", default=None, help="write every number here")
    parser.add_argument("--separability-only", action="store_true",
                        help="only the separability of the shapes (a prior's pose reading, in "
                        "a fraction of the time): no grid, camera search or choice")
    args = parser.parse_args()
    cfg = load_config(args.config, parse_set_args(args.set))
    cfg.optim.amp = False  # the meshes' grids are read in fp32; a network gets the same
    networks = {}
    if args.checkpoint:
        from ss3d.model import load_network

        for path in args.checkpoint:
            label = ("network" if len(args.checkpoint) == 1
                     else f"network {checkpoint_name(Path(path))}")
            networks[label] = load_network(path)[0]
    # the camera models the machinery runs with (none: separability alone)
    camera_models = () if args.separability_only else ("centred", "offsets")
    results: dict[str, dict] = {}
    for name in args.collections or list(cfg.data.collections):
        tic = time.perf_counter()
        path = Path(build_rendered_collection(cfg, name, progress=False)["path"])
        truth = read_hidden_cameras(path)
        dataset = FirstImages(ImageCollection(path, split="train"), args.images)
        shapes = {"ground truth": ground_truth_shapes(cfg, dataset, truth, args.resolution)}
        shapes.update(networks)
        results[name] = {}
        for label, net in shapes.items():
            entry = {"separability": separability(net, dataset, truth, cfg)}
            for model in camera_models:
                run_cfg = copy.deepcopy(cfg)
                run_cfg.selftrain.offsets = model == "offsets"
                entry[model] = run_machinery(net, dataset, truth, run_cfg)
            results[name][label] = entry
        results[name]["seconds"] = time.perf_counter() - tic
        print(f"\n{name}: {len(dataset)} photos ({results[name]['seconds']:.0f} s)")
        if camera_models:
            print("shapes | cameras | after | acc@30 vertical | acc@30 | best-of-H vertical | "
                  "chosen mask IoU")
        for label in shapes:
            for model in camera_models:
                for when in ("start", "cameras"):
                    print(f"{label} | {model} | {when} | "
                          f"{_row(results[name][label][model][when])}")
        for label in shapes:
            sep = results[name][label]["separability"]
            print(f"{label} separability: IoU at the true rotation {sep['iou_true']:.3f}, "
                  f"wrong turns {sep['iou_wrong_mean']:.3f} (best wrong turn "
                  f"{sep['iou_wrong_best_turn']:.3f}); true rotation first for "
                  f"{sep['true_ranks_first']:.0%} (chance {sep['chance']:.1%})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
