"""Each model's surface level chosen on the validation split (ss3d.eval.level)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from ss3d.config import ConfigError, load_config
from ss3d.eval.level import choose_level, level_scores
from ss3d.eval.metrics import sample_mesh_surface


def sphere_surface(radius: float, count: int = 4000) -> torch.Tensor:
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=radius)
    return sample_mesh_surface(torch.tensor(mesh.vertices, dtype=torch.float32),
                               torch.tensor(mesh.faces), count, seed=0)


def cone_field(p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Density 50 (0.5 - r): the peak 25 at the centre, the level f x 25 at r = 0.5 (1 - f)."""
    return p, torch.relu(50.0 * (0.5 - p.norm(dim=-1, keepdim=True)))


def test_the_level_whose_surface_is_the_true_one_is_chosen():
    """A soft field read at three fractions of its peak against spheres of radius 0.3 (the
    0.4 level's surface) and 0.1 (the 0.8 level's): each set chooses its own level."""
    cfg = load_config(None, {"evaluate.mesh_resolution": 33, "evaluate.coarse_factor": 2,
                             "evaluate.surface_points": 2000})
    candidates = [0.2, 0.4, 0.8]
    scores = level_scores([cone_field, cone_field], [sphere_surface(0.3), sphere_surface(0.1)],
                          candidates, cfg)
    assert scores.shape == (2, 3)
    assert scores[0].argmax() == 1 and scores[0, 1] > 0.95  # r = 0.3: the 0.4 level
    assert scores[1].argmax() == 2 and scores[1, 2] > 0.95  # r = 0.1: the 0.8 level
    assert choose_level(scores[:1], candidates).level == 0.4
    assert choose_level(scores[1:], candidates).level == 0.8
    both = choose_level(scores, candidates)
    assert both.items == 2
    assert both.scores == {c: pytest.approx(float(scores[:, j].mean()))
                           for j, c in enumerate(candidates)}
    assert both.level == candidates[int(scores.mean(0).argmax())]


def test_ties_go_to_the_first_candidate_and_bad_scores_are_refused():
    assert choose_level(np.array([[0.5, 0.5, 0.4]]), [0.6, 0.7, 0.8]).level == 0.6
    with pytest.raises(ValueError, match="scores must be"):
        choose_level(np.zeros((0, 2)), [0.6, 0.7])
    with pytest.raises(ValueError, match="scores must be"):
        choose_level(np.zeros((3, 2)), [0.6, 0.7, 0.8])


@pytest.mark.parametrize("levels", [[0.0, 0.5], [0.5, 1.0], [0.6, 0.6]])
def test_surface_levels_out_of_range_or_repeated_are_refused(levels):
    with pytest.raises(ConfigError, match="evaluate.surface_levels"):
        load_config(None, {"evaluate.surface_levels": levels})


def test_the_absolute_level_with_chosen_levels_is_refused():
    with pytest.raises(ConfigError, match=r"surface_levels=\[\] as well"):
        load_config(None, {"evaluate.peak_fraction": 0.0})
    assert load_config(None, {"evaluate.peak_fraction": 0.0,
                              "evaluate.surface_levels": []}).evaluate.surface_levels == []


def test_the_report_says_where_each_models_surfaces_were_cut():
    from ss3d.report import _levels_line

    fixed = {"models": [{"label": "pretrained", "surface_level": 0.7}]}
    assert _levels_line(fixed) == ""  # one configured level for every model: nothing to say
    chosen = {"models": [
        {"label": "pretrained", "surface_level": 0.4, "surface_level_choice": {"level": 0.4}},
        {"label": "selftrained[bird]", "surface_level": 0.4},
        {"label": "distilled", "surface_level": 0.6, "surface_level_choice": {"level": 0.6}}]}
    line = _levels_line(chosen)
    assert "pretrained 0.4, selftrained[bird] 0.4 (its prior's), distilled 0.6" in line
