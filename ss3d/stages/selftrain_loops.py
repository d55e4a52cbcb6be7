"""The inner loops of self-training (README: Self-training): one training step, the camera
search, the pose-grid start, and the evaluation of an epoch. The stage around them (run,
state, checkpoints, figures) is :mod:`ss3d.stages.selftrain`; the scores they compare poses on
are :mod:`ss3d.scoring`.

Each training step, for a batch of images (input and target at once):
1. encode the images (latent detached for 2–3);
2. optimise every hypothesis' camera for ``camera_steps`` Adam steps on its own render loss,
   network frozen — all ``B × H`` cameras in one batched render;
3. update the hypothesis logits on the softmax-weighted per-hypothesis loss, scored on the
   whole (downsampled) image so that the weights follow the poses, not the ray noise;
4. (phase B only) update the network on the softmax-weighted loss, weights detached.

The encoder's BatchNorm statistics stay frozen throughout (:func:`train_mode`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from ss3d.cameras import Intrinsics
from ss3d.config import ExperimentConfig
from ss3d.data.datasets import ImageCollection, read_hidden_cameras
from ss3d.engine import Runtime, autocast, move_batch, optimiser_step
from ss3d.hypotheses import CameraBank, pose_metrics, viewpoint_accuracy
from ss3d.image_metrics import mask_iou
from ss3d.model import ReconstructionNet
from ss3d.scoring import (
    ViewpointPrior,
    aligned_pose_scores,
    gather_targets,
    hypothesis_losses,
    network_pixels,
    network_weights,
    pose_grid,
    pose_scores,
    sample_image_pixels,
    selection_losses,
)
from ss3d.stages.data import data_paths
from ss3d.stages.pretrain import endless, pretrain_loss, training_views
from ss3d.volume import render_network

__all__ = ["Collection", "choose_hypotheses", "chosen_mask_iou", "evaluate_epoch",
           "initialise_from_grid", "merge_bank", "optimise_cameras", "render_chosen",
           "selftrain_step", "synthetic_batches", "train_mode", "viewpoint_accuracy_of"]


def optimise_cameras(net: ReconstructionNet, latent: torch.Tensor, images: torch.Tensor,
                     masks: torch.Tensor, raw: list[torch.Tensor], bank: CameraBank,
                     intrinsics: Intrinsics, cfg: ExperimentConfig,
                     index: torch.Tensor | None = None
                     ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """``camera_steps`` Adam steps on all ``B × H`` cameras with the network frozen.

    With ``selftrain.max_azimuth_offset > 0`` (and the images' bank ``index``), every step is
    followed by a projection of each azimuth back to within that many degrees of its anchor
    (:meth:`CameraBank.bound_azimuth`): a hypothesis refines its start and cannot walk into a
    neighbour's sector. A bank with offsets (``raw`` of four) searches them with the rest.
    Returns the optimised raw parameters and the per-hypothesis losses before and after.
    """
    s = cfg.selftrain
    raw = [p.clone().to(images.device).requires_grad_(True) for p in raw]
    # Adam's step is about lr whatever the gradient scale: azimuth is in degrees, the others
    # in unbounded raw units, so azimuth gets its own (degree-sized) learning rate.
    optimizer = torch.optim.Adam([{"params": [raw[0]], "lr": s.camera_lr * 60.0},
                                  {"params": raw[1:], "lr": s.camera_lr}])
    before = None
    requires = [p.requires_grad for p in net.parameters()]
    for p in net.parameters():
        p.requires_grad_(False)
    try:
        for it in range(s.camera_steps + 1):
            pixels = sample_image_pixels(masks, s.camera_rays)
            t_rgb, t_mask = gather_targets(images, masks, pixels)
            az, el, dist = bank.decode(*raw[:3])
            offset = bank.decode_offset(raw[3]) if len(raw) > 3 else None
            losses = hypothesis_losses(net, latent, t_rgb, t_mask, pixels, az, el, dist,
                                       intrinsics, cfg, s.camera_samples, offset)
            if before is None:
                before = losses.detach()
            if it == s.camera_steps:
                break
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            optimizer.step()
            if index is not None and s.max_azimuth_offset > 0:
                with torch.no_grad():
                    raw[0].copy_(bank.bound_azimuth(raw[0], index, s.max_azimuth_offset))
    finally:
        for p, flag in zip(net.parameters(), requires):
            p.requires_grad_(flag)
    return [p.detach() for p in raw], before, losses.detach()


def synthetic_batches(cfg: ExperimentConfig, device: torch.device, batch_size: int
                       ) -> tuple[Iterator[dict], Intrinsics]:
    """Endless pre-training batches (known cameras) of ``batch_size`` objects for phase-B
    rehearsal, and their intrinsics."""
    renders = data_paths(cfg).renders
    if not renders.is_file():
        raise FileNotFoundError(f"selftrain.rehearsal > 0 needs the synthetic renders, not found "
                                f"at {renders} (run `ss3d render` or set rehearsal to 0)")
    views = training_views(cfg, renders)
    loader = DataLoader(views, batch_size=min(batch_size, len(views)), shuffle=True,
                        drop_last=True, num_workers=cfg.data.num_workers)
    batches = (move_batch(batch, device) for batch in endless(loader))
    return batches, views.intrinsics


def initialise_from_grid(net: ReconstructionNet, dataset: ImageCollection, bank: CameraBank,
                         cfg: ExperimentConfig, runtime: Runtime, owned: torch.Tensor,
                         progress: bool = True, losses: torch.Tensor | None = None,
                         prior: ViewpointPrior | None = None,
                         offsets: torch.Tensor | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``selftrain.init=grid``: hypothesis ``k`` of every image becomes the grid pose of the
    ``k``-th azimuth sector that the (pre-trained) network explains best.

    The hypotheses stay spread over azimuth as in the paper, but elevation and distance are no
    longer random: the network's own scores start them far closer to the true poses than
    random elevations and distances do (docs/results.md).
    A sector without grid azimuths (``H > grid_azimuths``) keeps its spread hypothesis.
    A bank with offsets scores every grid camera with the offset that meets the image's box
    (:func:`ss3d.scoring.aligned_pose_scores`), and its hypotheses start at those offsets.

    Args:
        owned: ``(n,)`` the images this rank scores; the ranks' scores are summed, so every
            rank sets the same cameras.
        losses: ``(N, P)`` grid losses already computed with the same network and images
            (then nothing is rendered); with offsets, ``offsets`` ``(N, P, 2)`` too.

    Returns:
        the grid losses ``(N, P)`` and, for a bank with offsets, the grid offsets
        ``(N, P, 2)`` (else None).
    """
    grid = pose_grid(cfg)
    h = bank.hypotheses
    sector = (grid[0] / (360.0 / h)).floor().long().clamp(max=h - 1)  # (P,)
    align = bank.use_offsets
    if losses is None or (align and offsets is None):
        device = runtime.device
        losses = torch.zeros(len(bank), grid[0].numel())
        offsets = torch.zeros(len(bank), grid[0].numel(), 2) if align else None
        for batch in tqdm(DataLoader(Subset(dataset, owned.tolist()), batch_size=8),
                          desc="pose grid", unit="batch", disable=not (progress
                                                                      and runtime.is_main)):
            images, masks = batch["image"].to(device), batch["mask"].to(device)
            with torch.no_grad():
                latents = net.encode(images)
            scores, moved = aligned_pose_scores(
                net, latents, images, masks, *grid, cfg, cfg.selftrain.score_size,
                cfg.selftrain.grid_samples, prior, batch["index"], align=align)
            losses[batch["index"]] = scores.cpu()
            if align:
                offsets[batch["index"]] = moved.cpu()
        losses = runtime.all_sum(losses)
        offsets = runtime.all_sum(offsets) if align else None
    index = torch.arange(len(bank))
    az, el, dist = bank.cameras(index)
    offset = bank.offsets(index)
    rows = torch.arange(len(bank))
    for k in range(h):
        members = sector == k
        if not members.any():
            continue
        pick = losses.masked_fill(~members[None], float("inf")).argmin(-1)  # (N,)
        az[:, k], el[:, k], dist[:, k] = grid[0][pick], grid[1][pick], grid[2][pick]
        if align:
            offset[:, k] = offsets[rows, pick]
    bank.set_cameras(index, az, el, dist)
    if align:
        bank.set_offsets(index, offset)
    bank.set_anchors()  # a bounded search refines the grid's pick
    return losses, offsets


@torch.no_grad()
def render_chosen(net: ReconstructionNet, latent: torch.Tensor, bank: CameraBank,
                  index: torch.Tensor, choice: torch.Tensor, intrinsics: Intrinsics,
                  cfg: ExperimentConfig) -> dict[str, torch.Tensor]:
    """Full renders ``(B, H, W)`` / ``(B, H, W, 3)`` of images ``index`` (latents ``(B, L)``)
    from their chosen hypotheses."""
    az, el, dist = bank.cameras(index)
    pick = choice[index.cpu()]
    rows = torch.arange(len(index))
    cams = [c[rows, pick].to(latent.device) for c in (az, el, dist)]
    offset = bank.offsets(index)
    offset = None if offset is None else offset[rows, pick].to(latent.device)
    with autocast(latent.device, cfg.optim.amp):  # the network only: query returns fp32
        return render_network(lambda p: net.query(p, latent), *cams, intrinsics, cfg.model,
                              offset=offset)


def train_mode(net: ReconstructionNet) -> ReconstructionNet:
    """Train mode with the encoder's BatchNorm statistics frozen.

    Self-training batches are small and come from one category, so batch statistics are noisy,
    and a "frozen" phase-A network would still drift through its running statistics (the
    camera search would then score poses with latents that evaluation never sees).
    """
    net.train()
    for module in net.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    return net


# ----------------------------------------------------------------------------------------------
# One training step, and the evaluation of an epoch
# ----------------------------------------------------------------------------------------------
@dataclass
class Collection:
    """What every step and evaluation of one self-training run reads.

    ``owned``: the image indices this rank trains and scores (all of them in one process);
    ``truth``: hidden true cameras of a rendered collection, for evaluation only.
    """

    dataset: ImageCollection
    bank: CameraBank
    owned: torch.Tensor
    intrinsics: Intrinsics
    truth: dict[str, dict]
    prior: ViewpointPrior | None = None  # selftrain.viewpoint_weight > 0

    @classmethod
    def load(cls, path: Path, cfg: ExperimentConfig, runtime: Runtime) -> Collection:
        """The training images of a collection file, a fresh camera bank, this rank's share."""
        s = cfg.selftrain
        dataset = ImageCollection(path, split="train")
        bank = CameraBank(list(dataset.image_ids), s.hypotheses, tuple(s.elevation_init),
                          tuple(s.distance_range), seed=cfg.seed, offsets=s.offsets)
        return cls(dataset=dataset, bank=bank, owned=runtime.shard(len(dataset)),
                   intrinsics=Intrinsics.from_fov(cfg.render.fov_degrees, dataset.crop_size),
                   truth=read_hidden_cameras(path))  # truth: for evaluation only

    def batches(self, batch_size: int = 16) -> DataLoader:
        """This rank's images in order, for scoring (no training)."""
        return DataLoader(Subset(self.dataset, self.owned.tolist()), batch_size=batch_size)


def merge_bank(bank: CameraBank, owned: torch.Tensor, runtime: Runtime) -> None:
    """Every rank's rows of the camera bank on every rank.

    Each rank changes only the hypotheses and logits of the images it owns; summing the ranks'
    tensors with the other rows zeroed gives the whole bank (each row has one owner).
    """
    if not runtime.distributed:
        return
    mine = torch.zeros(len(bank), 1)
    mine[owned] = 1.0
    for key in ("raw_azimuth", "raw_elevation", "raw_distance", "logits"):
        setattr(bank, key, runtime.all_sum(getattr(bank, key) * mine))
    if bank.use_offsets:
        bank.raw_offset = runtime.all_sum(bank.raw_offset * mine[..., None])


def selftrain_step(net: ReconstructionNet, batch: dict[str, torch.Tensor], data: Collection,
                   optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                   cfg: ExperimentConfig, runtime: Runtime, phase_b: bool,
                   rehearsal: tuple[Iterator[dict], Intrinsics] | None = None
                   ) -> dict[str, float]:
    """One self-training step on a batch of images (the numbered steps of the module text).

    Returns the step's record (losses before/after the camera search, weight entropy and, in
    phase B, the network loss).
    """
    s, bank, device = cfg.selftrain, data.bank, runtime.device
    idx = batch["index"]
    images, masks = batch["image"].to(device), batch["mask"].to(device)
    with torch.no_grad():
        latent = net.encode(images)
    raw, before, after = optimise_cameras(net, latent, images, masks, list(bank.raw(idx)), bank,
                                          data.intrinsics, cfg, index=idx)
    bank.set_raw(idx, raw)
    # The logits follow the low-noise full-image loss of the optimised cameras, not the
    # few-ray search loss (whose noise is as large as the gaps between poses).
    scores = pose_scores(net, latent, images, masks, *bank.cameras(idx), cfg,
                         s.score_size, s.camera_samples, data.prior, idx,
                         bank.offsets(idx)).cpu()
    # logits: gradient step on sum_h softmax(l)_h * loss_h (losses detached), per image: a
    # batch mean would shrink every image's step by the batch size
    logits = bank.logits[idx].clone().requires_grad_(True)
    (torch.softmax(logits, -1) * scores).sum().backward()
    bank.logits[idx] = (logits - s.logit_lr * logits.grad).detach()
    weights = bank.weights(idx).to(device)
    record = {"loss_before_cameras": float(before.mean()),
              "loss_after_cameras": float(after.mean()),
              "weight_entropy": float(-(weights * weights.clamp(min=1e-9).log()).sum(-1).mean())}
    if not phase_b:
        return record
    target = network_weights(scores, weights.detach().cpu(), s.network_target,
                             s.gate_margin).to(device)
    rows = (target.sum(-1) > 0).nonzero()[:, 0]
    record["network_images"] = float(len(rows))
    # no image of any rank unambiguous and no rehearsal: no network update this step (every
    # rank decides the same, since each update all-reduces)
    wanted = torch.tensor(float(len(rows) > 0 or rehearsal is not None))
    if float(runtime.all_sum(wanted)) == 0:
        return record
    with autocast(device, cfg.optim.amp):
        loss = torch.zeros((), device=device)
        if len(rows):
            latent = net.encode(images[rows])
            pixels = network_pixels(masks[rows], cfg)
            t_rgb, t_mask = gather_targets(images[rows], masks[rows], pixels)
            cams = bank.decode(*(r.to(device)[rows] for r in raw[:3]))
            offset = bank.decode_offset(raw[3].to(device)[rows]) if len(raw) > 3 else None
            w = target[rows]
            if s.network_target == "chosen":  # one render per image, not H
                pick = w.argmax(-1, keepdim=True)
                cams, w = [c.gather(1, pick) for c in cams], w.gather(1, pick)
                if offset is not None:
                    offset = offset.gather(1, pick[..., None].expand(-1, -1, 2))
            losses = hypothesis_losses(net, latent, t_rgb, t_mask, pixels, *cams,
                                       data.intrinsics, cfg, cfg.model.n_samples, offset)
            loss = (w * losses).sum(-1).mean()
        if rehearsal is not None:
            synthetic = pretrain_loss(net, next(rehearsal[0]), rehearsal[1],
                                              cfg)["loss"]
            record["rehearsal_loss"] = float(synthetic.detach())
            loss = loss + s.rehearsal * synthetic
    record["grad_norm"] = float(optimiser_step(loss, optimizer, scaler,
                                               net.reconstruction_parameters(),
                                               cfg.optim.grad_clip, runtime=runtime))
    record["network_loss"] = float(loss.detach())
    return record


@torch.no_grad()
def choose_hypotheses(net: ReconstructionNet, data: Collection, cfg: ExperimentConfig,
                      runtime: Runtime) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's chosen hypothesis ``(N,)`` by the configured rule, and by weight ``(N,)``."""
    by_weight = data.bank.weights().argmax(-1)
    if cfg.selftrain.select == "weights":
        return by_weight, by_weight
    losses = torch.zeros(len(data.bank), data.bank.hypotheses)
    for batch in data.batches():
        idx = batch["index"]
        images, masks = batch["image"].to(runtime.device), batch["mask"].to(runtime.device)
        losses[idx] = selection_losses(net, net.encode(images), images, masks, data.bank, idx,
                                       cfg, data.prior).cpu()
    return runtime.all_sum(losses).argmin(-1), by_weight


@torch.no_grad()
def chosen_mask_iou(net: ReconstructionNet, data: Collection, chosen: torch.Tensor,
                    cfg: ExperimentConfig, runtime: Runtime) -> torch.Tensor:
    """Mask IoU ``(N,)`` of every image's full render from its chosen camera."""
    ious = torch.zeros(len(data.bank))
    for batch in data.batches():
        latent = net.encode(batch["image"].to(runtime.device))
        rendered = render_chosen(net, latent, data.bank, batch["index"], chosen,
                                 data.intrinsics, cfg)
        ious[batch["index"]] = mask_iou(rendered["mask"].cpu(), batch["mask"][:, 0])
    return runtime.all_sum(ious)


def viewpoint_accuracy_of(prior: ViewpointPrior, data: Collection) -> float:
    """Share of the collection's images whose viewpoint-network pose alone is within 30° of the
    hidden true camera (in the true frame: the network learned the synthetic one)."""
    rows = [k for k, i in enumerate(data.bank.image_ids) if i in data.truth]
    if not rows:
        return float("nan")
    azimuth, elevation = prior.most_likely()
    truth = [data.truth[data.bank.image_ids[k]] for k in rows]
    return float(viewpoint_accuracy(azimuth[rows], elevation[rows],
                                    torch.tensor([t["azimuth"] for t in truth]),
                                    torch.tensor([t["elevation"] for t in truth])).mean())


def evaluate_epoch(net: ReconstructionNet, data: Collection, cfg: ExperimentConfig,
                   runtime: Runtime, last_choice: torch.Tensor | None
                   ) -> tuple[dict[str, float], torch.Tensor]:
    """Metrics of the current cameras and network: mask IoU from the chosen cameras, the share
    of choices that changed since ``last_choice``, and (rendered collections) pose accuracy.

    Runs in eval mode: BatchNorm uses (and does not update) its running statistics. Returns the
    metrics and the choice ``(N,)``.
    """
    net.eval()
    try:
        chosen, by_weight = choose_hypotheses(net, data, cfg, runtime)
        metrics: dict[str, float] = {}
        if last_choice is not None:  # share of images whose chosen hypothesis changed
            metrics["best_changed"] = float((chosen != last_choice).float().mean())
        metrics["mask_iou"] = float(chosen_mask_iou(net, data, chosen, cfg, runtime).mean())
        if data.truth:
            metrics.update(pose_metrics(data.bank, data.truth, chosen))
            metrics.update(pose_metrics(data.bank, data.truth, by_weight, prefix="weights_"))
            if data.prior is not None:
                metrics["viewpoint_net_acc30"] = viewpoint_accuracy_of(data.prior, data)
    finally:
        train_mode(net)
    return metrics, chosen


