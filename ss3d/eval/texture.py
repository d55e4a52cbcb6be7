"""Mesh colours read from the input image: the side of a mesh that the input view sees takes
that view's colours.

Why: the colour head is close to one colour per category (README: four test cars whose mean
colours differ all render as the same brown), because a global latent into a small SIREN does
not carry an instance's colours. The image does. CMR and U-CMR sample the input image through a
predicted texture flow; with no texture space here, the sampling goes through a camera instead:

1. :func:`input_view_camera`: the camera from which the model's own field best explains the
   input image (the self-training pose grid, scored with the self-training loss on the image
   downsampled to ``selftrain.score_size``). No ground-truth camera is used: the field decides,
   in whatever frame the field is given (the learned frame, or the true one after alignment).
2. :func:`image_colours`: every mesh vertex that this camera sees (PyTorch3D's rasteriser
   z-buffer) and that projects onto the object mask takes the image's colour there (bilinear);
   the other vertices keep the colour head's.

A camera the grid gets wrong (e.g. front and back swapped) still paints the image onto the
surface that explains the silhouette from that camera, so the mesh seen from there looks like
the input, and the hidden side keeps the field's colours.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from pytorch3d.renderer import MeshRasterizer, RasterizationSettings
from pytorch3d.structures import Meshes

from ss3d.cameras import Intrinsics, camera_to_world_opengl, project_points, to_pytorch3d_cameras
from ss3d.config import ExperimentConfig
from ss3d.eval.mesh import GRID_HALF, ExtractedMesh
from ss3d.image_metrics import mask_iou, psnr
from ss3d.scoring import downsampled, field_image_scores, pose_grid
from ss3d.volume import render_network

__all__ = ["image_colours", "input_view_camera", "input_view_fit", "paint_from_input"]

#: A field for ``n`` cameras at once: ``n -> (points (n, N, 3) -> (rgb_logits, density))``.
FieldFactory = Callable[[int], Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]]


@torch.no_grad()
def input_view_camera(field_for: FieldFactory, image: torch.Tensor, mask: torch.Tensor,
                      cfg: ExperimentConfig, fov_degrees: float | None = None,
                      chunk: int = 72, refine: int | None = None) -> tuple[float, ...]:
    """``(azimuth, elevation, distance)`` of the pose-grid camera whose render of the field best
    matches ``image (3, S, S)`` (masked RGB in [0, 1]) and ``mask (S, S)``, taken with a field
    of view of ``fov_degrees`` (default ``render.fov_degrees``). With ``selftrain.offsets``
    every grid camera is scored with the principal-point offset that meets the image's box
    (as self-training's grid start is), and the camera is ``(azimuth, elevation, distance,
    du, dv)``: the one camera model of everything that places a photo.

    The grid (``selftrain.grid_*``), the resolution (``selftrain.score_size``), the samples
    per ray (``selftrain.grid_samples``) and the loss are self-training's grid start, so the
    camera is the one self-training would start this image from (without the pose prior, which
    lives in the pre-trained frame only).

    Coarse to fine: every grid camera is scored at half the resolution (a quarter of the
    rays), and only the ``refine`` best are scored at full resolution, where the best of them
    is chosen; ``refine = 0`` scores every camera at full resolution. ``refine`` defaults to
    ``evaluate.camera_refine`` (what it costs and how often it keeps the exact search's camera:
    docs/results.md, "The command line and reconstruction").
    """
    fov_degrees = cfg.render.fov_degrees if fov_degrees is None else fov_degrees
    refine = cfg.evaluate.camera_refine if refine is None else refine
    grid = pose_grid(cfg)
    size = cfg.selftrain.score_size
    candidates = torch.arange(grid[0].numel())
    if 0 < refine < candidates.numel() and size // 2 >= 4:
        coarse, _ = _grid_losses(field_for, grid, candidates, image, mask, size // 2,
                                 fov_degrees, cfg, chunk)
        candidates = coarse.argsort()[:refine].sort().values  # in grid order: ties as before
    losses, offsets = _grid_losses(field_for, grid, candidates, image, mask, size, fov_degrees,
                                   cfg, chunk)
    pick = int(losses.argmin())
    best = int(candidates[pick])
    camera = tuple(float(c[best]) for c in grid)
    return camera if offsets is None else camera + tuple(float(v) for v in offsets[pick])


def _grid_losses(field_for: FieldFactory, grid: tuple[torch.Tensor, ...], rows: torch.Tensor,
                 image: torch.Tensor, mask: torch.Tensor, size: int, fov_degrees: float,
                 cfg: ExperimentConfig, chunk: int
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Render losses ``(len(rows),)`` of the grid cameras ``rows`` against the input
    downsampled to ``size`` (every pixel a ray), and with ``selftrain.offsets`` the offsets
    ``(len(rows), 2)`` that meet the input's box (else None)."""
    target = downsampled(image[None], mask[None, None], size)[0]
    intrinsics = Intrinsics.from_fov(fov_degrees, target.shape[-1])
    align = cfg.selftrain.offsets
    losses, offsets = [], []
    for s in range(0, rows.numel(), chunk):
        # rows may live on the field's device (the coarse pass's argsort); the grid is on the CPU
        cams = [c[rows[s:s + chunk].to(c.device)].to(target.device) for c in grid]
        loss, moved = field_image_scores(field_for(cams[0].numel()), *cams, target, intrinsics,
                                         cfg, cfg.selftrain.grid_samples, align=align)
        losses.append(loss)
        offsets.append(moved)
    return torch.cat(losses), torch.cat(offsets).cpu() if align else None


