"""Image metrics shared by validation, self-training and evaluation."""

from __future__ import annotations

import torch

__all__ = ["MIN_SPREAD_PIXELS", "MIN_TRUE_SPREAD", "colour_spread", "mask_iou", "psnr"]

#: Fewest object pixels (in both masks) that a colour spread is measured on.
MIN_SPREAD_PIXELS = 16
#: Smallest true spread a ratio is taken against: a view that shows one flat-lit, single-colour
#: part (a lamp's pole seen end-on) has nothing to reproduce, and dividing by its near-zero
#: spread gave ratios in the hundreds that swamped every mean.
MIN_TRUE_SPREAD = 0.01


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


def colour_spread(pred_rgb: torch.Tensor, pred_mask: torch.Tensor, target_rgb: torch.Tensor,
                  target_mask: torch.Tensor) -> torch.Tensor:
    """Per-image ratio of the predicted to the true colour spread on the object; ``(..., H, W, 3)``
    colours (premultiplied: black background) and ``(..., H, W)`` masks ``-> (...)``.

    The spread is the standard deviation of the object's colours over its pixels (mean over
    the channels), taken where both masks are above 0.5 and after dividing the premultiplied
    colours by their mask. 1 means the prediction varies as much as the truth; a model whose
    colour ignores the image (one grey for every object part) scores near 0. NaN for an image
    with fewer than :data:`MIN_SPREAD_PIXELS` such pixels or a true spread below
    :data:`MIN_TRUE_SPREAD` (nothing to measure the prediction against).
    """
    both = (pred_mask > 0.5) & (target_mask > 0.5)
    pred = pred_rgb / pred_mask.clamp(min=1e-3)[..., None]
    true = target_rgb / target_mask.clamp(min=1e-3)[..., None]

    def spread(rgb: torch.Tensor) -> torch.Tensor:
        w = both[..., None].float()
        count = w.flatten(-3, -2).sum(-2)  # (..., 1)
        mean = (rgb * w).flatten(-3, -2).sum(-2) / count.clamp(min=1)
        var = ((rgb - mean[..., None, None, :]) ** 2 * w).flatten(-3, -2).sum(-2)
        return (var / (count - 1).clamp(min=1)).sqrt().mean(-1)  # (...)

    true_spread = spread(true)
    ratio = spread(pred) / true_spread.clamp(min=MIN_TRUE_SPREAD)
    enough = (both.flatten(-2).sum(-1) >= MIN_SPREAD_PIXELS) & (true_spread >= MIN_TRUE_SPREAD)
    return torch.where(enough, ratio, torch.full_like(ratio, float("nan")))
