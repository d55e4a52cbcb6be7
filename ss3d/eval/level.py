"""Each model's surface level, chosen on the validation split.

The evaluation cuts every shape at a fraction of its own peak density
(``evaluate.peak_fraction``). Which fraction gives the truest surface depends on how sharp the
model's field is: a prior trained for longer concentrates its density and is best read lower.
With ``evaluate.surface_levels`` set, the evaluation reads each pre-trained and distilled model
at the candidate that scores the highest mean F@0.05 over the **val** split's seen-category
models (never the test split), extracted exactly as the evaluation extracts; a self-trained
model takes the level of the prior it starts from (its own category has no validation models
when it is a zero-shot one).

:func:`level_scores` scores fields against surfaces at every candidate (any field: tested on
analytic spheres); :func:`choose_level` picks the candidate from those scores;
:func:`validation_items` says which items they are read on. The stage that runs them for each
network is ``ss3d.stages.evaluate.choose_surface_levels``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ss3d.config import ExperimentConfig
from ss3d.eval.items import EvalItem
from ss3d.eval.mesh import extract_mesh
from ss3d.eval.metrics import chamfer_fscore, sample_mesh_surface

__all__ = ["LEVEL_METRIC", "LevelChoice", "choose_level", "level_scores", "validation_items"]

LEVEL_METRIC = "fscore@0.05"  # the headline 3D metric: the level is chosen on it

FieldFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class LevelChoice:
    """``level``: the chosen peak fraction; ``scores``: each candidate's mean F@0.05 over the
    ``items`` validation models."""

    level: float
    scores: dict[float, float]
    items: int

    def as_dict(self) -> dict[str, object]:
        return {"level": self.level, "items": self.items, "metric": LEVEL_METRIC,
                "scores": {f"{k:g}": v for k, v in self.scores.items()}}


@torch.no_grad()
def level_scores(fields: Sequence[FieldFn], surfaces: Sequence[torch.Tensor],
                 candidates: Sequence[float], cfg: ExperimentConfig,
                 device: torch.device | str = "cpu") -> np.ndarray:
    """F@0.05 ``(len(fields), len(candidates))`` of each field's mesh at each candidate peak
    fraction against its surface samples ``(P, 3)``, with the evaluation's grid, coarse factor
    and surface sampling."""
    e = cfg.evaluate
    out = np.zeros((len(fields), len(candidates)))
    for i, (field_fn, surface) in enumerate(zip(fields, surfaces)):
        for j, level in enumerate(candidates):
            mesh = extract_mesh(field_fn, e.mesh_resolution, e.density_threshold,
                                peak_fraction=level, coarse_factor=e.coarse_factor,
                                device=device)
            pred = sample_mesh_surface(mesh.verts, mesh.faces, e.surface_points, seed=0)
            out[i, j] = chamfer_fscore(pred, surface, tuple(e.fscore_thresholds))[LEVEL_METRIC]
    return out


def choose_level(scores: np.ndarray, candidates: Sequence[float]) -> LevelChoice:
    """The candidate with the highest mean over the rows of ``scores`` (items × candidates);
    a tie goes to the first candidate listed."""
    if scores.ndim != 2 or scores.shape[1] != len(candidates) or scores.shape[0] == 0:
        raise ValueError(f"scores must be (items > 0, {len(candidates)}), got {scores.shape}")
    means = scores.mean(0)
    best = int(np.argmax(means))
    return LevelChoice(float(candidates[best]),
                       {float(c): float(m) for c, m in zip(candidates, means)}, scores.shape[0])


def validation_items(items: Sequence[EvalItem]) -> list[EvalItem]:
    """The items a level is chosen on: the seen categories' (zero-shot ones have no val
    models; they stay unseen)."""
    return [item for item in items if not item.zero_shot]
