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
                   chunk: int | None = None) -> torch.Tensor:
    """Generalised winding number of ``points (P, 3)`` w.r.t. a triangle mesh.

    Uses the Van Oosterom–Strackee solid angle of every triangle. Returns ``(P,)``: ~1 inside a
    closed surface, ~0 outside (larger inside overlapping closed parts).

    The corners are kept as nine ``(F,)`` coordinate rows, so that every operation is
    elementwise over ``(chunk, F)`` planes; vectors of 3 (norms, cross and dot products
    reducing over a dimension of 3) are several times slower (docs/results.md). ``chunk``
    points at a time (default: about 2^15 / F, at least 16) keeps those planes in cache;
    every point's sum is the same whatever the chunk.
    """
    if chunk is None:
        chunk = max(16, min(1024, 2 ** 15 // max(int(faces.shape[0]), 1)))
    tri = vertices[faces]  # (F, 3, 3): corner, coordinate
    (ax0, ay0, az0), (bx0, by0, bz0), (cx0, cy0, cz0) = (
        [tri[:, k, d].contiguous() for d in range(3)] for k in range(3))
    out = []
    for start in range(0, points.shape[0], chunk):
        p = points[start:start + chunk]
        px, py, pz = p[:, 0:1], p[:, 1:2], p[:, 2:3]  # (C, 1)
        ax, ay, az = ax0 - px, ay0 - py, az0 - pz  # (C, F) each: corners relative to p
        bx, by, bz = bx0 - px, by0 - py, bz0 - pz
        cx, cy, cz = cx0 - px, cy0 - py, cz0 - pz
        la = (ax * ax + ay * ay + az * az).sqrt()
        lb = (bx * bx + by * by + bz * bz).sqrt()
        lc = (cx * cx + cy * cy + cz * cz).sqrt()
        det = ax * (by * cz - bz * cy) + ay * (bz * cx - bx * cz) + az * (bx * cy - by * cx)
        denom = (la * lb * lc + (ax * bx + ay * by + az * bz) * lc
                 + (bx * cx + by * cy + bz * cz) * la + (cx * ax + cy * ay + cz * az) * lb)
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
