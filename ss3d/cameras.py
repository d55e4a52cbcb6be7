"""The single camera convention of ss3d (README: Conventions).

Canonical object frame: ShapeNetCore v2's, +Y up and front -Z, object centred at the origin
inside [-0.5, 0.5]^3.
A camera is given by spherical coordinates ``(azimuth, elevation, distance)`` in degrees /
world units, exactly as PyTorch3D's ``look_at_view_transform(dist, elev, azim)``: it sits at

    x = d cos(elev) sin(azim),  y = d sin(elev),  z = d cos(elev) cos(azim)

and looks at the origin with world +Y up. Azimuth 0 looks from +Z towards -Z: it sees an
object's back, azimuth 180 its front, azimuth 90 (camera on +X) its right side.

Everything that needs a camera goes through this module:

* :func:`spherical_to_pytorch3d` → ``R, T`` of PyTorch3D (row-vector convention
  ``X_view = X_world @ R + T``, view frame +X left, +Y up, +Z forward);
* :func:`camera_to_world_opengl` → 4×4 camera-to-world pose for pyrender (OpenGL: +X right,
  +Y up, camera looks along -Z);
* :func:`pixel_rays` → world-space ray origins and unit directions through pixel centres;
* :func:`project_points` → pixel coordinates of world points;
* :func:`pose_to_spherical` → back from a camera-to-world pose.

Pixels: ``u`` to the right, ``v`` down, pixel ``(i, j)`` covers ``[j, j+1) × [i, i+1)`` so its
centre is ``(j + 0.5, i + 0.5)``. Intrinsics are a focal length in pixels and a principal point
in pixels (``(W/2, H/2)`` for a centred camera). No other module may add angle offsets.

All functions are batched over a leading dimension and differentiable in the spherical
parameters. They work in float32 (PyTorch3D's ``look_at_rotation`` supports no other dtype).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from pytorch3d.renderer import PerspectiveCameras, look_at_view_transform

__all__ = [
    "FIGURE_DISTANCE",
    "FIGURE_POSES",
    "Intrinsics",
    "camera_centers",
    "camera_to_world_opengl",
    "focal_from_fov",
    "pixel_rays",
    "pose_to_spherical",
    "principal_points",
    "project_points",
    "sample_pixels",
    "spherical_to_pytorch3d",
    "to_pytorch3d_cameras",
]

# The views every figure shows a shape from (network renders and mesh renders alike): three
# azimuths a third of a turn apart, the last from below, so that every side is seen once.
FIGURE_POSES: tuple[tuple[float, float], ...] = ((30.0, 20.0), (150.0, 20.0), (270.0, -15.0))
FIGURE_DISTANCE = 2.0

# PyTorch3D view axes (+X left, +Z forward) → OpenGL camera axes (+X right, +Z backward).
_P3D_TO_GL_AXES = torch.tensor([-1.0, 1.0, -1.0])


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels, shared by every image of a dataset.

    Attributes:
        focal: focal length in pixels (square pixels).
        width, height: image size in pixels.
        cx, cy: principal point in pixels; ``None`` means the image centre.
    """

    focal: float
    width: int
    height: int
    cx: float | None = None
    cy: float | None = None

    @property
    def principal_point(self) -> tuple[float, float]:
        return (self.width / 2.0 if self.cx is None else self.cx,
                self.height / 2.0 if self.cy is None else self.cy)

    @classmethod
    def from_fov(cls, fov_degrees: float, size: int) -> Intrinsics:
        """Square image of side ``size`` with the given (full) field of view."""
        return cls(focal=focal_from_fov(fov_degrees, size), width=size, height=size)

    def matrix(self) -> torch.Tensor:
        """3×3 K in the OpenCV sense (u right, v down, camera looking along +Z)."""
        cx, cy = self.principal_point
        return torch.tensor([[self.focal, 0.0, cx], [0.0, self.focal, cy], [0.0, 0.0, 1.0]])

    def to_dict(self) -> dict[str, float]:
        cx, cy = self.principal_point
        return {"focal": self.focal, "width": self.width, "height": self.height,
                "cx": cx, "cy": cy}


