"""Could the collection choose each image's pose where the image alone cannot? (two rules)

The self-training choice (the lowest full-image loss among an image's H searched hypotheses)
is at chance on categories the prior never saw, although the right pose is often among the H
(docs/results.md, "Why the choice fails on the world"). A choice made
by the whole collection needs no shape prior: the silhouettes of one category, each carved
into a voxel grid along its own camera's rays (its visual cone), should agree with each other
when the cameras are right and blur when they are not. Because the pose metric aligns the
learned frame about the vertical, a collection consistently turned by 180° scores as well as
a right one, so consistency is all a choice needs.

The second rule is amortised: an azimuth classifier on the run's frozen image features, fitted
to the collection's current choices (and their mirror images: a bilaterally symmetric object
seen from azimuth ``a`` looks, mirrored, like itself from ``-a``), predicts each image's azimuth
from the other images only (cross-fitted), and the image takes its most likely hypothesis;
repeated, this is hard EM, which should settle into one consistent labelling if the features
carry which way the object faces.

This reads a finished self-training run (its ``camera_bank.pt`` and checkpoint) and its
collection and prints pose accuracy about the vertical for the run's own weights, each rule,
and best-of-H; and the silhouette objective at the hidden true rotations, to say whether it
favours the truth at all. Evaluation only: the true cameras never choose anything.

    python benchmarks/pose_consensus.py --config experiments/smoke.yaml --category bird
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from ss3d.cameras import Intrinsics, project_points
from ss3d.config import load_config
from ss3d.data.datasets import ImageCollection, read_hidden_cameras
from ss3d.hypotheses import CameraBank, pose_metrics
from ss3d.model import load_network
from ss3d.stages.data import data_paths


def cones(masks: torch.Tensor, azimuth: torch.Tensor, elevation: torch.Tensor,
          distance: torch.Tensor, intrinsics: Intrinsics, points: torch.Tensor) -> torch.Tensor:
    """Each image's visual cone sampled at ``points (P, 3)``: ``(N, P)`` in [0, 1].

    ``masks (N, S, S)``; cameras ``(N,)``. A point's value is the mask at its projection
    (bilinear, zero outside the crop)."""
    n, size = masks.shape[0], masks.shape[-1]
    uv, _ = project_points(points[None].expand(n, -1, -1), azimuth, elevation, distance,
                           intrinsics)
    grid = uv / (size - 1) * 2 - 1  # pixel centres 0 … S-1 -> -1 … 1
    return F.grid_sample(masks[:, None], grid[:, None], align_corners=True)[:, 0, 0]


def leave_one_out_mean(chosen: torch.Tensor) -> torch.Tensor:
    """``(N, P)`` mean of the other images' cones, kept off 0 and 1 for the log-likelihood."""
    total = chosen.sum(0, keepdim=True)
    return ((total - chosen) / (chosen.shape[0] - 1)).clamp(1e-3, 1 - 1e-3)


def agreement(cone: torch.Tensor, template: torch.Tensor, score: str) -> torch.Tensor:
    """Agreement of ``cone (N, H, P)`` with ``template (N, P)``: ``(N, H)``."""
    t = template[:, None]
    if score == "loglik":  # Bernoulli log-likelihood of the cone under the template
        return (cone * t.log() + (1 - cone) * (1 - t).log()).mean(-1)
    inter = (cone * t).sum(-1)  # soft IoU
    return inter / (cone.sum(-1) + t.sum(-1) - inter)


def consensus_choice(cone: torch.Tensor, score: str, iterations: int = 50) -> torch.Tensor:
    """``(N,)`` hypothesis per image, iterated from the uniform mixture to a fixed point."""
    n, h, _ = cone.shape
    weights = torch.full((n, h), 1.0 / h)
    choice = torch.zeros(n, dtype=torch.long)
    for _ in range(iterations):
        template = leave_one_out_mean((weights[..., None] * cone).sum(1))
        choice = agreement(cone, template, score).argmax(1)
        new = F.one_hot(choice, h).float()
        if torch.equal(new, weights):
            break
        weights = new
    return choice


def azimuth_labels(azimuth: torch.Tensor, bins: int) -> torch.Tensor:
    """Soft labels ``(N, bins)`` of azimuths ``(N,)`` in degrees (a Gaussian of one bin)."""
    u = torch.remainder(azimuth, 360.0) / (360.0 / bins) - 0.5
    d = torch.remainder(torch.arange(bins).float()[None] - u[:, None] + bins / 2, bins) - bins / 2
    return torch.softmax(-0.5 * d ** 2, -1)


