"""Meshes from a density field: a grid over the object cube, marching cubes, vertex colours.

A *field* is any callable ``points (1, N, 3) -> (rgb_logits (1, N, 3), density (1, N, 1))``,
e.g. ``lambda p: net.query(p, latent[i:i + 1])``.

Coarse-to-fine (``coarse_factor = k > 1``): the field is queried on every k-th grid point, and
at full resolution only inside coarse cells whose corners straddle the threshold (plus a
one-cell margin). Elsewhere the fine values are the trilinear upsampling of the coarse ones: a
convex combination of corners that are all on one side of the threshold stays on that side, so
marching cubes finds no surface there, exactly as the dense grid would not (thin parts that
fall between coarse points are the one thing it can miss).

The level is either an absolute density (``threshold``) or, with ``peak_fraction = f > 0``, a
fraction of the field's own peak density on the (coarse) grid. An absolute level is in the
units of one model's density range (5 was chosen on the validation split for
``model.density_scale`` 10); a peak-relative level needs no re-tuning for models trained with
another scale, or whose whole density range fine-tuning moved (docs/results.md, "The world's
surface level": how the level was chosen, and ``benchmarks/mesh_level.py`` to choose it again).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from pytorch3d.ops.marching_cubes import marching_cubes

from ss3d.files import atomic_path

__all__ = ["GRID_HALF", "ExtractedMesh", "density_grid", "extract_mesh", "write_obj"]

# The grid spans slightly more than the object cube ([-0.5, 0.5]^3, density forced to 0 beyond
# ss3d.model.CUBE_HALF = 0.52), so that surfaces touching the cube are closed.
GRID_HALF = 0.55
FieldFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class ExtractedMesh:
    """verts ``(V, 3)`` float32 in object coordinates, faces ``(F, 3)`` int64, colours ``(V, 3)``
    in [0, 1]; ``queries``: how many points the field was evaluated at for the density grid;
    ``level``: the density of the extracted surface (inside is ``density > level``)."""

    verts: torch.Tensor
    faces: torch.Tensor
    colors: torch.Tensor
    queries: int
    level: float = 5.0

    @property
    def empty(self) -> bool:
        return self.faces.shape[0] == 0


def _grid_points(resolution: int, half: float, device: torch.device) -> torch.Tensor:
    """``(R, R, R, 3)`` points indexed ``[z, y, x]`` (PyTorch3D's ``(D, H, W)`` volume order)."""
    lin = torch.linspace(-half, half, resolution, device=device)
    z, y, x = torch.meshgrid(lin, lin, lin, indexing="ij")
    return torch.stack([x, y, z], dim=-1)


@torch.no_grad()
def _query_density(field: FieldFn, points: torch.Tensor, chunk: int) -> torch.Tensor:
    """Density at ``points (N, 3)`` -> ``(N,)``, in chunks of ``chunk`` points."""
    out = [field(points[None, s:s + chunk])[1].reshape(-1).float()
           for s in range(0, points.shape[0], chunk)]
    return torch.cat(out) if out else points.new_zeros(0)


@torch.no_grad()
def density_grid(field: FieldFn, resolution: int = 64, *, coarse_factor: int = 1,
                 threshold: float = 5.0, peak_fraction: float = 0.0,
                 half: float = GRID_HALF, device: torch.device | str = "cpu",
                 chunk: int = 65536) -> tuple[torch.Tensor, int, float]:
    """Density on an ``R^3`` grid ``(R, R, R)`` (``[z, y, x]``), the number of queries and the
    surface level (``threshold``, or ``peak_fraction`` × the peak of the coarse grid).

    With ``coarse_factor = k > 1`` the resolution is rounded up so that ``(R - 1)`` is a
    multiple of ``k`` (coarse points then coincide with fine points).
    """
    if not 0.0 <= peak_fraction < 1.0:
        raise ValueError(f"peak_fraction must be in [0, 1), got {peak_fraction}")
    device = torch.device(device)
    if coarse_factor <= 1:
        pts = _grid_points(resolution, half, device)
        grid = _query_density(field, pts.reshape(-1, 3), chunk).reshape(pts.shape[:3])
        level = peak_fraction * float(grid.max()) if peak_fraction > 0 else threshold
        return grid, resolution ** 3, level
    k = coarse_factor
    coarse_res = -(-(resolution - 1) // k) + 1
    resolution = (coarse_res - 1) * k + 1
    coarse_pts = _grid_points(coarse_res, half, device)
    coarse = _query_density(field, coarse_pts.reshape(-1, 3), chunk).reshape(coarse_pts.shape[:3])
    if peak_fraction > 0:
        threshold = peak_fraction * float(coarse.max())
    inside = (coarse > threshold).float()[None, None]
    # a cell is active when its 8 corners disagree; dilate by one cell for safety
    corner_max = F.max_pool3d(inside, 2, stride=1)
    corner_min = -F.max_pool3d(-inside, 2, stride=1)
    active = (corner_max != corner_min).float()
    active = F.max_pool3d(active, 3, stride=1, padding=1)[0, 0] > 0  # (Rc-1)^3 cells
    # fine grid: trilinear upsampling of the coarse values, then the active cells exactly
    fine = F.interpolate(coarse[None, None], size=(resolution,) * 3, mode="trilinear",
                         align_corners=True)[0, 0]
    need = torch.zeros((resolution,) * 3, dtype=torch.bool, device=device)
    cells = active.nonzero()
    for offset in range(k + 1):  # mark the (k+1)^3 fine points of every active cell
        for dy in range(k + 1):
            for dx in range(k + 1):
                need[cells[:, 0] * k + offset, cells[:, 1] * k + dy, cells[:, 2] * k + dx] = True
    # coarse points are already known exactly
    known = torch.zeros_like(need)
    known[::k, ::k, ::k] = True
    need &= ~known
    fine_pts = _grid_points(resolution, half, device)[need]
    fine[need] = _query_density(field, fine_pts, chunk)
    return fine, coarse_res ** 3 + int(fine_pts.shape[0]), threshold


@torch.no_grad()
def extract_mesh(field: FieldFn, resolution: int = 64, threshold: float = 5.0, *,
                 peak_fraction: float = 0.0, coarse_factor: int = 1, half: float = GRID_HALF,
                 device: torch.device | str = "cpu", chunk: int = 65536) -> ExtractedMesh:
    """Marching cubes (PyTorch3D) of ``density = threshold`` (or of ``peak_fraction`` × the
    field's peak density, when > 0); colours from the colour head."""
    device = torch.device(device)
    grid, queries, threshold = density_grid(field, resolution, coarse_factor=coarse_factor,
                                            threshold=threshold, peak_fraction=peak_fraction,
                                            half=half, device=device, chunk=chunk)
    if not ((grid > threshold).any() and (grid <= threshold).any()):
        empty = torch.zeros(0, 3)
        return ExtractedMesh(empty, torch.zeros(0, 3, dtype=torch.long), empty, queries,
                             threshold)
    # PyTorch3D's marching cubes runs on the CPU here (its C++ kernel) and returns local
    # coordinates in [-1, 1] with x along W, y along H, z along D — our [z, y, x] grid order.
    verts, faces = marching_cubes(grid[None].cpu(), isolevel=threshold, return_local_coords=True)
    verts, faces = verts[0] * half, faces[0].long()
    if faces.shape[0] == 0:
        empty = torch.zeros(0, 3)
        return ExtractedMesh(empty, torch.zeros(0, 3, dtype=torch.long), empty, queries,
                             threshold)
    colors = []
    for s in range(0, verts.shape[0], chunk):
        rgb_logits, _ = field(verts[None, s:s + chunk].to(device))
        colors.append(torch.sigmoid(rgb_logits[0].float()).cpu())
    return ExtractedMesh(verts.float(), faces, torch.cat(colors), queries, threshold)


def write_obj(mesh: ExtractedMesh, path: str | Path) -> Path:
    """Write a vertex-coloured OBJ (``v x y z r g b``), atomically."""
    path = Path(path)
    lines = [f"# ss3d mesh: {mesh.verts.shape[0]} vertices, {mesh.faces.shape[0]} faces"]
    v = np.concatenate([mesh.verts.numpy(), mesh.colors.numpy()], axis=1)
    lines += [f"v {a:.5f} {b:.5f} {c:.5f} {r:.4f} {g:.4f} {bl:.4f}" for a, b, c, r, g, bl in v]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in mesh.faces.tolist()]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path