def _camera_offset(camera: tuple[float, ...]) -> torch.Tensor | None:
    """The ``(1, 2)`` principal-point offset of a camera tuple (None when it has none)."""
    return torch.tensor([camera[3:5]], dtype=torch.float32) if len(camera) > 3 else None


@torch.no_grad()
def input_view_fit(field: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                   image: torch.Tensor, mask: torch.Tensor, camera: tuple[float, ...],
                   intrinsics: Intrinsics, cfg: ExperimentConfig) -> dict[str, float]:
    """How well a reconstruction explains its own input: the field of one image rendered from
    the input's ``camera`` (``(azimuth, elevation, distance)``, optionally ``du, dv``: the
    known camera of a render, or :func:`input_view_camera` on a photo) at the input's
    resolution, against ``image (3, S, S)`` and ``mask (S, S)``.

    Returns ``input_mask_iou`` (:func:`ss3d.image_metrics.mask_iou`) and ``input_psnr`` (the
    colour error, dB, over the whole masked image)."""
    device = image.device
    offset = _camera_offset(camera)
    rendered = render_network(field, *(torch.tensor([v], device=device) for v in camera[:3]),
                              intrinsics, cfg.model,
                              offset=None if offset is None else offset.to(device))
    rgb = rendered["rgb"][0].cpu().clamp(0, 1)
    return {"input_mask_iou": float(mask_iou(rendered["mask"][0].cpu(), mask.cpu())),
            "input_psnr": float(psnr(rgb, image.cpu().permute(1, 2, 0)))}


def paint_from_input(mesh: ExtractedMesh, field_for: FieldFactory, image: torch.Tensor,
                     mask: torch.Tensor, cfg: ExperimentConfig,
                     fov_degrees: float | None = None) -> ExtractedMesh:
    """:func:`image_colours` through the :func:`input_view_camera` of ``field_for`` (the field
    ``mesh`` was extracted from, in the same frame): what figures, turntables and
    ``ss3d reconstruct`` show."""
    if mesh.empty:
        return mesh
    fov_degrees = cfg.render.fov_degrees if fov_degrees is None else fov_degrees
    camera = input_view_camera(field_for, image, mask, cfg, fov_degrees)
    return image_colours(mesh, image.cpu(), mask.cpu(), camera, fov_degrees)


