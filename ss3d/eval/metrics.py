"""3D metrics (DESIGN.md §1.6), on points sampled from both surfaces.

Conventions (both shapes in the canonical cube, side 1, so distances are fractions of it):

* ``d(p, Q)`` is the Euclidean distance from ``p`` to its nearest neighbour in ``Q``
  (PyTorch3D ``knn_points``);
* Chamfer-L1 = ½ (mean_p d(p, G) + mean_g d(g, P)); Chamfer-L2 = the same with squared
  distances;
* F-score@τ = harmonic mean of precision (share of predicted points within τ of the truth)
  and recall (share of true points within τ of the prediction), Tatarchenko et al. 2019;
* volumetric IoU on the ground truth's inside/outside samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pytorch3d.ops import knn_points, sample_points_from_meshes
from pytorch3d.structures import Meshes

__all__ = ["chamfer_fscore", "sample_mesh_surface", "volumetric_iou"]


def sample_mesh_surface(verts: torch.Tensor, faces: torch.Tensor, count: int,
                        seed: int = 0) -> torch.Tensor:
    """``(count, 3)`` area-weighted surface samples of one mesh, reproducible from ``seed``.

    An empty mesh gives a single point at the origin, so that metrics stay finite (and bad).
    """
    if faces.shape[0] == 0:
        return torch.zeros(1, 3)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        points = sample_points_from_meshes(Meshes([verts.float()], [faces.long()]), count)
    return points[0]


def chamfer_fscore(pred: torch.Tensor, truth: torch.Tensor,
                   thresholds: Sequence[float] = (0.05, 0.1)) -> dict[str, float]:
    """Chamfer-L1/L2 and F-score at each threshold between point sets ``(N, 3)`` and ``(M, 3)``.

    Returns ``{"chamfer_l1", "chamfer_l2", "fscore@0.05", "precision@0.05", "recall@0.05", ...}``.
    """
    pred, truth = pred.float()[None], truth.float()[None].to(pred.device)
    d_pred = knn_points(pred, truth, K=1).dists[0, :, 0].clamp(min=0).sqrt()  # (N,)
    d_true = knn_points(truth, pred, K=1).dists[0, :, 0].clamp(min=0).sqrt()  # (M,)
    out = {"chamfer_l1": float(0.5 * (d_pred.mean() + d_true.mean())),
           "chamfer_l2": float(0.5 * (d_pred.pow(2).mean() + d_true.pow(2).mean()))}
    for t in thresholds:
        precision = float((d_pred < t).float().mean())
        recall = float((d_true < t).float().mean())
        f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        out.update({f"fscore@{t:g}": f, f"precision@{t:g}": precision, f"recall@{t:g}": recall})
    return out


def volumetric_iou(pred_inside: torch.Tensor, true_inside: torch.Tensor) -> float:
    """IoU of two boolean occupancies over the same sample points ``(Q,)``."""
    p, t = pred_inside.bool(), true_inside.bool().to(pred_inside.device)
    union = int((p | t).sum())
    return float((p & t).sum()) / union if union else 1.0
