"""Image metrics shared by validation, self-training and evaluation."""

from __future__ import annotations

import torch

__all__ = ["mask_iou", "psnr"]


def mask_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image IoU of ``pred > 0.5`` and ``target > 0.5``; ``(..., H, W) -> (...)``."""
    p, t = pred > 0.5, target > 0.5
    inter = (p & t).flatten(-2).sum(-1).float()
    union = (p | t).flatten(-2).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(inter))


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of images in [0, 1]; ``(..., H, W, 3) -> (...)``."""
    mse = (pred - target).pow(2).flatten(-3).mean(-1)
    return -10.0 * torch.log10(mse.clamp(min=1e-10))