def focal_from_fov(fov_degrees: float, size: int) -> float:
    """Focal length in pixels for a full field of view over ``size`` pixels."""
    return 0.5 * size / math.tan(math.radians(fov_degrees) / 2.0)


def _as_batch(*values: torch.Tensor | float) -> list[torch.Tensor]:
    tensors = [torch.as_tensor(v, dtype=torch.get_default_dtype()) if not torch.is_tensor(v)
               else v for v in values]
    # broadcast_tensors, not broadcast_shapes: the latter imports torch.fx's symbolic shapes
    # (and SymPy) on its first call, which every `ss3d reconstruct` would pay for
    return [t.reshape(-1) for t in torch.broadcast_tensors(*tensors)]


def spherical_to_pytorch3d(azimuth: torch.Tensor | float, elevation: torch.Tensor | float,
                           distance: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """PyTorch3D extrinsics for cameras looking at the origin.

    Args:
        azimuth, elevation: degrees, shape ``(B,)`` or broadcastable.
        distance: world units, shape ``(B,)`` or broadcastable.

    Returns:
        ``R (B, 3, 3)`` and ``T (B, 3)`` such that ``X_view = X_world @ R + T``.
    """
    azimuth, elevation, distance = _as_batch(azimuth, elevation, distance)
    # PyTorch3D's own look_at is differentiable in all three parameters; we only wrap it.
    return look_at_view_transform(dist=distance, elev=elevation, azim=azimuth,
                                  device=distance.device)


def camera_centers(azimuth: torch.Tensor | float, elevation: torch.Tensor | float,
                   distance: torch.Tensor | float) -> torch.Tensor:
    """World-space camera centres, ``(B, 3)``."""
    azimuth, elevation, distance = _as_batch(azimuth, elevation, distance)
    az, el = torch.deg2rad(azimuth), torch.deg2rad(elevation)
    return torch.stack([distance * torch.cos(el) * torch.sin(az), distance * torch.sin(el),
                        distance * torch.cos(el) * torch.cos(az)], dim=-1)


def camera_to_world_opengl(azimuth: torch.Tensor | float, elevation: torch.Tensor | float,
                           distance: torch.Tensor | float) -> torch.Tensor:
    """OpenGL camera-to-world poses (what pyrender's ``scene.add(camera, pose=...)`` takes).

    Returns:
        ``(B, 4, 4)``; columns 0..2 are the camera's +X (right), +Y (up), +Z (backward) axes in
        world coordinates, column 3 the camera centre.
    """
    R, T = spherical_to_pytorch3d(azimuth, elevation, distance)
    # X_view = X_world @ R + T ⇒ the columns of R are the PyTorch3D view axes in world
    # coordinates and the centre is -R T.
    center = -(R @ T.unsqueeze(-1)).squeeze(-1)
    rotation = R * _P3D_TO_GL_AXES.to(R)
    pose = torch.zeros(R.shape[0], 4, 4, dtype=R.dtype, device=R.device)
    pose[:, :3, :3] = rotation
    pose[:, :3, 3] = center
    pose[:, 3, 3] = 1.0
    return pose


def pose_to_spherical(pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of :func:`camera_to_world_opengl` for cameras that look at the origin.

    Args:
        pose: ``(B, 4, 4)`` or ``(4, 4)`` camera-to-world poses.

    Returns:
        ``azimuth (B,)`` in [0, 360), ``elevation (B,)`` in degrees and ``distance (B,)``.
    """
    pose = pose.reshape(-1, 4, 4)
    center = pose[:, :3, 3]
    distance = center.norm(dim=-1)
    elevation = torch.rad2deg(torch.asin((center[:, 1] / distance).clamp(-1.0, 1.0)))
    azimuth = torch.rad2deg(torch.atan2(center[:, 0], center[:, 2])) % 360.0
    return azimuth, elevation, distance


def pixel_rays(azimuth: torch.Tensor | float, elevation: torch.Tensor | float,
               distance: torch.Tensor | float, intrinsics: Intrinsics,
               pixels: torch.Tensor | None = None, offset: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """World-space rays through pixels.

    Args:
        azimuth, elevation, distance: ``(B,)`` spherical cameras.
        intrinsics: the shared pinhole intrinsics.
        pixels: ``(B, R, 2)`` continuous pixel coordinates ``(u, v)`` (a pixel centre is
            ``j + 0.5, i + 0.5``). ``None``: every pixel centre in row-major order,
            ``R = H * W``.
        offset: ``(B, 2)`` principal-point shifts ``(du, dv)`` in fractions of the image's
            width and height (:func:`principal_points`); ``None``: the intrinsics' own.

    Returns:
        ``origins (B, R, 3)`` and unit ``directions (B, R, 3)``.
    """
    pose = camera_to_world_opengl(azimuth, elevation, distance)
    batch = pose.shape[0]
    if pixels is None:
        pixels = pixel_grid(intrinsics.height, intrinsics.width, device=pose.device,
                            dtype=pose.dtype).reshape(1, -1, 2).expand(batch, -1, -1)
    cx, cy = principal_points(intrinsics, offset, batch)
    # OpenGL camera frame: +X right, +Y up, looking along -Z.
    x = (pixels[..., 0] - cx) / intrinsics.focal
    y = -(pixels[..., 1] - cy) / intrinsics.focal
    dirs_cam = torch.stack([x, y, -torch.ones_like(x)], dim=-1)
    dirs = dirs_cam @ pose[:, :3, :3].transpose(1, 2)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origins = pose[:, None, :3, 3].expand_as(dirs)
    return origins, dirs


def principal_points(intrinsics: Intrinsics, offset: torch.Tensor | None, batch: int
                     ) -> tuple[torch.Tensor | float, torch.Tensor | float]:
    """Principal points ``cx, cy`` of ``batch`` cameras: the intrinsics' own, moved by
    ``offset (B, 2)`` (fractions of the width and height; ``(B, 1)`` tensors are returned to
    broadcast over rays) where given.

    A principal-point shift moves the whole image and nothing else: it is what cropping a
    photo around its object's box does to the camera that took it, so a hypothesis with an
    offset can stand for a cropped photo's camera (README: Self-training).
    """
    cx, cy = intrinsics.principal_point
    if offset is None:
        return cx, cy
    offset = offset.reshape(batch, 2)
    return (cx + offset[:, :1] * intrinsics.width, cy + offset[:, 1:] * intrinsics.height)


def pixel_grid(height: int, width: int, device: torch.device | str | None = None,
               dtype: torch.dtype | None = None) -> torch.Tensor:
    """``(H, W, 2)`` pixel-centre coordinates ``(u, v)``."""
    v, u = torch.meshgrid(torch.arange(height, device=device, dtype=dtype) + 0.5,
                          torch.arange(width, device=device, dtype=dtype) + 0.5, indexing="ij")
    return torch.stack([u, v], dim=-1)


def project_points(points: torch.Tensor, azimuth: torch.Tensor | float,
                   elevation: torch.Tensor | float, distance: torch.Tensor | float,
                   intrinsics: Intrinsics, offset: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates of world points.

    Args:
        points: ``(B, P, 3)`` world points.
        offset: ``(B, 2)`` principal-point shifts as in :func:`pixel_rays`.

    Returns:
        ``uv (B, P, 2)`` pixel coordinates (same convention as :func:`pixel_rays`) and
        ``depth (B, P)``, the distance along the camera's viewing axis.
    """
    R, T = spherical_to_pytorch3d(azimuth, elevation, distance)
    view = points @ R + T[:, None, :]  # PyTorch3D view frame: +X left, +Y up, +Z forward
    depth = view[..., 2]
    cx, cy = principal_points(intrinsics, offset, view.shape[0])
    u = cx - intrinsics.focal * view[..., 0] / depth
    v = cy - intrinsics.focal * view[..., 1] / depth
    return torch.stack([u, v], dim=-1), depth


def to_pytorch3d_cameras(azimuth: torch.Tensor | float, elevation: torch.Tensor | float,
                         distance: torch.Tensor | float, intrinsics: Intrinsics,
                         offset: torch.Tensor | None = None) -> PerspectiveCameras:
    """PyTorch3D ``PerspectiveCameras`` in screen space matching our intrinsics (moved by the
    principal-point ``offset (B, 2)`` of :func:`pixel_rays` where given)."""
    R, T = spherical_to_pytorch3d(azimuth, elevation, distance)
    batch = R.shape[0]
    cx, cy = intrinsics.principal_point
    # PyTorch3D's screen space (in_ndc=False) uses the same pixel axes as ours (u right,
    # v down, origin at the top-left corner); tests/test_cameras.py checks the agreement.
    principal = torch.tensor([[cx, cy]],
                             dtype=R.dtype, device=R.device).expand(batch, -1)
    if offset is not None:
        size = torch.tensor([intrinsics.width, intrinsics.height], dtype=R.dtype)
        principal = principal + offset.reshape(batch, 2).to(R) * size.to(R.device)
    focal = torch.full((batch, 1), float(intrinsics.focal), dtype=R.dtype, device=R.device)
    return PerspectiveCameras(
        focal_length=focal, principal_point=principal, R=R, T=T, in_ndc=False,
        image_size=torch.tensor([[intrinsics.height, intrinsics.width]]).expand(batch, -1),
        device=R.device)


def sample_pixels(masks: torch.Tensor, count: int, foreground_fraction: float = 0.5,
                  generator: torch.Generator | None = None, edge_fraction: float = 0.0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` pixels of each of ``B`` images, the one sampler of every stage that trains on
    rays: a ``foreground_fraction`` share uniformly from the mask's pixels (from the whole
    image where the mask is empty), then an ``edge_fraction`` share uniformly from the
    silhouette's edge (pixels whose 3×3 neighbourhood holds both foreground and background,
    on either side of the outline; the whole image where there is none), the rest uniformly
    from the whole image, with replacement.

    Thin parts (wings, legs, handles) are a few pixels wide, so nearly all of their pixels are
    edge pixels, while uniform rays rarely land on them; with ``edge_fraction = 0`` no random
    number is drawn for the edge, so the stream is the one without it.

    Args:
        masks: ``(B, H, W)``; pixels above 0.5 are foreground.
        generator: on ``masks``' device (None: the global RNG).

    Returns:
        flat indices ``(B, count)`` (``y * W + x``) and pixel centres ``(B, count, 2)`` as
        ``(x + 0.5, y + 0.5)``, the convention of :func:`pixel_rays`.
    """
    b, h, w = masks.shape
    index = torch.randint(0, h * w, (b, count), generator=generator, device=masks.device)

    def draw(where: torch.Tensor, n: int) -> torch.Tensor:
        """``n`` pixels uniformly from the 0/1 map ``where (B, H*W)``, per image, with
        replacement (from the whole image where the map is empty)."""
        empty = where.sum(1, keepdim=True) == 0
        weights = torch.where(empty, torch.ones_like(where), where)
        return torch.multinomial(weights, n, replacement=True, generator=generator)

    if foreground_fraction + edge_fraction > 1.0:
        raise ValueError(f"foreground_fraction + edge_fraction must be at most 1, got "
                         f"{foreground_fraction} + {edge_fraction}")
    inside = (masks > 0.5).float()
    n_fg = int(round(count * foreground_fraction))
    if n_fg:
        index[:, :n_fg] = draw(inside.reshape(b, -1), n_fg)
    # both shares can round up (0.5 + 0.5 of 3 rays): the edge takes what the mask left
    n_edge = min(int(round(count * edge_fraction)), count - n_fg)
    if n_edge:
        grown = torch.nn.functional.max_pool2d(inside[:, None], 3, stride=1, padding=1)
        shrunk = -torch.nn.functional.max_pool2d(-inside[:, None], 3, stride=1, padding=1)
        index[:, n_fg:n_fg + n_edge] = draw((grown - shrunk).reshape(b, -1), n_edge)
    centres = torch.stack([(index % w).float() + 0.5, (index // w).float() + 0.5], dim=-1)
    return index, centres