def amortised_choice(features: torch.Tensor, mirrored: torch.Tensor, azimuth: torch.Tensor,
                     start: torch.Tensor, bins: int = 24, folds: int = 5,
                     iterations: int = 12, seed: int = 0) -> torch.Tensor:
    """Hard EM of a cross-fitted linear azimuth classifier on ``features (N, D)`` and their
    mirror images' ``mirrored (N, D)``, from the choice ``start (N,)`` among the hypotheses'
    ``azimuth (N, H)``: ``(N,)``."""
    g = torch.Generator().manual_seed(seed)
    n, choice = features.shape[0], start.clone()
    for _ in range(iterations):
        order = torch.randperm(n, generator=g)
        log_p = torch.zeros(n, bins)
        for k in range(folds):
            held = order[k::folds]
            fit = order[torch.isin(order, held, invert=True)]
            chosen = azimuth[fit, choice[fit]]
            x = torch.cat([features[fit], mirrored[fit]])
            y = torch.cat([azimuth_labels(chosen, bins), azimuth_labels(-chosen, bins)])
            torch.manual_seed(seed + k)
            linear = torch.nn.Linear(x.shape[1], bins)
            opt = torch.optim.Adam(linear.parameters(), lr=1e-2, weight_decay=1e-2)
            for _ in range(200):
                opt.zero_grad()
                (-(y * F.log_softmax(linear(x), -1)).sum(-1).mean()).backward()
                opt.step()
            with torch.no_grad():
                log_p[held] = F.log_softmax(linear(features[held]), -1)
        nearest = torch.remainder(torch.floor(torch.remainder(azimuth, 360.0) / (360.0 / bins)),
                                  bins).long()
        new = log_p.gather(1, nearest).argmax(1)
        if torch.equal(new, choice):
            break
        choice = new
    return choice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=None, help="experiment YAML (default: smoke)")
    parser.add_argument("--category", required=True, help="a collection that was self-trained")
    parser.add_argument("--run", type=Path, help="the run's folder (default: "
                        "<output_dir>/<name>/selftrain-<category>)")
    parser.add_argument("--grid", type=int, default=32, help="voxels per side")
    args = parser.parse_args()

    cfg = load_config(args.config)
    path = data_paths(cfg).collection(args.category)
    run = args.run or Path(cfg.output_dir) / cfg.name / f"selftrain-{args.category}"
    dataset = ImageCollection(path, split="train")
    truth = read_hidden_cameras(path)
    if not truth:
        raise SystemExit(f"{path}: no hidden cameras (a rendered collection is needed)")
    state = torch.load(run / "camera_bank.pt", weights_only=False)
    bank = CameraBank(state["image_ids"], state["hypotheses"])
    bank.load_state_dict(state)
    if list(dataset.image_ids) != bank.image_ids:
        raise SystemExit(f"{run / 'camera_bank.pt'} is not a bank of {path}'s training images")
    size = dataset.crop_size
    intrinsics = Intrinsics.from_fov(cfg.render.fov_degrees, size)
    items = [dataset[i] for i in range(len(dataset))]  # one read of each image
    masks = torch.stack([item["mask"].reshape(size, size).float() for item in items])
    axis = torch.linspace(-0.55, 0.55, args.grid)
    points = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    azimuth, elevation, distance = bank.cameras()  # (N, H)
    n, h = azimuth.shape
    cone = torch.stack([cones(masks, azimuth[:, k], elevation[:, k], distance[:, k], intrinsics,
                              points) for k in range(h)], 1)  # (N, H, P)
    # the true rotations at the run's own distance (a crop's true distance is not the render's)
    true = cones(masks, torch.tensor([float(truth[i]["azimuth"]) for i in bank.image_ids]),
                 torch.tensor([float(truth[i]["elevation"]) for i in bank.image_ids]),
                 distance.median(1).values, intrinsics, points)

    def objective(chosen: torch.Tensor) -> float:
        template = leave_one_out_mean(chosen)
        return float(agreement(chosen[:, None], template, "loglik").mean())

    print(f"{args.category}: {n} images x {h} hypotheses ({run})")
    print(f"{'choice':36s} {'acc@30 vertical':>16s} {'best-of-H':>10s} {'objective':>10s}")
    rows = {"the run's weights": bank.logits.argmax(1)}
    for score in ("loglik", "iou"):
        rows[f"consensus ({score})"] = consensus_choice(cone, score)
    net, _ = load_network(run / "last.pt")
    images = torch.stack([item["image"] for item in items])
    for label, encoder in (("viewpoint", net.viewpoint.encoder if net.viewpoint else None),
                           ("shape", net.encoder)):
        if encoder is None:
            continue
        with torch.no_grad():
            features, mirrored = encoder(images).float(), encoder(images.flip(-1)).float()
        mean, std = features.mean(0), features.std(0) + 1e-6
        for start_label, start in (("weights", bank.logits.argmax(1)),
                                   ("random", torch.randint(0, h, (n,), generator=torch.Generator(
                                       ).manual_seed(0)))):
            rows[f"amortised ({label}, from {start_label})"] = amortised_choice(
                (features - mean) / std, (mirrored - mean) / std, azimuth, start)
    for label, choice in rows.items():
        m = pose_metrics(bank, truth, choice)
        print(f"{label:36s} {m['pose_acc30_vertical']:16.3f} "
              f"{m['pose_best_of_h_acc30_vertical']:10.3f} "
              f"{objective(cone[torch.arange(n), choice]):10.3f}")
    print(f"{'true rotations':36s} {'':16s} {'':10s} {objective(true):10.3f}")


if __name__ == "__main__":
    main()
