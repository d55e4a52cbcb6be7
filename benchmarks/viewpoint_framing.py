"""The viewpoint network on whole renders and on crops: where its poses are lost.

Self-training reads collection photos cropped around the object's box; pre-training used to
show the viewpoint network whole renders, where the camera's distance frames the object.
This trains the viewpoint network alone (it shares nothing with the reconstruction) on the
experiment's rendered training views, with each view whole, cropped like a collection photo
(:func:`ss3d.data.datasets.crop_like_collection`), or cropped and mirrored (a left-right
symmetric object at azimuth ``a``, mirrored, is itself at ``-a``), or cropped with its colours
shuffled (:func:`recolour`), and scores acc@30 on the
held-out renders (whole and cropped), the held-out airplanes, and every rendered collection
(their hidden cameras; evaluation only). The pre-trained checkpoint's own network is scored
first. Run after ``make smoke`` (or any experiment's render and pre-training):

    python benchmarks/viewpoint_framing.py --steps 900 --variants whole crop
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from ss3d.config import load_config
from ss3d.data.datasets import ImageCollection, crop_like_collection, read_hidden_cameras
from ss3d.hypotheses import viewpoint_accuracy
from ss3d.model import ViewpointNet, load_network
from ss3d.stages.data import data_paths


def rendered_views(path: Path, splits: tuple[str, ...], categories: list[str], margin: float
                   ) -> dict[str, torch.Tensor | np.ndarray]:
    """Every view of the models in ``splits``: whole and cropped images ``(N, 3, H, W)``,
    azimuth and elevation ``(N,)``, category ``(N,)``."""
    with h5py.File(path, "r") as f:
        n = int(f.attrs["complete_models"])
        cats, split = f["category"].asstr()[:n], f["split"].asstr()[:n]
        rows = np.flatnonzero(np.isin(split, splits) & np.isin(cats, categories)).tolist()
        rgb, mask = f["rgb"][rows], f["mask"][rows]  # (M, V, H, W, 3), (M, V, H, W)
        azimuth, elevation = f["azimuth"][rows], f["elevation"][rows]
    m, v = mask.shape[:2]
    rgb, mask = rgb.reshape(m * v, *rgb.shape[2:]), mask.reshape(m * v, *mask.shape[2:])
    whole = torch.from_numpy(rgb.astype(np.float32) / 255.0 * mask[..., None])
    cropped = torch.from_numpy(np.stack([crop_like_collection(r, k, margin)[0]
                                         for r, k in zip(rgb, mask, strict=True)]))
    return {"whole": whole.permute(0, 3, 1, 2), "crop": cropped.permute(0, 3, 1, 2),
            "azimuth": torch.from_numpy(azimuth.reshape(-1)).float(),
            "elevation": torch.from_numpy(elevation.reshape(-1)).float(),
            "category": np.repeat(cats[rows], v)}


@torch.no_grad()
def accuracy(net: ViewpointNet, images: torch.Tensor, azimuth: torch.Tensor,
             elevation: torch.Tensor) -> float:
    net.eval()
    predicted = net.most_likely(*net(images))
    return float(viewpoint_accuracy(*predicted, azimuth, elevation).mean())


def recolour(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Each image ``(B, 3, H, W)`` with its colour channels in a random order, turned grey with
    probability 0.3, and scaled in brightness by 0.6–1.4: a category's part colours stop
    telling its pose, so what the network can learn is the one cue that may carry over to a
    category it never saw, the shape. The black background stays black."""
    b = x.shape[0]
    order = torch.argsort(torch.rand(b, 3, generator=g), dim=1)  # (B, 3)
    x = torch.gather(x, 1, order[:, :, None, None].expand_as(x))
    grey = (torch.rand(b, generator=g) < 0.3)[:, None, None, None]
    x = torch.where(grey, x.mean(1, keepdim=True).expand_as(x), x)
    gain = 0.6 + 0.8 * torch.rand(b, 1, 1, 1, generator=g)
    return (x * gain).clamp(0.0, 1.0)


def train(cfg, views: dict, variant: str, steps: int, batch: int, seed: int = 0) -> ViewpointNet:
    """A fresh viewpoint network trained ``steps`` steps on ``views`` as ``variant`` frames
    them, with pre-training's optimiser settings (Adam at ``pretrain.viewpoint_lr``, one cycle)."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed + 1)
    net = ViewpointNet(cfg.model.encoder, cfg.model.latent_dim, cfg.model.encoder_size)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.pretrain.viewpoint_lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.pretrain.viewpoint_lr,
                                                   total_steps=steps, pct_start=0.05)
    images = views["whole" if variant == "whole" else "crop"]
    for _ in range(steps):
        idx = torch.randint(0, len(images), (batch,), generator=g)
        x, azimuth = images[idx], views["azimuth"][idx]
        if variant == "crop+mirror":
            flip = torch.rand(batch, generator=g) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            azimuth = torch.where(flip, -azimuth, azimuth)
        elif variant == "crop+colour":
            x = recolour(x, g)
        loss = net.loss(x, azimuth, views["elevation"][idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    return net


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None, help="experiment YAML (default: smoke)")
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="each variant trained once per seed (its init and batches)")
    parser.add_argument("--variants", nargs="+", default=["whole", "crop"],
                        choices=("whole", "crop", "crop+mirror", "crop+colour"))
    args = parser.parse_args()

    cfg = load_config(args.config)
    paths = data_paths(cfg)
    margin = cfg.data.crop_margin
    held = rendered_views(paths.renders, ("val", "test"), cfg.data.categories, margin)
    planes = torch.from_numpy(held["category"] == "airplane")
    collections = {}
    for name in cfg.data.collections:
        truth = read_hidden_cameras(paths.collection(name))
        if not truth:
            continue
        dataset = ImageCollection(paths.collection(name), split="train")
        collections[name] = (torch.stack([dataset[i]["image"] for i in range(len(dataset))]),
                             torch.tensor([float(truth[i]["azimuth"]) for i in dataset.image_ids]),
                             torch.tensor([float(truth[i]["elevation"])
                                           for i in dataset.image_ids]))

    def row(label: str, net: ViewpointNet) -> None:
        cells = [accuracy(net, held["whole"], held["azimuth"], held["elevation"]),
                 accuracy(net, held["crop"], held["azimuth"], held["elevation"])]
        if planes.any():
            cells.append(accuracy(net, held["crop"][planes], held["azimuth"][planes],
                                  held["elevation"][planes]))
        cells += [accuracy(net, *collections[name]) for name in collections]
        print(f"{label:34s}" + "".join(f"{c:>12.3f}" for c in cells), flush=True)

    print(f"acc@30 of the viewpoint network ({len(held['azimuth'])} held-out views)")
    print(f"{'network':34s}{'renders':>12s}{'cropped':>12s}"
          + (f"{'airplanes':>12s}" if planes.any() else "")
          + "".join(f"{name:>12s}" for name in collections))
    checkpoint = Path(cfg.output_dir) / cfg.name / "pretrain" / "last.pt"
    if checkpoint.is_file():
        pretrained, _ = load_network(checkpoint)
        if pretrained.viewpoint is not None:
            row("pre-trained (its checkpoint)", pretrained.viewpoint)
    train_views = rendered_views(paths.renders, ("train",), cfg.data.categories, margin)
    for variant in args.variants:
        for seed in args.seeds:
            tic = time.perf_counter()
            net = train(cfg, train_views, variant, args.steps, args.batch, seed)
            row(f"{variant}, {args.steps} x {args.batch}, seed {seed} "
                f"({time.perf_counter() - tic:.0f} s)", net)


if __name__ == "__main__":
    main()
