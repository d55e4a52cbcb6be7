"""What the student of distillation learns from (README: Distillation): the teachers (found
in MLflow or given as paths, and evaluated once per teacher per batch) and the batches of
images labelled with their teacher. The stage is :mod:`ss3d.stages.distill`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ss3d.config import ExperimentConfig
from ss3d.data.datasets import ImageCollection, RenderedViews
from ss3d.model import ReconstructionNet
from ss3d.stages.shell import find_pretrained, latest_checkpoint

__all__ = ["SYNTHETIC", "DistillData", "MissingTeacherError", "TeacherPool", "augment_images",
           "find_teachers"]

SYNTHETIC = "synthetic"


class MissingTeacherError(FileNotFoundError):
    """A teacher checkpoint is missing: says which notebook or command to run first."""


# ----------------------------------------------------------------------------------------------
# Teachers
# ----------------------------------------------------------------------------------------------
def find_teachers(cfg: ExperimentConfig, overrides: Mapping[str, str] | None = None,
                  track: bool = True) -> dict[str, tuple[Path, str | None]]:
    """``{teacher name: (checkpoint, MLflow run id or None)}`` for ``synthetic`` and every
    category of ``data.collections``; ``overrides`` maps names to checkpoint paths."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - {SYNTHETIC, *cfg.data.collections})
    if unknown:
        raise ValueError(f"teacher override for {unknown}: not 'synthetic' or one of the "
                         f"experiment's collections {cfg.data.collections}")
    teachers: dict[str, tuple[Path, str | None]] = {}
    try:
        teachers[SYNTHETIC] = find_pretrained(cfg, overrides.get(SYNTHETIC), track)
    except FileNotFoundError as err:
        raise MissingTeacherError(f"synthetic teacher: {err}") from None
    for category in cfg.data.collections:
        if category in overrides:
            path = Path(overrides[category])
            if not path.is_file():
                raise MissingTeacherError(f"teacher '{category}': checkpoint not found: {path}")
            teachers[category] = (path, None)
            continue
        found = latest_checkpoint(cfg, "selftrain", category, track)
        if found is None:
            raise MissingTeacherError(
                f"no self-trained model for '{category}' in experiment '{cfg.name}': run "
                f"`papermill notebooks/02_selftrain.ipynb out.ipynb -p category {category}` (or "
                f"`ss3d selftrain --set selftrain.category={category}`) first, or pass "
                f"--teacher {category}=PATH")
        teachers[category] = found
    return teachers


class TeacherPool:
    """Frozen teacher networks, evaluated once per teacher per batch.

    ``on_device=False`` keeps teachers on the CPU and moves one to the device only for its
    forward (for many teachers on a small GPU). ``forwards`` counts teacher evaluations.
    """

    def __init__(self, nets: Mapping[str, ReconstructionNet], device: torch.device,
                 on_device: bool = True):
        self.device, self.on_device = device, on_device
        self.nets = dict(nets)
        for net in self.nets.values():
            net.eval().requires_grad_(False)
            net.to(device if on_device else "cpu")
        self.forwards = 0

    @property
    def names(self) -> list[str]:
        return list(self.nets)

    @torch.no_grad()
    def run(self, name: str, fn):
        """``fn(net)`` with teacher ``name`` on the device; one counted forward."""
        net = self.nets[name]
        if not self.on_device:
            net.to(self.device)
        try:
            self.forwards += 1
            return fn(net)
        finally:
            if not self.on_device:
                net.to("cpu")

    def grouped(self, labels: list[str], fn) -> dict[str, tuple[torch.Tensor, Any]]:
        """Group a batch by teacher: ``{name: (row indices, fn(net, rows))}``, one forward each."""
        out = {}
        for name in dict.fromkeys(labels):  # first-appearance order, each teacher once
            rows = torch.tensor([i for i, lab in enumerate(labels) if lab == name])
            out[name] = (rows, self.run(name, lambda net, rows=rows: fn(net, rows)))
        return out


