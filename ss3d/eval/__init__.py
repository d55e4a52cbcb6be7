"""Evaluation (README: Evaluation): mesh extraction, 3D/2D metrics, baselines.

* :mod:`ss3d.eval.mesh` — density grid → marching cubes (PyTorch3D) → vertex-coloured mesh,
  dense or coarse-to-fine;
* :mod:`ss3d.eval.metrics` — Chamfer-L1/L2 and F-score (PyTorch3D KNN), volumetric IoU;
  image metrics live in :mod:`ss3d.image_metrics`;
* :mod:`ss3d.eval.items` — the test items (held-out synthetic models, collection test images)
  with their ground truth;
* :mod:`ss3d.eval.baselines` — the sphere, category-medoid and oracle nearest-neighbour
  baselines beside every number;
* :mod:`ss3d.eval.keys` — :class:`~ss3d.eval.keys.ModelKey`, what a row's model label means;
* :mod:`ss3d.eval.stats` — bootstrap and Wilson intervals, paired differences;
* :mod:`ss3d.eval.summary` — the summary on top of them: intervals per (set, category, model),
  paired differences, verdicts and the tables (read by :mod:`ss3d.report`).

Nothing here imports :mod:`ss3d.stages`: the evaluation stage and the report import this.
"""

from ss3d.eval.mesh import ExtractedMesh, extract_mesh, write_obj
from ss3d.eval.metrics import chamfer_fscore, sample_mesh_surface, volumetric_iou

__all__ = ["ExtractedMesh", "chamfer_fscore", "extract_mesh", "sample_mesh_surface",
           "volumetric_iou", "write_obj"]