@torch.no_grad()
def image_colours(mesh: ExtractedMesh, image: torch.Tensor, mask: torch.Tensor,
                  camera: tuple[float, ...], fov_degrees: float,
                  depth_tolerance: float | None = None, smooth_steps: int = 2) -> ExtractedMesh:
    """``mesh`` with the colours of ``image (3, S, S)`` on the vertices that ``camera``
    (azimuth, elevation, distance, optionally a principal-point offset du, dv; the input view)
    sees on the object ``mask (S, S)``.

    A vertex is seen when its depth is within ``depth_tolerance`` (default: 1.5 grid cells of a
    48-voxel grid) of the z-buffer at its pixel. The seen/unseen weights and the image colours
    are then averaged ``smooth_steps`` times over each vertex's one-ring, and the colour is
    ``w · image + (1 - w) · colour head``: single unseen vertices among seen ones (pits of a
    bumpy marching-cubes surface) stop showing as specks, and the border to the hidden side
    is a blend instead of a seam. Returns a new mesh; the input is unchanged.
    """
    if mesh.empty:
        return mesh
    size = image.shape[-1]
    intrinsics = Intrinsics.from_fov(fov_degrees, size)
    verts = mesh.verts.float().cpu()
    tol = depth_tolerance if depth_tolerance is not None else 1.5 * 2 * GRID_HALF / 47
    offset = _camera_offset(camera)
    uv, depth = project_points(verts[None], *camera[:3], intrinsics, offset=offset)
    uv, depth = uv[0], depth[0]
    cameras = to_pytorch3d_cameras(*camera[:3], intrinsics, offset=offset)
    rasteriser = MeshRasterizer(cameras=cameras, raster_settings=RasterizationSettings(
        image_size=(size, size), faces_per_pixel=1, blur_radius=0.0))
    front = _front_faces(verts, mesh.faces.cpu(), camera[:3])
    zbuf = rasteriser(Meshes([verts], [front])).zbuf[0, ..., 0]  # (S, S), -1: empty
    col = uv[:, 0].floor().long().clamp(0, size - 1)
    row = uv[:, 1].floor().long().clamp(0, size - 1)
    inside = ((uv >= 0) & (uv < size)).all(-1)
    z = zbuf[row, col]
    seen = inside & (z > 0) & (depth <= z + tol) & (mask.cpu()[row, col] > 0.5)
    # bilinear samples at the projections (grid_sample: -1 and 1 are the outer pixel edges) of
    # the masked image and of the mask: their ratio keeps the black background out of the
    # colours at the silhouette
    grid = (uv / size * 2.0 - 1.0)[None, None]  # (1, 1, V, 2)
    planes = torch.cat([image.float().cpu() * (mask.cpu()[None] > 0.5), mask.cpu()[None] > 0.5])
    sampled = F.grid_sample(planes[None].float(), grid, mode="bilinear",
                            align_corners=False)[0, :, 0].T  # (V, 4)
    rgb = (sampled[:, :3] / sampled[:, 3:].clamp(min=1e-6)).clamp(0, 1)
    weight = seen.float()[:, None]
    painted = rgb * weight
    faces = mesh.faces.cpu()
    for _ in range(smooth_steps):
        weight, painted = _one_ring_mean(weight, faces), _one_ring_mean(painted, faces)
    image_rgb = painted / weight.clamp(min=1e-6)
    colors = weight * image_rgb + (1.0 - weight) * mesh.colors.cpu()
    return ExtractedMesh(mesh.verts, mesh.faces, colors, mesh.queries, mesh.level)


def _front_faces(verts: torch.Tensor, faces: torch.Tensor,
                 camera: tuple[float, float, float]) -> torch.Tensor:
    """The ``faces (F, 3)`` of a closed mesh that do not face away from ``camera``.

    The nearest surface along any ray into a closed surface is a face turned towards the
    camera, so the z-buffer of these faces is the whole mesh's; PyTorch3D's CPU rasteriser
    tests every pixel against every face (it has no binning on the CPU), so half the faces is
    half its time. The orientation (outward or inward normals) is read from the sign of the
    mesh's volume. Marching cubes in the object cube gives a closed mesh unless the surface
    reaches the grid's border; a back face seen through such an opening is left out.
    """
    tri = verts[faces]  # (F, 3, 3)
    normals = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    outward = (tri[:, 0] * normals).sum() >= 0  # 6 × the signed volume
    centre = camera_to_world_opengl(*camera)[0, :3, 3].to(verts.dtype)
    towards = (normals * (tri.mean(1) - centre)).sum(-1)  # < 0: an outward normal faces us
    keep = towards <= 0 if outward else towards >= 0
    return faces[keep]


def _one_ring_mean(values: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """The mean of each vertex's ``values (V, C)`` and its neighbours' along the ``faces``'
    edges (an edge shared by two faces counts twice)."""
    edges = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = torch.cat([edges, edges.flip(1)])  # (2E, 2): both directions
    total = values.clone().index_add_(0, edges[:, 0], values[edges[:, 1]])
    count = torch.ones(values.shape[0], 1).index_add_(0, edges[:, 0],
                                                     torch.ones(edges.shape[0], 1))
    return total / count
