"""Geometry helpers shared by data generation, evaluation and tests.

Inside/outside tests use the generalised winding number (Jacobson et al. 2013) rather than
trimesh's ray-parity ``contains``: ShapeNet meshes and our procedural models are unions of
overlapping, often non-watertight parts, where ray parity flips inside overlaps and leaks
through holes, while the winding number stays >= ~1 inside any closed part. No installed
library (PyTorch3D, trimesh) provides it, so it is written here in torch, chunked.
"""

from __future__ import annotations

import numpy as np
import torch
import trimesh

__all__ = ["merge_meshes", "occupancy", "sample_surface", "winding_number"]


def merge_meshes(meshes: list[trimesh.Trimesh]) -> trimesh.Trimesh:
    """Concatenate geometry only (no visuals), for inside/outside tests and sampling."""
    vertices, faces, offset = [], [], 0
    for m in meshes:
        vertices.append(np.asarray(m.vertices))
        faces.append(np.asarray(m.faces) + offset)
        offset += len(m.vertices)
    return trimesh.Trimesh(np.concatenate(vertices), np.concatenate(faces), process=False)


def winding_number(points: torch.Tensor, vertices: torch.Tensor, faces: torch.Tensor,
                   chunk: int = 64) -> torch.Tensor:
    """Generalised winding number of ``points (P, 3)`` w.r.t. a triangle mesh.

    Uses the Van Oosterom–Strackee solid angle of every triangle. Returns ``(P,)``: ~1 inside a
    closed surface, ~0 outside (larger inside overlapping closed parts).

    ``chunk`` points at a time: small chunks keep the ``(chunk, F, 3)`` temporaries in cache,
    which is several times faster than large ones on meshes of thousands of faces; every
    point's sum is the same whatever the chunk (benchmarks/run.py measures both).
    """
    tri = vertices[faces]  # (F, 3, 3)
    out = []
    for start in range(0, points.shape[0], chunk):
        p = points[start:start + chunk]
        a = tri[None, :, 0] - p[:, None]  # (C, F, 3)
        b = tri[None, :, 1] - p[:, None]
        c = tri[None, :, 2] - p[:, None]
        la, lb, lc = a.norm(dim=-1), b.norm(dim=-1), c.norm(dim=-1)
        det = (a * torch.cross(b, c, dim=-1)).sum(-1)
        denom = (la * lb * lc + (a * b).sum(-1) * lc + (b * c).sum(-1) * la
                 + (c * a).sum(-1) * lb)
        out.append(torch.atan2(det, denom).sum(-1) / (2 * torch.pi))
    return torch.cat(out)


def occupancy(points: np.ndarray, mesh: trimesh.Trimesh) -> np.ndarray:
    """Boolean inside/outside of ``points (P, 3)`` for ``mesh`` (winding number > 0.5)."""
    points = np.asarray(points, dtype=np.float64)
    lo, hi = mesh.bounds
    in_box = ((points >= lo) & (points <= hi)).all(axis=1)  # outside the bbox is outside
    inside = np.zeros(len(points), dtype=bool)
    w = winding_number(torch.as_tensor(points[in_box]),
                       torch.as_tensor(mesh.vertices, dtype=torch.float64),
                       torch.as_tensor(mesh.faces, dtype=torch.long))
    inside[in_box] = (w.abs() > 0.5).numpy()
    return inside


def sample_surface(mesh: trimesh.Trimesh, count: int, seed: int) -> np.ndarray:
    """``(count, 3)`` points uniformly on the surface (area-weighted), reproducible."""
    points, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(points, dtype=np.float32)