# ----------------------------------------------------------------------------------------------
# Data: pooled collections + synthetic renders
# ----------------------------------------------------------------------------------------------
class DistillData:
    """Draws batches of (masked image, teacher label, category)."""

    def __init__(self, cfg: ExperimentConfig, collections: Mapping[str, Path],
                 renders: Path | None, seed: int):
        self.collections = {c: ImageCollection(p, split="train") for c, p in collections.items()}
        self.synthetic = (RenderedViews(renders, categories=cfg.data.categories,
                                        splits=("train",), views_per_object=1, rays_per_view=1)
                          if renders is not None and cfg.distill.p_synthetic > 0 else None)
        self.p_synthetic = cfg.distill.p_synthetic if self.synthetic is not None else 0.0
        self.to_specialist = cfg.distill.renders_to_specialist
        if not self.collections and self.synthetic is None:
            raise ValueError("distillation needs at least one collection or synthetic renders")
        self.generator = torch.Generator().manual_seed(seed)
        self.size = cfg.data.crop_size

    def _resize(self, image: torch.Tensor) -> torch.Tensor:
        if image.shape[-1] == self.size:
            return image
        return F.interpolate(image[None], size=(self.size, self.size), mode="bilinear",
                             align_corners=False, antialias=True)[0]

    def batch(self, size: int) -> tuple[torch.Tensor, list[str], list[str]]:
        """``images (B, 3, S, S)``, teacher labels and categories."""
        images, labels, cats = [], [], []
        names = list(self.collections)
        for _ in range(size):
            synthetic = (not names or
                         float(torch.rand((), generator=self.generator)) < self.p_synthetic)
            if synthetic:
                i = int(torch.randint(len(self.synthetic), (), generator=self.generator))
                item = self.synthetic[i]
                images.append(self._resize(item["image"]))
                specialist = self.to_specialist and item["category"] in self.collections
                labels.append(item["category"] if specialist else SYNTHETIC)
                cats.append(item["category"])
            else:
                name = names[int(torch.randint(len(names), (), generator=self.generator))]
                ds = self.collections[name]
                item = ds[int(torch.randint(len(ds), (), generator=self.generator))]
                images.append(self._resize(item["image"]))
                labels.append(name)
                cats.append(name)
        return torch.stack(images), labels, cats

    def fixed_images(self, per_category: int) -> dict[str, tuple[torch.Tensor, str]]:
        """``{category: (images (n, 3, S, S), teacher)}``: the first images of every collection
        and the first training models of every synthetic category (figures, agreement)."""
        out: dict[str, tuple[torch.Tensor, str]] = {}
        for name, ds in self.collections.items():
            n = min(per_category, len(ds))
            out[name] = (torch.stack([self._resize(ds[i]["image"]) for i in range(n)]), name)
        if self.synthetic is not None:
            for cat in dict.fromkeys(self.synthetic.row_categories):
                if cat in out:  # a collection of that category already has its own teacher
                    continue
                rows = [i for i, c in enumerate(self.synthetic.row_categories) if c == cat]
                imgs = [self._resize(_view_zero(self.synthetic, i)) for i in rows[:per_category]]
                out[str(cat)] = (torch.stack(imgs), SYNTHETIC)
        return out


def _view_zero(ds: RenderedViews, index: int) -> torch.Tensor:
    """The masked view 0 of a synthetic model ``(3, H, W)`` (fixed, unlike RenderedViews'
    random input view)."""
    row = int(ds.rows[index])
    rgb = torch.from_numpy(ds.file["rgb"][row, 0]).float() / 255.0
    mask = torch.from_numpy(ds.file["mask"][row, 0]).float()
    return (rgb * mask[..., None]).permute(2, 0, 1).contiguous()


def augment_images(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Geometry-preserving augmentations of the student's input: per-image brightness and
    contrast jitter and a light blur. (Flips or crops would change the shape the teacher's
    targets describe, so they are left out.)"""
    b = images.shape[0]
    bright = 1.0 + 0.4 * (torch.rand(b, 1, 1, 1, generator=generator) - 0.5)
    contrast = 1.0 + 0.4 * (torch.rand(b, 1, 1, 1, generator=generator) - 0.5)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    out = ((images - mean) * contrast.to(images) + mean) * bright.to(images)
    blur = (torch.rand(b, generator=generator) < 0.3).to(images.device)
    if blur.any():
        kernel = torch.tensor([1.0, 2.0, 1.0], device=images.device)
        kernel = (kernel[:, None] * kernel[None]) / 16.0
        blurred = F.conv2d(out[blur].reshape(-1, 1, *out.shape[-2:]),
                           kernel[None, None], padding=1).reshape(out[blur].shape)
        out[blur] = blurred
    background = images.sum(1, keepdim=True) == 0  # keep the masked background black
    return out.clamp(0, 1).masked_fill(background, 0.0)
