"""Pictures of meshes: pyrender views (the renderer that made the data) and turntable GIFs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from ss3d.cameras import FIGURE_DISTANCE, FIGURE_POSES, Intrinsics
from ss3d.data.render import MeshRenderer  # imports triton before pyrender (see there)
from ss3d.eval.mesh import ExtractedMesh
from ss3d.files import atomic_path

__all__ = ["figure_renderer", "mesh_views", "to_trimesh", "write_turntable"]

def to_trimesh(mesh: ExtractedMesh) -> trimesh.Trimesh:
    colors = (mesh.colors.clamp(0, 1).numpy() * 255).astype(np.uint8)
    return trimesh.Trimesh(mesh.verts.numpy(), mesh.faces.numpy(), process=False,
                           vertex_colors=np.concatenate(
                               [colors, np.full((len(colors), 1), 255, np.uint8)], axis=1))


def figure_renderer(size: int = 96, fov_degrees: float = 40.0,
                    background: float = 1.0) -> MeshRenderer:
    """A renderer for :func:`mesh_views`; reuse it (creating one is slow on CPU EGL)."""
    return MeshRenderer(Intrinsics.from_fov(fov_degrees, size), light_intensity=3.0,
                        ambient=0.45, background=(background,) * 3)


def mesh_views(meshes: Sequence[trimesh.Trimesh] | trimesh.Trimesh,
               poses: Sequence[tuple[float, float]] = FIGURE_POSES, size: int = 96,
               distance: float = FIGURE_DISTANCE, renderer: MeshRenderer | None = None
               ) -> list[np.ndarray]:
    """``(size, size, 3)`` uint8 renders of a mesh (or the parts of one) from ``poses``
    (azimuth, elevation in degrees); an empty mesh gives blank images. ``renderer`` (from
    :func:`figure_renderer`) sets the size when given."""
    if isinstance(meshes, trimesh.Trimesh):
        meshes = [meshes]
    meshes = [m for m in meshes if len(m.faces)]
    own = renderer is None
    renderer = renderer or figure_renderer(size)
    try:
        if not meshes:
            h, w = renderer.intrinsics.height, renderer.intrinsics.width
            value = int(255 * float(renderer.background[0]))
            return [np.full((h, w, 3), value, np.uint8) for _ in poses]
        scene = renderer.scene_for(meshes)
        return [renderer.render(scene, az, el, distance)[0] for az, el in poses]
    finally:
        if own:
            renderer.close()


def write_turntable(meshes: Sequence[trimesh.Trimesh] | trimesh.Trimesh, path: str | Path,
                    frames: int = 24, size: int = 128, elevation: float = 20.0,
                    seconds: float = 3.0, renderer: MeshRenderer | None = None) -> Path:
    """A looping GIF of the mesh turning once around the vertical axis (atomic write)."""
    poses = [(360.0 * k / frames, elevation) for k in range(frames)]
    images = [Image.fromarray(v) for v in mesh_views(meshes, poses, size, renderer=renderer)]
    path = Path(path)
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                       duration=int(1000 * seconds / frames), loop=0)
    return path
