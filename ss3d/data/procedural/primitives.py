"""Closed mesh primitives and placement transforms of the procedural categories.

Every primitive is a closed, outward-oriented ``(vertices, faces)`` pair (:data:`Mesh`): unit
box, cylinder and sphere (cached), prisms from simple polygons (ear-clipping caps), solids of
revolution about +Y (or +Z). :func:`_part_uv` gives a part's own cylindrical UVs before it is
placed; :func:`_tf`, :func:`_align_z` and :func:`_rot` build the 4×4 / 3×3 transforms that place
parts.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np

Mesh = tuple[np.ndarray, np.ndarray]


def _outward(vertices: np.ndarray, faces: np.ndarray) -> Mesh:
    """Flip the faces of a closed mesh whose signed volume is negative."""
    tri = vertices[faces]
    volume = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum()
    return (vertices, faces[:, ::-1].copy()) if volume < 0 else (vertices, faces)


@cache
def _unit_box() -> Mesh:
    import trimesh  # imported where used: it is slow to import
    m = trimesh.creation.box(extents=(1, 1, 1))
    return np.asarray(m.vertices, float), np.asarray(m.faces)


@cache
def _unit_cylinder(sections: int) -> Mesh:
    """Radius 1, height 1 along +Z, centred."""
    import trimesh  # imported where used: it is slow to import
    m = trimesh.creation.cylinder(radius=1.0, height=1.0, sections=sections)
    return np.asarray(m.vertices, float), np.asarray(m.faces)


@cache
def _unit_sphere(subdivisions: int) -> Mesh:
    import trimesh  # imported where used: it is slow to import
    m = trimesh.creation.icosphere(subdivisions=subdivisions)
    return np.asarray(m.vertices, float), np.asarray(m.faces)


def _rounded_rect(w: float, h: float, r: float, n: int = 4) -> np.ndarray:
    """A ``w × h`` rectangle centred at the origin with corners of radius ``r`` (``n`` points
    per corner): the outline of screens, phones and panels."""
    r = min(r, 0.49 * w, 0.49 * h)
    pts = []
    for cx, cy, a0 in ((w / 2 - r, h / 2 - r, 0), (-w / 2 + r, h / 2 - r, 90),
                       (-w / 2 + r, -h / 2 + r, 180), (w / 2 - r, -h / 2 + r, 270)):
        a = np.radians(a0 + np.linspace(0, 90, n))
        pts += list(np.c_[cx + r * np.cos(a), cy + r * np.sin(a)])
    return np.array(pts)


def _triangulate(polygon: np.ndarray) -> np.ndarray:
    """Ear-clipping triangulation ``(N-2, 3)`` of a simple counter-clockwise polygon."""
    idx = list(range(len(polygon)))
    tris = []

    def cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))

    while len(idx) > 3:
        for tolerance in (1e-12, -np.inf):  # proper ears first, else clip anything
            for k in range(len(idx)):
                i0, i1, i2 = idx[k - 1], idx[k], idx[(k + 1) % len(idx)]
                a, b, c = polygon[i0], polygon[i1], polygon[i2]
                if cross(a, b, c) <= tolerance:
                    continue  # reflex (or flat) corner
                if tolerance > -np.inf and any(
                        cross(a, b, p) >= 0 and cross(b, c, p) >= 0 and cross(c, a, p) >= 0
                        for j in idx if j not in (i0, i1, i2) for p in (polygon[j],)):
                    continue  # another vertex inside: not an ear
                tris.append((i0, i1, i2))
                idx.pop(k)
                break
            else:
                continue
            break
    tris.append(tuple(idx))
    return np.array(tris)


def _prism(polygon: np.ndarray, depth: float) -> Mesh:
    """A simple ``(N, 2)`` polygon in the XY plane extruded over ``z ∈ [-depth/2, depth/2]``."""
    p = np.asarray(polygon, float)
    if np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1]) < 0:
        p = p[::-1]  # counter-clockwise
    n = len(p)
    v = np.concatenate([np.c_[p, np.full(n, depth / 2)], np.c_[p, np.full(n, -depth / 2)]])
    i = np.arange(n)
    j = (i + 1) % n
    cap = _triangulate(p)
    faces = np.concatenate([cap, n + cap[:, ::-1],  # top and bottom caps
                            np.c_[i, n + i, n + j], np.c_[i, n + j, j]])  # sides
    return _outward(v, faces)


def _revolve(profile: np.ndarray, sections: int, phase: float = 0.0) -> Mesh:
    """A closed solid of revolution about +Y.

    ``profile`` is ``(K, 2)`` of ``(radius, y)`` from a point on the axis back to the axis
    (the first and last radii are 0). ``sections=4`` with ``phase=pi/4`` gives a square section
    with axis-aligned faces (the radius is then the circumradius).
    """
    p = np.asarray(profile, float)
    rings = p[1:-1]
    a = phase + 2 * np.pi * np.arange(sections) / sections
    ring_v = np.stack([rings[:, :1] * np.cos(a), np.repeat(rings[:, 1:], sections, 1),
                       rings[:, :1] * np.sin(a)], -1).reshape(-1, 3)
    v = np.concatenate([[[0.0, p[0, 1], 0.0]], ring_v, [[0.0, p[-1, 1], 0.0]]])
    k = np.arange(sections)
    kn = (k + 1) % sections
    faces = [np.c_[np.zeros(sections, int), 1 + kn, 1 + k]]
    for r in range(len(rings) - 1):
        lo, hi = 1 + r * sections, 1 + (r + 1) * sections
        faces += [np.c_[lo + k, lo + kn, hi + kn], np.c_[lo + k, hi + kn, hi + k]]
    last, end = 1 + (len(rings) - 1) * sections, len(v) - 1
    faces.append(np.c_[np.full(sections, end), last + k, last + kn])
    return _outward(v, np.concatenate(faces))


def _part_uv(vertices: np.ndarray, axis: int) -> np.ndarray:
    """Cylindrical UV around ``axis`` of the part's own bounding box (before placement)."""
    lo, hi = vertices.min(0), vertices.max(0)
    v = vertices - (lo + hi) / 2
    extent = np.maximum(hi - lo, 1e-6)
    along = (v[:, axis] / extent[axis]) + 0.5
    other = [a for a in range(3) if a != axis]
    angle = (np.arctan2(v[:, other[1]], v[:, other[0]]) / (2 * np.pi)) + 0.5
    return np.stack([along, angle], axis=1)


def _tf(center: Sequence[float] = (0, 0, 0), rotation: np.ndarray | None = None) -> np.ndarray:
    m = np.eye(4)
    if rotation is not None:
        m[:3, :3] = rotation
    m[:3, 3] = center
    return m


def _align_z(direction: Sequence[float]) -> np.ndarray:
    """Rotation taking +Z onto ``direction``."""
    import trimesh  # imported where used: it is slow to import
    return trimesh.geometry.align_vectors([0, 0, 1], np.asarray(direction, float))[:3, :3]


def _rot(axis: str, degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


# local XY polygon + local Z thickness → world XZ planform + world Y thickness
_PLANFORM = _rot("x", 90)


def _revolve_z(profile: np.ndarray, sections: int) -> Mesh:
    """:func:`_revolve` about +Z instead of +Y."""
    v, f = _revolve(profile, sections)
    return _outward(v @ _rot("x", 90).T, f)
