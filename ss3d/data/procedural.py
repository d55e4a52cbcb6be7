"""Built-in procedural categories, written in the ShapeNetCore v2 layout.

Nothing can be downloaded, so ss3d generates its own textured models. Each category is a
*family* of parametric assemblies of closed primitives (boxes, prisms, solids of revolution,
ellipsoids, cylinders): discrete variants (tail types, body styles, chair bases, lid types, ...)
times widely varying continuous proportions, so that a category's instances really differ in
shape after normalisation. Without that, the "category medoid" baseline (one training shape
predicted for every test shape) scores as well as a reconstruction model and the benchmark
measures recognition, not reconstruction (Tatarchenko et al., CVPR 2019);
``benchmarks/category_variation.py`` measures it.

Colours are consistent per *part* within a category (a base colour per part, e.g. the airplane
nose cone is red and the tail fin blue, with a small per-instance jitter in hue, saturation and
value), and front and back differ as on real objects (cockpit and nose, head- and tail-lights,
beak and head vs tail, screen vs lid back, seat vs back, the bin's front label and pedal), so
that colour supervision means something and front and back views are distinguishable
(near-symmetric shapes made camera selection ambiguous in our measurements).
:func:`describe_model` / :func:`part_colours` report the part colours the texture atlas uses.

Frame: +Y up; the "front" of every category points to +X (nose, hood, beak, the laptop's
screen faces +X, the chair faces +X). Models are centred and scaled to a unit bounding-box
diagonal, like ShapeNetCore v2's ``model_normalized.obj``.

Output: ``<root>/<synset>/<model_id>/models/model_normalized.{obj,mtl}`` plus the texture PNG.
Everything is deterministic in ``(category, index, seed)``.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from ss3d.config import SYNSETS
from ss3d.data.hashing import stable_rng

__all__ = ["PART_PALETTES", "PROCEDURAL_CATEGORIES", "ModelSpec", "base_colours", "describe_model",
           "generate_category", "make_model", "model_id_for", "part_colours", "write_model"]

TILE = 32  # texture tile size (pixels); atlas is ATLAS_TILES x ATLAS_TILES tiles
ATLAS_TILES = 4
# per-instance colour jitter (half-ranges) in hue, saturation, value
HSV_JITTER = (0.01, 0.05, 0.05)


# ----------------------------------------------------------------------------------------------
# Part colours
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _PartStyle:
    hsv: tuple[float, float, float]  # the category's base colour of the part
    pattern: str = "solid"  # stripes | patches | two_tone | solid (accent covers <= 1/3)
    accent: tuple[float, float, float] | None = None  # None: a darker shade of the base


PART_PALETTES: dict[str, dict[str, _PartStyle]] = {
    "airplane": {
        "fuselage": _PartStyle((0.60, 0.03, 0.95), "two_tone", (0.62, 0.75, 0.65)),
        "nose": _PartStyle((0.00, 0.85, 0.85)),
        "cockpit": _PartStyle((0.60, 0.75, 0.35)),
        "wing": _PartStyle((0.60, 0.06, 0.62), "stripes"),
        "tail": _PartStyle((0.62, 0.80, 0.75)),
        "engine": _PartStyle((0.60, 0.05, 0.32), "two_tone", (0.0, 0.0, 0.8)),
        "gear": _PartStyle((0.00, 0.00, 0.10)),
    },
    "car": {
        "body": _PartStyle((0.09, 0.85, 0.92)),
        "window": _PartStyle((0.56, 0.45, 0.40), "stripes"),
        "tyre": _PartStyle((0.00, 0.00, 0.10), "stripes", (0.0, 0.0, 0.22)),
        "rim": _PartStyle((0.60, 0.03, 0.82)),
        "headlight": _PartStyle((0.15, 0.25, 1.00)),
        "taillight": _PartStyle((0.99, 0.90, 0.80)),
        "bumper": _PartStyle((0.00, 0.00, 0.50)),
        "interior": _PartStyle((0.07, 0.55, 0.45), "patches"),
    },
    "laptop": {
        "shell": _PartStyle((0.58, 0.05, 0.78), "two_tone"),
        "screen": _PartStyle((0.62, 0.75, 0.40), "stripes", (0.58, 0.55, 0.55)),
        "keyboard": _PartStyle((0.00, 0.00, 0.12), "patches", (0.0, 0.0, 0.35)),
        "touchpad": _PartStyle((0.58, 0.08, 0.52)),
        "logo": _PartStyle((0.50, 0.60, 0.95)),
    },
    "trash_bin": {
        "body": _PartStyle((0.36, 0.65, 0.45), "two_tone"),
        "lid": _PartStyle((0.00, 0.00, 0.15)),
        "rim": _PartStyle((0.00, 0.00, 0.60)),
        "label": _PartStyle((0.14, 0.85, 0.95), "stripes", (0.0, 0.0, 0.95)),
        "pedal": _PartStyle((0.58, 0.05, 0.85)),
    },
    "chair": {
        "seat": _PartStyle((0.98, 0.70, 0.62), "patches"),
        "back": _PartStyle((0.52, 0.60, 0.50), "stripes"),
        "frame": _PartStyle((0.07, 0.60, 0.28), "stripes"),
        "arm": _PartStyle((0.11, 0.40, 0.80)),
    },
    "bird": {
        "body": _PartStyle((0.08, 0.60, 0.55), "stripes"),
        "belly": _PartStyle((0.12, 0.20, 0.93)),
        "head": _PartStyle((0.36, 0.70, 0.45)),
        "beak": _PartStyle((0.12, 0.90, 0.95)),
        "wing": _PartStyle((0.60, 0.25, 0.55), "stripes"),
        "tail": _PartStyle((0.00, 0.00, 0.15), "two_tone", (0.0, 0.0, 0.95)),
        "leg": _PartStyle((0.03, 0.55, 0.80)),
    },
}


def _rgb(hsv: Sequence[float]) -> np.ndarray:
    return np.round(np.array(colorsys.hsv_to_rgb(*hsv)) * 255).astype(np.uint8)


def base_colours(category: str) -> dict[str, np.ndarray]:
    """Part name → the category's nominal RGB (uint8); instances jitter around it."""
    return {part: _rgb(style.hsv) for part, style in PART_PALETTES[category].items()}


def _jittered(style: _PartStyle, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The part's base and accent colours (uint8 RGB) for one instance."""
    h, s, v = style.hsv
    dh, ds, dv = (rng.uniform(-j, j) for j in HSV_JITTER)
    base = ((h + dh) % 1.0, float(np.clip(s + ds, 0, 1)), float(np.clip(v + dv, 0, 1)))
    accent = style.accent if style.accent is not None else (base[0], base[1], base[2] * 0.7)
    return _rgb(base), _rgb(accent)


# ----------------------------------------------------------------------------------------------
# Textures
# ----------------------------------------------------------------------------------------------
def _tile(rng: np.random.Generator, base: np.ndarray, accent: np.ndarray,
          pattern: str) -> np.ndarray:
    """A TILE×TILE tile: ``base`` with an ``accent`` structure over at most a third of it."""
    img = np.empty((TILE, TILE, 3), np.uint8)
    img[:] = base
    yy, xx = np.mgrid[0:TILE, 0:TILE]
    if pattern == "stripes":
        period = int(rng.integers(6, 12))
        img[xx % period < period // 3] = accent
    elif pattern == "patches":
        cell = int(rng.integers(4, 8))
        img[((xx // cell) % 2 == 0) & ((yy // cell) % 2 == 0)] = accent
    elif pattern == "two_tone":
        img[yy < TILE // 3] = accent
    elif pattern != "solid":
        raise ValueError(f"unknown pattern {pattern!r}")
    return img


@dataclass
class _Atlas:
    tiles: list[np.ndarray] = field(default_factory=list)

    def add(self, tile: np.ndarray) -> int:
        if len(self.tiles) >= ATLAS_TILES * ATLAS_TILES:
            raise ValueError("texture atlas full")
        self.tiles.append(tile)
        return len(self.tiles) - 1

    def image(self) -> Image.Image:
        atlas = np.zeros((ATLAS_TILES * TILE, ATLAS_TILES * TILE, 3), np.uint8)
        for i, tile in enumerate(self.tiles):
            r, c = divmod(i, ATLAS_TILES)
            atlas[r * TILE:(r + 1) * TILE, c * TILE:(c + 1) * TILE] = tile
        return Image.fromarray(atlas)

    @staticmethod
    def uv(tile_index: int, local_uv: np.ndarray) -> np.ndarray:
        """Map ``local_uv`` in [0,1]^2 into the tile (inset by a pixel against bleeding)."""
        r, c = divmod(tile_index, ATLAS_TILES)
        inset = 1.0 / TILE
        lu = inset + np.clip(local_uv, 0, 1) * (1 - 2 * inset)
        u = (c + lu[:, 0]) / ATLAS_TILES
        # OBJ/trimesh UV origin is the bottom-left of the image
        v = 1.0 - (r + lu[:, 1]) / ATLAS_TILES
        return np.stack([u, v], axis=1)


# ----------------------------------------------------------------------------------------------
# Primitives: closed, outward-oriented (vertices, faces) arrays
# ----------------------------------------------------------------------------------------------
Mesh = tuple[np.ndarray, np.ndarray]


def _outward(vertices: np.ndarray, faces: np.ndarray) -> Mesh:
    """Flip the faces of a closed mesh whose signed volume is negative."""
    tri = vertices[faces]
    volume = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum()
    return (vertices, faces[:, ::-1].copy()) if volume < 0 else (vertices, faces)


@cache
def _unit_box() -> Mesh:
    m = trimesh.creation.box(extents=(1, 1, 1))
    return np.asarray(m.vertices, float), np.asarray(m.faces)


@cache
def _unit_cylinder(sections: int) -> Mesh:
    """Radius 1, height 1 along +Z, centred."""
    m = trimesh.creation.cylinder(radius=1.0, height=1.0, sections=sections)
    return np.asarray(m.vertices, float), np.asarray(m.faces)


@cache
def _unit_sphere(subdivisions: int) -> Mesh:
    m = trimesh.creation.icosphere(subdivisions=subdivisions)
    return np.asarray(m.vertices, float), np.asarray(m.faces)


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
    return trimesh.geometry.align_vectors([0, 0, 1], np.asarray(direction, float))[:3, :3]


def _rot(axis: str, degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


# local XY polygon + local Z thickness → world XZ planform + world Y thickness
_PLANFORM = _rot("x", 90)


# ----------------------------------------------------------------------------------------------
# Builder
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """What :func:`make_model` builds for ``(category, index, seed)``, for tests and reports.

    ``part_colours``: part name → base RGB (uint8) of the part's texture tile, which is the
    majority colour of tile ``part_tiles[name]`` of the atlas; ``variant``: the discrete choices
    and main proportions of the instance.
    """

    category: str
    index: int
    seed: int
    variant: dict[str, str | float]
    part_colours: dict[str, np.ndarray]
    part_tiles: dict[str, int]


class _Builder:
    """Collects named parts, one texture tile per part name; produces one textured mesh."""

    def __init__(self, category: str, index: int, seed: int):
        self.category, self.index, self.seed = category, index, seed
        self.atlas = _Atlas()
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.part_names: list[str] = []  # the part name of each entry of ``parts``
        self.part_tiles: dict[str, int] = {}
        self.part_colours: dict[str, np.ndarray] = {}
        self.variant: dict[str, str | float] = {}
        self._frame = np.eye(4)

    # ---------------------------------------------------------------------------- colours
    def tile(self, part: str) -> int:
        """The atlas tile of ``part`` (created on first use from the category's palette)."""
        if part not in self.part_tiles:
            style = PART_PALETTES[self.category][part]
            # its own stream per part: colours do not depend on which other parts exist
            rng = stable_rng(f"{self.category}/{self.seed}/{self.index}/colour/{part}")
            base, accent = _jittered(style, rng)
            self.part_tiles[part] = self.atlas.add(_tile(rng, base, accent, style.pattern))
            self.part_colours[part] = base
        return self.part_tiles[part]

    # ---------------------------------------------------------------------------- geometry
    @contextmanager
    def frame(self, transform: np.ndarray) -> Iterator[None]:
        """Parts added inside are placed by ``transform`` (composed with outer frames)."""
        outer = self._frame
        self._frame = outer @ transform
        try:
            yield
        finally:
            self._frame = outer

    def add(self, mesh: Mesh, part: str, transform: np.ndarray | None = None,
            axis: int = 0) -> None:
        vertices, faces = mesh
        local = _part_uv(vertices, axis)
        m = self._frame if transform is None else self._frame @ transform
        vertices = vertices @ m[:3, :3].T + m[:3, 3]
        if np.linalg.det(m[:3, :3]) < 0:  # a mirror turns the faces inside out
            faces = faces[:, ::-1]
        self.parts.append((vertices, faces, _Atlas.uv(self.tile(part), local)))
        self.part_names.append(part)

    def transform(self, m: np.ndarray, start: int = 0) -> None:
        """Move the parts added so far (from ``start`` on) by the 4×4 transform ``m``."""
        for k in range(start, len(self.parts)):
            v, f, uv = self.parts[k]
            self.parts[k] = (v @ m[:3, :3].T + m[:3, 3], f, uv)

    def box(self, size: Sequence[float], center: Sequence[float], part: str,
            rotation: np.ndarray | None = None, axis: int = 0) -> None:
        v, f = _unit_box()
        self.add((v * np.asarray(size, float), f), part, _tf(center, rotation), axis)

    def cylinder(self, radius: float, height: float, center: Sequence[float], part: str,
                 axis_dir: Sequence[float] = (0, 0, 1), sections: int = 16) -> None:
        v, f = _unit_cylinder(sections)
        self.add((v * [radius, radius, height], f), part, _tf(center, _align_z(axis_dir)), 2)

    def segment(self, p0: Sequence[float], p1: Sequence[float], radius: float, part: str,
                sections: int = 8) -> None:
        """A cylinder from ``p0`` to ``p1``."""
        p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
        d = p1 - p0
        self.cylinder(radius, float(np.linalg.norm(d)), (p0 + p1) / 2, part, d, sections)

    def ellipsoid(self, radii: Sequence[float], center: Sequence[float], part: str,
                  rotation: np.ndarray | None = None, subdivisions: int = 2,
                  flat_bottom: bool = False) -> None:
        """An ellipsoid; ``flat_bottom``: its lower half squashed flat (a dome)."""
        v, f = _unit_sphere(subdivisions)
        v = v * np.asarray(radii, float)
        if flat_bottom:
            v[:, 1] = np.maximum(v[:, 1], 0.0)
        self.add((v, f), part, _tf(center, rotation), int(np.argmax(radii)))

    def prism(self, polygon: np.ndarray, depth: float, part: str,
              transform: np.ndarray | None = None, axis: int = 0) -> None:
        self.add(_prism(polygon, depth), part, transform, axis)

    def planform(self, outline_xz: np.ndarray, thickness: float, part: str,
                 transform: np.ndarray | None = None) -> None:
        """A thin horizontal slab: the polygon ``outline_xz`` (x, z), ``thickness`` along y."""
        t = _tf(rotation=_PLANFORM)
        self.prism(outline_xz, thickness, part, t if transform is None else transform @ t, 0)

    def revolve(self, profile: np.ndarray, part: str, transform: np.ndarray | None = None,
                sections: int = 20, phase: float = 0.0, axis: int = 1) -> None:
        self.add(_revolve(profile, sections, phase), part, transform, axis)

    # ---------------------------------------------------------------------------- output
    def build(self) -> tuple[trimesh.Trimesh, Image.Image]:
        vertices, faces, uvs = [], [], []
        offset = 0
        for v, f, uv in self.parts:
            vertices.append(v)
            faces.append(f + offset)
            uvs.append(uv)
            offset += len(v)
        v = np.concatenate(vertices)
        # ShapeNet v2 normalisation: bbox centre at the origin, unit bbox diagonal
        lo, hi = v.min(axis=0), v.max(axis=0)
        v = (v - (lo + hi) / 2) / np.linalg.norm(hi - lo)
        image = self.atlas.image()
        visual = trimesh.visual.TextureVisuals(
            uv=np.concatenate(uvs), material=trimesh.visual.material.SimpleMaterial(image=image))
        mesh = trimesh.Trimesh(v, np.concatenate(faces), visual=visual, process=False)
        return mesh, image

    def spec(self) -> ModelSpec:
        return ModelSpec(self.category, self.index, self.seed, dict(self.variant),
                         {k: c.copy() for k, c in self.part_colours.items()},
                         dict(self.part_tiles))


def _choice(rng: np.random.Generator, options: Sequence[str],
            p: Sequence[float] | None = None) -> str:
    return str(options[int(rng.choice(len(options), p=p))])


# ----------------------------------------------------------------------------------------------
# Categories (front = +X, up = +Y; lengths in units of the object's main length)
# ----------------------------------------------------------------------------------------------
# airplane families: ranges of the fuselage radius, nose and tail-cone length (fractions of
# the fuselage length), span, sweep (degrees), root chord, taper, dihedral, wing position
# (root-chord centre along X), fin height; weighted choices of the wing mount, tail type,
# engines and landing gear
_AIRPLANE_FAMILIES: dict[str, dict] = {
    "airliner": {"radius": (0.04, 0.075), "nose": (0.06, 0.11), "tail_cone": (0.2, 0.3),
                 "span": (0.78, 1.12), "sweep": (24, 38), "root": (0.16, 0.25),
                 "taper": (0.22, 0.4), "dihedral": (3, 8), "wing_x": (-0.1, 0.06),
                 "fin": (0.1, 0.26), "mount": {"low": 1},
                 "tail": {"conventional": 0.7, "t_tail": 0.3},
                 "engines": {"wing_2": 0.6, "wing_4": 0.4},
                 "gear": {"none": 0.45, "tricycle": 0.55}},
    "bizjet": {"radius": (0.05, 0.075), "nose": (0.1, 0.16), "tail_cone": (0.22, 0.32),
               "span": (0.8, 1.15), "sweep": (12, 32), "root": (0.14, 0.22), "taper": (0.3, 0.5),
               "dihedral": (2, 6), "wing_x": (-0.16, -0.04), "fin": (0.1, 0.24),
               "mount": {"low": 1}, "tail": {"t_tail": 0.8, "conventional": 0.2},
               "engines": {"tail_2": 1}, "gear": {"none": 0.45, "tricycle": 0.55}},
    "cargo": {"radius": (0.07, 0.12), "nose": (0.06, 0.1), "tail_cone": (0.25, 0.35),
              "span": (0.85, 1.45), "sweep": (0, 8), "root": (0.1, 0.16), "taper": (0.45, 0.8),
              "dihedral": (-4, 2), "wing_x": (-0.04, 0.12), "fin": (0.12, 0.3),
              "mount": {"high": 0.8, "parasol": 0.2}, "tail": {"t_tail": 0.5, "conventional": 0.5},
              "engines": {"wing_2": 0.5, "wing_4": 0.5},
              "gear": {"none": 0.35, "tricycle": 0.35, "taildragger": 0.1, "floats": 0.2}},
    "light": {"radius": (0.05, 0.09), "nose": (0.06, 0.1), "tail_cone": (0.35, 0.5),
              "span": (1.15, 1.65), "sweep": (0, 4), "root": (0.13, 0.2), "taper": (0.6, 1),
              "dihedral": (1, 6), "wing_x": (0.06, 0.24), "fin": (0.09, 0.22),
              "mount": {"high": 0.4, "low": 0.4, "parasol": 0.2},
              "tail": {"conventional": 0.6, "v_tail": 0.2, "t_tail": 0.2},
              "engines": {"propeller": 1},
              "gear": {"tricycle": 0.35, "taildragger": 0.35, "floats": 0.3}},
    "glider": {"radius": (0.035, 0.05), "nose": (0.1, 0.16), "tail_cone": (0.4, 0.55),
               "span": (2, 3), "sweep": (0, 3), "root": (0.07, 0.11), "taper": (0.35, 0.6),
               "dihedral": (2, 6), "wing_x": (0.05, 0.2), "fin": (0.1, 0.2),
               "mount": {"mid": 0.5, "high": 0.5}, "tail": {"t_tail": 0.7, "v_tail": 0.3},
               "engines": {"none": 1}, "gear": {"none": 1}},
    "biplane": {"radius": (0.05, 0.075), "nose": (0.05, 0.09), "tail_cone": (0.35, 0.5),
                "span": (0.9, 1.4), "sweep": (0, 5), "root": (0.14, 0.22), "taper": (0.8, 1),
                "dihedral": (0, 4), "wing_x": (0.12, 0.26), "fin": (0.08, 0.14),
                "mount": {"low": 1}, "tail": {"conventional": 1}, "engines": {"propeller": 1},
                "gear": {"taildragger": 0.8, "none": 0.2}},
    "twin_boom": {"radius": (0.06, 0.09), "nose": (0.06, 0.1), "tail_cone": (0.08, 0.14),
                  "span": (1, 1.5), "sweep": (0, 5), "root": (0.12, 0.18), "taper": (0.6, 0.9),
                  "dihedral": (0, 3), "wing_x": (0.02, 0.15), "fin": (0.08, 0.16),
                  "mount": {"high": 1}, "tail": {"twin_fin": 1},
                  "engines": {"wing_2": 0.5, "propeller": 0.5},
                  "gear": {"tricycle": 0.6, "none": 0.2, "floats": 0.2}},
    "fighter": {"radius": (0.05, 0.075), "nose": (0.15, 0.25), "tail_cone": (0.06, 0.12),
                "span": (0.4, 0.75), "sweep": (40, 62), "root": (0.3, 0.5), "taper": (0.05, 0.3),
                "dihedral": (-5, 0), "wing_x": (-0.26, -0.1), "fin": (0.1, 0.24),
                "mount": {"mid": 1},
                "tail": {"twin_fin": 0.45, "conventional": 0.3, "tailless": 0.25},
                "engines": {"none": 1}, "gear": {"none": 0.5, "tricycle": 0.5}},
}


def _weighted(rng: np.random.Generator, options: dict[str, float]) -> str:
    weights = np.array(list(options.values()), float)
    return _choice(rng, list(options), weights / weights.sum())


def _airplane(b: _Builder, rng: np.random.Generator) -> None:
    """Airplanes: ``airliner``, ``bizjet``, ``cargo`` (high wing, props), ``light`` (nose
    propeller), ``glider`` (pod and boom), ``biplane``, ``twin_boom`` and ``fighter`` (flat
    fuselage, intakes) families.

    Fuselage length 1; each family has its own ranges of fuselage radius (3.5–12 %), nose and
    upswept tail cone, span (0.4–3 × length), sweep (0–65°), root chord, taper, dihedral, wing
    position and mount (low, mid, high, parasol on struts), fin height; tail
    ``conventional`` / ``t_tail`` / ``twin_fin`` / ``v_tail`` / ``tailless`` (a delta wing and
    one fin); engines ``none`` / ``propeller`` / ``wing_2`` / ``wing_4`` (under the wings) /
    ``tail_2`` (rear fuselage); landing gear ``none`` (retracted) / ``tricycle`` /
    ``taildragger`` (sits nose-up) / ``floats``. Colours: red nose, near-white fuselage with a
    blue cheatline, dark cockpit glazing, grey wings, blue tail, grey engines, black gear.
    """
    family = _choice(rng, list(_AIRPLANE_FAMILIES))
    f = _AIRPLANE_FAMILIES[family]
    r, nose, tail_cone, span, sweep, root, taper, dihedral, wing_x, fin_h = (
        rng.uniform(*f[k]) for k in ("radius", "nose", "tail_cone", "span", "sweep", "root",
                                     "taper", "dihedral", "wing_x", "fin"))
    mount, tail, engines, gear = (_weighted(rng, f[k])
                                  for k in ("mount", "tail", "engines", "gear"))
    squash = rng.uniform(0.7, 0.9) if family == "fighter" else rng.uniform(1.0, 1.2)
    upsweep = rng.uniform(0.2, 1.0) * r if family in ("cargo", "airliner") else 0.2 * r
    if family == "twin_boom":
        upsweep = 0.0
    if tail == "tailless":
        root, taper, sweep = rng.uniform(0.5, 0.7), rng.uniform(0.02, 0.15), rng.uniform(50, 65)
        wing_x = -0.5 + root / 2 + 0.02
    b.variant.update(family=family, mount=mount, tail=tail, engines=engines, gear=gear,
                     span=span, sweep=sweep, radius=r)

    # fuselage along X: nose cone (own part) + body with a tail cone, elliptic section
    to_x = _rot("z", -90)  # the revolve axis +Y → +X (a profile's y is then x)
    squash_y = np.diag([1.0, squash, 1.0, 1.0])
    front = 0.5 - nose
    t = np.linspace(0.2, 1.0, 5)
    pointed = 2.0 if family == "fighter" else 0.5  # ogive vs rounded nose
    nose_profile = np.r_[[[0, 0.5]], np.c_[r * (1 - (1 - t) ** 2) ** pointed, 0.5 - nose * t],
                         [[0, front]]]
    b.revolve(nose_profile, "nose", squash_y @ _tf(rotation=to_x), sections=16, axis=0)
    # a twin-boom's pod ends early; a glider's pod narrows into a thin boom behind the wing
    pod_end = rng.uniform(-0.2, 0.0) if family == "twin_boom" else -0.5
    tail_start = pod_end + tail_cone
    if family == "glider":
        waist = wing_x - root / 2
        stations = [(front, r), (waist, r), (waist - 0.12, 0.35 * r), (-0.5, 0.22 * r)]
    else:
        stations = [(front, r), (tail_start, r), (pod_end, 0.3 * r)]
    body = np.array([[0, front], *[[rad, x] for x, rad in stations], [0, pod_end]])
    fv, ff = _revolve(body, 16)
    fv = fv @ to_x.T
    fv[:, 1] *= squash
    behind = fv[:, 0] < tail_start  # the tail cone rises towards the end
    fv[behind, 1] += upsweep * (tail_start - fv[behind, 0]) / tail_cone
    b.add((fv, ff), "fuselage", axis=0)
    canopy = 1.6 if family in ("fighter", "glider", "light") else 1.0
    b.ellipsoid((min(nose, 0.1) * 0.8 * canopy, r * squash * 0.45 * canopy, r * 0.7),
                (front - 0.02 * canopy, r * squash * 0.62, 0), "cockpit", subdivisions=1)

    # wings
    y_wing = {"low": -0.6, "mid": 0.0, "high": 0.75, "parasol": 1.0}[mount] * r * squash
    thick = rng.uniform(0.01, 0.025)
    if mount == "parasol":  # the wing on struts above the fuselage
        y_wing += rng.uniform(0.04, 0.1)
        for side in (-1, 1):
            for dx in (0.0, -0.6):
                x = wing_x + root * dx / 2 + root * 0.15
                b.segment((x, r * squash * 0.6, side * r * 0.6), (x, y_wing, side * r * 2.5),
                          0.01, "gear", 6)
    le_root = wing_x + root / 2
    tip = root * taper
    # swept tips end no further back than the tail
    offset = min(np.tan(np.radians(sweep)) * span / 2, le_root - tip + 0.5)
    for side in (-1, 1):
        outline = np.array([[le_root, 0], [le_root - root, 0],
                            [le_root - offset - tip, side * span / 2],
                            [le_root - offset, side * span / 2]])
        b.planform(outline, thick, "wing", _tf((0, y_wing, 0), _rot("x", -side * dihedral)))

    if family == "fighter":  # air intakes on the fuselage sides
        for side in (-1, 1):
            b.box((0.25, r * squash * 1.2, r * 0.6), (wing_x + root * 0.4, -r * squash * 0.1,
                                                       side * r * 1.1), "engine")
    boom_z, boom_r = 0.0, 0.0
    if family == "twin_boom":  # two booms from the wing to the tail
        boom_z = rng.uniform(0.12, 0.22) * span
        boom_r = rng.uniform(0.015, 0.025)
        for side in (-1, 1):
            b.segment((le_root + 0.06, y_wing, side * boom_z), (-0.5, y_wing, side * boom_z),
                      boom_r, "fuselage", 10)

    if family == "biplane":  # an upper wing on struts, slightly staggered forward
        gap = rng.uniform(0.12, 0.2)
        stagger = rng.uniform(0.0, 0.06)
        y_top = y_wing + gap
        for side in (-1, 1):
            outline = np.array([[le_root + stagger, 0], [le_root + stagger - root, 0],
                                [le_root + stagger - offset - tip, side * span / 2],
                                [le_root + stagger - offset, side * span / 2]])
            b.planform(outline, thick, "wing", _tf((0, y_top, 0)))
            for z in (0.12, 0.7):
                zz = side * z * span / 2
                b.segment((le_root - root * 0.5, y_wing, zz),
                          (le_root + stagger - root * 0.5, y_top, zz), 0.01, "gear", 6)

    # landing gear: retracted, floats, or a nose (tricycle) or tail wheel and two main wheels
    if gear == "floats":
        drop = r * squash + rng.uniform(0.06, 0.12)
        float_len = rng.uniform(0.45, 0.65)
        for side in (-1, 1):
            z = side * rng.uniform(0.1, 0.16)
            b.revolve(np.array([[0, float_len / 2], [0.025, float_len / 2 - 0.06],
                                [0.03, -float_len / 2 + 0.1], [0.012, -float_len / 2],
                                [0, -float_len / 2]]), "gear",
                      _tf((wing_x + 0.05, -drop, z), to_x), sections=10, axis=0)
            for x in (wing_x + 0.12, wing_x - 0.08):
                b.segment((x, -drop + 0.02, z), (x, y_wing if mount == "low" else 0, z * 0.5),
                          0.01, "gear", 6)
    elif gear != "none":
        long_legs = family in ("light", "biplane", "twin_boom")
        leg = r * squash + (rng.uniform(0.06, 0.14) if long_legs else rng.uniform(0.03, 0.09))
        wheel = rng.uniform(0.018, 0.035)
        main_x = wing_x - 0.03 if gear == "tricycle" else wing_x + 0.06
        for x, z, length in ((0.3 if gear == "tricycle" else -0.45, 0.0,
                              leg if gear == "tricycle" else r * squash + 0.02),
                             (main_x, r * 1.1, leg), (main_x, -r * 1.1, leg)):
            top = (x, -r * squash * 0.5, z)
            bottom = (x, -length, z * 1.4)
            b.segment(top, bottom, 0.01, "gear", 6)
            b.cylinder(wheel, wheel * 0.8, bottom, "gear", sections=12)

    # tail surfaces: fins sweep back from a root ending at the tail
    tail_y = r * squash * 0.3 + upsweep
    stab_span = rng.uniform(0.25, 0.45) * (0.7 if family == "fighter" else 1.0)
    if family == "twin_boom":  # fins on the booms, the stabiliser between them
        tail_y, stab_span = y_wing + boom_r, 2 * boom_z
    stab_root = rng.uniform(0.07, 0.14)
    fin_root = rng.uniform(0.1, 0.2)
    fin_sweep = np.tan(np.radians(rng.uniform(20, 50)))
    x_end = -0.5 + 0.01

    def fin(height: float, chord: float, transform: np.ndarray) -> float:
        """A fin whose root ends at the tail; returns the x of its top's trailing edge."""
        # swept back, its top overhangs the tail by at most 6 % of the length
        top_le = x_end + chord - min(fin_sweep * height, 0.4 * chord + 0.06)
        outline = np.array([[x_end + chord, 0], [x_end, 0], [top_le - chord * 0.6, height],
                            [top_le, height]])
        b.prism(outline, max(thick * 0.8, 0.008), "tail", transform)
        return top_le - chord * 0.6

    def stabiliser(x: float, y: float, half_span: float) -> None:
        """Swept tail planes whose root's trailing edge is at ``x``; tips end by x_end - 0.06."""
        off = np.tan(np.radians(min(sweep, 35) * 0.8 + 5)) * half_span
        x = max(x, x_end - 0.06 + off - stab_root * 0.4)
        for side in (-1, 1):
            outline = np.array([[x + stab_root, 0], [x, 0],
                                [x - off + stab_root * 0.4, side * half_span],
                                [x - off + stab_root, side * half_span]])
            b.planform(outline, max(thick * 0.7, 0.007), "tail", _tf((0, y, 0)))

    if tail == "tailless":  # a delta: one fin, no stabiliser
        fin(fin_h * 1.2, fin_root * 1.3, _tf((0, tail_y, 0)))
    elif tail == "conventional":
        fin(fin_h, fin_root, _tf((0, tail_y, 0)))
        stabiliser(x_end + 0.01, tail_y - 0.3 * r, stab_span / 2)
    elif tail == "t_tail":
        top_te = fin(fin_h, fin_root, _tf((0, tail_y, 0)))
        stabiliser(top_te, tail_y + fin_h, stab_span / 2)
    elif tail == "twin_fin":
        stabiliser(x_end + 0.01, tail_y - 0.3 * r, stab_span / 2)
        fin_z = boom_z if family == "twin_boom" else rng.uniform(r, stab_span / 2)
        cant = rng.uniform(0, 20) if family == "fighter" else 0.0
        for side in (-1, 1):
            fin(fin_h * 0.8, fin_root * 0.8,
                _tf((0, tail_y - 0.3 * r, side * fin_z), _rot("x", -side * cant)))
    else:  # v_tail: two slanted fins, no horizontal stabiliser
        cant = rng.uniform(30, 55)
        for side in (-1, 1):
            fin(fin_h * 1.1, fin_root, _tf((0, tail_y, 0), _rot("x", -side * cant)))

    # engines
    er = rng.uniform(0.022, 0.04)
    el = rng.uniform(0.08, 0.16)
    if engines == "propeller":  # a two-blade propeller on the nose (a pusher on a pod)
        blade = rng.uniform(0.08, 0.14)
        x_prop = pod_end - 0.005 if family == "twin_boom" else 0.5 + 0.005
        b.box((0.012, 2 * blade, 0.025), (x_prop, 0, 0), "engine",
              rotation=_rot("x", rng.uniform(0, 180)), axis=1)
    elif engines == "tail_2":
        for side in (-1, 1):
            x = tail_start + el * 0.4
            b.cylinder(er, el, (x, tail_y * 0.8, side * (r + er * 1.4)), "engine",
                       axis_dir=(1, 0, 0))
            b.box((el * 0.5, er * 0.5, er * 1.6), (x, tail_y * 0.8, side * (r + er * 0.5)),
                  "engine")
    elif engines in ("wing_2", "wing_4"):
        fractions = (0.35,) if engines == "wing_2" else (0.28, 0.58)
        for frac in fractions:
            for side in (-1, 1):
                z = side * frac * span / 2
                le = le_root - offset * frac
                y = y_wing - thick / 2 - er * 1.3 + np.tan(np.radians(dihedral)) * abs(z)
                if mount in ("high", "parasol"):  # props on a high wing sit in front of it
                    y += er * 1.3
                b.cylinder(er, el, (le + el * 0.1, y, z), "engine", axis_dir=(1, 0, 0))
                b.box((el * 0.5, er * 1.2, er * 0.4), (le - el * 0.1, y + er * 0.9, z),
                      "engine")
    if gear == "taildragger":  # sits nose-up on its tail wheel
        b.transform(_tf(rotation=_rot("z", rng.uniform(8, 14))))


# car styles, as fractions of the length: width, height (roof; a roadster's windscreen top),
# belt line, hood, trunk (the cabin's rear bottom from the tail; for a pickup the cab's
# length), windscreen run, rear-window run, wheel radius, ground clearance
_CAR_STYLES: dict[str, dict[str, tuple[float, float]]] = {
    "sedan": {"width": (0.32, 0.42), "height": (0.22, 0.32), "belt": (0.13, 0.19),
              "hood": (0.2, 0.3), "trunk": (0.14, 0.24), "screen": (0.1, 0.2),
              "rear": (0.07, 0.16), "wheel": (0.05, 0.075), "clearance": (0.02, 0.04)},
    "limousine": {"width": (0.22, 0.28), "height": (0.15, 0.21), "belt": (0.09, 0.13),
                  "hood": (0.14, 0.2), "trunk": (0.1, 0.16), "screen": (0.06, 0.1),
                  "rear": (0.05, 0.09), "wheel": (0.035, 0.05), "clearance": (0.012, 0.025)},
    "coupe": {"width": (0.44, 0.58), "height": (0.18, 0.25), "belt": (0.11, 0.15),
              "hood": (0.28, 0.4), "trunk": (0.1, 0.2), "screen": (0.14, 0.24),
              "rear": (0.14, 0.26), "wheel": (0.06, 0.085), "clearance": (0.015, 0.03)},
    "roadster": {"width": (0.42, 0.56), "height": (0.2, 0.27), "belt": (0.12, 0.17),
                 "hood": (0.3, 0.42), "trunk": (0.15, 0.25), "screen": (0.05, 0.1),
                 "rear": (0.0, 0.0), "wheel": (0.06, 0.085), "clearance": (0.015, 0.03)},
    "hatchback": {"width": (0.44, 0.66), "height": (0.36, 0.64), "belt": (0.17, 0.3),
                  "hood": (0.1, 0.24), "trunk": (0.01, 0.03), "screen": (0.1, 0.2),
                  "rear": (0.03, 0.12), "wheel": (0.06, 0.09), "clearance": (0.02, 0.05)},
    "suv": {"width": (0.38, 0.58), "height": (0.38, 0.6), "belt": (0.22, 0.3),
            "hood": (0.16, 0.27), "trunk": (0.01, 0.03), "screen": (0.05, 0.12),
            "rear": (0.005, 0.05), "wheel": (0.08, 0.15), "clearance": (0.05, 0.14)},
    "pickup": {"width": (0.3, 0.4), "height": (0.33, 0.46), "belt": (0.2, 0.27),
               "hood": (0.03, 0.3), "trunk": (0.2, 0.42), "screen": (0.04, 0.11),
               "rear": (0.005, 0.015), "wheel": (0.07, 0.13), "clearance": (0.04, 0.12)},
    "van": {"width": (0.34, 0.56), "height": (0.45, 0.7), "belt": (0.18, 0.3),
            "hood": (0.04, 0.18), "trunk": (0.005, 0.015), "screen": (0.04, 0.14),
            "rear": (0.005, 0.02), "wheel": (0.06, 0.09), "clearance": (0.03, 0.06)},
}


# style frequencies: low cars (sedan … pickup) and tall ones (hatchback, suv, van) about even
_CAR_WEIGHTS = {"sedan": 1.0, "limousine": 0.5, "coupe": 0.5, "roadster": 0.3, "formula": 0.8,
                "pickup": 1.0, "hatchback": 1.2, "suv": 1.2, "van": 1.2}


def _car(b: _Builder, rng: np.random.Generator) -> None:
    """Cars: ``sedan``, ``limousine``, ``coupe`` (with a rear spoiler or not),
    ``roadster`` (open top: windscreen and seats), ``hatchback`` (down to tall city cars),
    ``suv`` (big wheels, a spare wheel on the back or not), ``pickup`` (cab and open bed) and
    ``van``; roof racks or roof boxes on some.

    Length 1; each style has its own ranges of width (0.27–0.65), height (0.2–0.68), belt
    line, hood, trunk, windscreen and rear-window slopes, wheel radius (0.05–0.13) and ground
    clearance. Colours: orange body, tinted windows, pale-yellow headlights at the front, red
    tail lights at the back, grey bumpers, black tyres with silver rims, brown interior.
    """
    style = _weighted(rng, _CAR_WEIGHTS)
    if style == "formula":
        _formula_car(b, rng)
        return
    ranges = _CAR_STYLES[style]
    width, height, belt, hood, trunk, screen_run, rear_run, wheel_r, clearance = (
        rng.uniform(*ranges[k]) for k in ("width", "height", "belt", "hood", "trunk", "screen",
                                          "rear", "wheel", "clearance"))
    belt = max(belt, clearance + 0.08)
    height = max(height, belt + 0.08)
    nose = rng.uniform(0.01, 0.08)
    half = 0.5
    y0, y1, y2 = clearance, belt, height
    body_h = y1 - y0
    b.variant.update(style=style, width=width, height=height, belt=belt, wheel=wheel_r)

    # the body: one side profile (sloped nose, hood, greenhouse, trunk or bed, bevelled tail)
    # extruded across, the greenhouse drawn in (tumblehome)
    x_front = half - hood
    x_rear = x_front - trunk if style == "pickup" else -half + trunk
    cab_w = width * rng.uniform(0.7, 0.95)
    top_len = x_front - x_rear - screen_run - rear_run
    if top_len < 0.08:  # keep a roof
        k = (x_front - x_rear - 0.08) / (screen_run + rear_run)
        screen_run, rear_run = screen_run * k, rear_run * k
    cabin = np.array([[x_rear, y1], [x_front, y1], [x_front - screen_run, y2],
                      [x_rear + rear_run, y2]])
    profile = [[-half, y0 + 0.15 * body_h], [-half + 0.02, y0], [half - 0.025, y0],
               [half, y0 + 0.2 * body_h], [half, y0 + 0.6 * body_h], [half - nose, y1]]
    bed_floor = y0 + body_h * rng.uniform(0.3, 0.5)
    if style != "roadster":
        profile += [[x_front, y1], [x_front - screen_run, y2], [x_rear + rear_run, y2]]
        if style == "pickup":  # a sunken bed behind the cab, closed by the tailgate
            profile += [[x_rear, bed_floor], [-half + 0.015, bed_floor], [-half + 0.015, y1]]
        elif x_rear > -half + 0.03:
            profile += [[x_rear, y1 + 1e-4]]
    if style == "roadster" or (style != "pickup" and x_rear > -half + 0.03):
        profile += [[-half + 0.01, y1]]
    profile += [[-half, y1 - 0.15 * body_h]]
    v, f = _prism(np.array(profile), width)

    def tumblehome(v: np.ndarray, side: float = 0.0) -> None:
        """Draw the greenhouse in: the width goes from ``width`` at the belt to ``cab_w``."""
        w = width + (cab_w - width) * np.clip((v[:, 1] - y1) / (y2 - y1), 0, 1)
        v[:, 2] = v[:, 2] * w / width if side == 0 else v[:, 2] + side * w / 2

    tumblehome(v)
    b.add((v, f), "body", axis=0)

    if style == "roadster":  # open top: a raked windscreen, two seats behind it
        rake = np.radians(rng.uniform(20, 45))
        screen_h = (y2 - y1) / np.cos(rake)
        b.box((0.012, screen_h, cab_w), (x_front - np.tan(rake) * (y2 - y1) / 2,
                                          (y1 + y2) / 2, 0), "window",
              rotation=_rot("z", np.degrees(rake)), axis=2)
        seat_h = (y2 - y1) * rng.uniform(0.6, 1.0)
        for s in (-1, 1):
            b.box((0.04, seat_h, cab_w * 0.38), (x_front - 0.22, y1 + seat_h / 2,
                                                 s * cab_w * 0.23), "interior",
                  rotation=_rot("z", 12), axis=1)
    else:
        # windows: windscreen, rear window and side windows, slightly proud of the cabin
        for (xa, ya), (xb, yb) in (((x_front, y1), (x_front - screen_run, y2)),
                                   ((x_rear, y1), (x_rear + rear_run, y2))):
            run = np.hypot(xb - xa, yb - ya)
            angle = np.degrees(np.arctan2(yb - ya, xb - xa))
            b.box((run * 0.82, 0.008, cab_w * 0.88), ((xa + xb) / 2, (ya + yb) / 2, 0),
                  "window", rotation=_rot("z", angle))
        centroid = cabin.mean(0)
        side = centroid + (cabin - centroid) * np.array([0.88, 0.72]) + [0, 0.01]
        for s in (-1, 1):
            v, f = _prism(side, 0.008)
            tumblehome(v, s)
            b.add((v, f), "window")
        roof = (x_front - screen_run) - (x_rear + rear_run)
        roof_x = (x_front - screen_run + x_rear + rear_run) / 2
        if style in ("suv", "van", "hatchback", "sedan") and rng.uniform() < 0.4:
            b.variant["roof"] = "rack" if rng.uniform() < 0.5 else "box"
            for s in (-1, 1):  # rails
                b.box((roof * 0.9, 0.025, 0.02), (roof_x, y2 + 0.0125, s * cab_w * 0.4),
                      "bumper")
            if b.variant["roof"] == "box":  # a cargo box on the rails
                box_h = rng.uniform(0.04, 0.08)
                b.box((roof * rng.uniform(0.5, 0.85), box_h, cab_w * 0.7),
                      (roof_x, y2 + 0.025 + box_h / 2, 0), "bumper")
    if style == "pickup":  # the bed's side walls
        bed = x_rear + half
        for s in (-1, 1):
            b.box((bed, y1 - bed_floor, 0.015), ((x_rear - half) / 2, (y1 + bed_floor) / 2,
                                                 s * (width / 2 - 0.0075)), "body")
    if style in ("coupe", "sedan") and rng.uniform() < 0.4:  # a rear spoiler
        b.variant["spoiler"] = "yes"
        lift = rng.uniform(0.03, 0.07)
        for s in (-1, 1):
            b.box((0.02, lift, 0.02), (-half + 0.05, y1 + lift / 2, s * width * 0.35), "bumper")
        b.box((0.07, 0.012, width * 0.95), (-half + 0.045, y1 + lift, 0), "body")
    if style == "suv" and rng.uniform() < 0.5:  # a spare wheel on the tailgate
        b.variant["spare_wheel"] = "yes"
        b.cylinder(wheel_r, 0.05, (-half - 0.025, y0 + body_h * 0.6, 0), "tyre",
                   axis_dir=(1, 0, 0), sections=16)

    # lights and bumpers: headlights at the front (+X), tail lights at the back
    for s in (-1, 1):
        b.box((0.015, 0.25 * body_h, 0.2 * width), (half, y0 + 0.5 * body_h, s * 0.32 * width),
              "headlight")
        b.box((0.015, 0.2 * body_h, 0.16 * width),
              (-half, y0 + 0.65 * body_h, s * 0.36 * width), "taillight")
    for x in (half, -half):
        b.box((0.03, 0.2 * body_h, width * 1.02), (x, y0 + 0.1 * body_h, 0), "bumper")

    # wheels
    tyre_w = rng.uniform(0.04, 0.07)
    front_axle = half - rng.uniform(0.13, 0.22)
    rear_axle = -half + rng.uniform(0.12, 0.25)
    for x in (front_axle, rear_axle):
        for s in (-1, 1):
            z = s * (width / 2 - tyre_w * 0.3)
            b.cylinder(wheel_r, tyre_w, (x, wheel_r, z), "tyre", sections=16)
            b.cylinder(wheel_r * 0.55, tyre_w + 0.008, (x, wheel_r, z), "rim", sections=10)


def _formula_car(b: _Builder, rng: np.random.Generator) -> None:
    """An open-wheel race car: narrow tub with a pointed nose, sidepods, exposed wheels,
    a low front wing and a high rear wing (the driver's helmet in the cockpit)."""
    track = rng.uniform(0.36, 0.5)
    tub_w = rng.uniform(0.1, 0.18)
    tub_h = rng.uniform(0.05, 0.09)
    wheel_r = rng.uniform(0.06, 0.09)
    tyre_w = rng.uniform(0.06, 0.1)
    y0 = rng.uniform(0.015, 0.03)
    wing_y = rng.uniform(0.14, 0.26)
    b.variant.update(style="formula", width=track, height=wing_y, wheel=wheel_r)
    tub = np.array([[0.5, -0.02], [0.5, 0.02], [0.1, tub_w / 2], [-0.42, tub_w / 2],
                    [-0.42, -tub_w / 2], [0.1, -tub_w / 2]])
    b.planform(tub, tub_h, "body", _tf((0, y0 + tub_h / 2, 0)))
    pod_w = (track / 2 - tyre_w - tub_w / 2) * rng.uniform(0.5, 0.9)
    for s in (-1, 1):
        b.box((0.32, tub_h * 0.8, pod_w), (-0.12, y0 + tub_h * 0.4, s * (tub_w + pod_w) / 2),
              "body")
    # engine cover rising behind the cockpit, the driver's helmet
    cover = np.array([[-0.42, y0 + tub_h], [-0.08, y0 + tub_h], [-0.12, y0 + tub_h * 1.9],
                      [-0.3, y0 + tub_h * 1.6]])
    b.prism(cover, tub_w * 0.7, "body")
    b.ellipsoid((0.035, 0.03, 0.03), (-0.02, y0 + tub_h + 0.02, 0), "interior",
                subdivisions=1)
    # wings: a low one at the nose, a high one over the rear axle on two struts
    b.box((0.07, 0.01, track * 0.95), (0.45, y0 + 0.01, 0), "bumper", axis=2)
    rear_x = -0.45
    b.box((0.09, 0.014, track * 0.7), (rear_x, wing_y, 0), "bumper", axis=2)
    for s in (-1, 1):
        b.box((0.1, 0.06, 0.008), (rear_x, wing_y - 0.02, s * track * 0.35), "bumper")
        b.box((0.02, wing_y - y0 - tub_h, 0.01),
              (rear_x + 0.02, (wing_y + y0 + tub_h) / 2, s * 0.03), "bumper")
    b.box((0.012, 0.02, 0.04), (-0.5, y0 + tub_h * 0.6, 0), "taillight")
    for x in (0.5 - rng.uniform(0.15, 0.22), -0.5 + rng.uniform(0.12, 0.18)):
        for s in (-1, 1):
            z = s * (track / 2 - tyre_w / 2)
            b.cylinder(wheel_r, tyre_w, (x, wheel_r, z), "tyre", sections=16)
            b.cylinder(wheel_r * 0.55, tyre_w + 0.008, (x, wheel_r, z), "rim", sections=10)


def _laptop(b: _Builder, rng: np.random.Generator) -> None:
    """Laptops, open at 70–180° (pose ``narrow``, ``upright``, ``wide`` or ``flat``: from a
    narrow V to lying flat), the screen facing +X.

    Depth 1; width 1.15–1.9 (aspect ratio), base 0.02–0.07 thick, lid 35–80 % of that; the
    keyboard, touchpad and screen inset on the inside, a logo on the lid's back. Colours:
    silver shell, dark blue screen, black keyboard, grey touchpad, cyan logo on the back.
    """
    depth = 1.0
    width = rng.uniform(1.15, 1.9)
    thick = rng.uniform(0.02, 0.07)
    lid_t = thick * rng.uniform(0.35, 0.8)
    angle = rng.uniform(70, 180)  # between base and lid
    pose = ("narrow" if angle < 95 else "upright" if angle < 135 else "wide" if angle < 165
            else "flat")
    b.variant.update(pose=pose, lid_angle=angle, width=width, thickness=thick)
    b.box((depth, thick, width), (0, thick / 2, 0), "shell", axis=2)
    b.box((depth * 0.42, 0.006, width * 0.86), (-depth * 0.14, thick, 0), "keyboard", axis=2)
    b.box((depth * 0.22, 0.006, width * 0.28), (depth * 0.3, thick, 0), "touchpad", axis=2)
    # the lid turns about the hinge (at -X on the top of the base); a = angle to the base
    a = np.radians(angle)
    along = np.array([np.cos(a), np.sin(a), 0.0])  # from the hinge to the lid's far edge
    normal = np.array([np.sin(a), -np.cos(a), 0.0])  # the screen side
    rot = np.stack([normal, along, [0, 0, 1]], axis=1)
    hinge = np.array([-depth / 2, thick, 0.0])
    lid_c = hinge + along * depth / 2 - normal * lid_t / 2
    b.box((lid_t, depth, width), lid_c, "shell", rotation=rot, axis=2)
    b.box((0.006, depth * 0.86, width * 0.9), hinge + along * depth * 0.52, "screen",
          rotation=rot, axis=2)
    b.ellipsoid((0.004, depth * 0.08, depth * 0.08), lid_c - normal * lid_t / 2, "logo",
                rotation=rot, subdivisions=1)


def _trash_bin(b: _Builder, rng: np.random.Generator) -> None:
    """Trash bins: ``round`` or ``square`` (or oblong), straight or ``tapered``.

    Lids: ``none`` (open: a hollow bin with a rim), ``flat``, ``dome``, ``swing`` (a cap with a
    tilted grey flap at the front) or ``step`` (a flat lid raised 0–65° about a rear hinge,
    with a pedal at the front). Height 0.7–1.7 × the top width. Colours: green body, dark lid,
    grey rim, a yellow label on the front, a silver pedal.
    """
    shape = _choice(rng, ["round", "square"])
    tapered = rng.uniform() < 0.5
    lid = _choice(rng, ["none", "flat", "dome", "swing", "step"])
    radius = 0.5
    taper = rng.uniform(0.6, 0.85) if tapered else 1.0
    height = rng.uniform(0.7, 1.7)
    oblong = rng.uniform(0.6, 1.0) if shape == "square" else 1.0
    b.variant.update(shape=shape, profile="tapered" if tapered else "straight", lid=lid,
                     height=height)
    sections, phase = (4, np.pi / 4) if shape == "square" else (24, 0.0)
    circum = radius / np.cos(np.pi / sections)  # the radius to the corners
    squash = np.diag([1.0, 1.0, oblong, 1.0])  # an oblong square bin
    r_top, r_bot = circum, circum * taper
    if lid == "none":  # hollow: outer wall up, inner wall down, floor
        wall = 0.04
        profile = [[0, 0], [r_bot, 0], [r_top, height], [r_top - wall, height],
                   [r_bot - wall, 0.06], [0, 0.06]]
    else:
        profile = [[0, 0], [r_bot, 0], [r_top, height], [0, height]]
    b.revolve(np.array(profile), "body", squash, sections, phase)
    rim = np.array([[0, height - 0.03], [r_top * 1.04, height - 0.03], [r_top * 1.04, height],
                    [0, height]])
    if lid == "none":
        ring = [[0, height - 0.04], [r_top + 0.015, height - 0.04], [r_top + 0.015, height + 0.01],
                [r_top - 0.035, height + 0.01], [r_top - 0.035, height - 0.02],
                [0, height - 0.02]]
        b.revolve(np.array(ring), "rim", squash, sections, phase)
    else:
        b.revolve(rim, "rim", squash, sections, phase)
    top = height
    if lid == "flat":
        lid_h = rng.uniform(0.05, 0.12)
        b.revolve(np.array([[0, top], [r_top * 1.03, top], [r_top * 1.0, top + lid_h],
                            [0, top + lid_h]]), "lid", squash, sections, phase)
        b.box((0.06, 0.04, 0.3 * oblong), (0, top + lid_h + 0.02, 0), "lid")
    elif lid == "dome":
        dome_h = rng.uniform(0.15, 0.45)
        if shape == "round":
            b.ellipsoid((r_top * 1.02, dome_h, r_top * 1.02), (0, top, 0), "lid",
                        flat_bottom=True)
        else:  # a square dome: a hipped roof
            b.revolve(np.array([[0, top], [r_top * 1.02, top], [r_top * 0.6, top + dome_h * 0.8],
                                [0, top + dome_h]]), "lid", squash, 4, phase)
    elif lid == "swing":
        cap_h = rng.uniform(0.15, 0.35)
        b.revolve(np.array([[0, top], [r_top * 1.02, top], [r_top * 0.8, top + cap_h],
                            [0, top + cap_h]]), "lid", squash, sections, phase)
        tilt = rng.uniform(-25, 25)
        b.box((0.02, cap_h * 0.7, radius * 0.9 * oblong), (r_top * 0.85, top + cap_h * 0.5, 0),
              "rim", rotation=_rot("z", 15 + tilt))
    elif lid == "step":
        opening = rng.uniform(0, 65)
        hinge = np.array([-radius, top, 0.0])
        rot = _rot("z", opening)  # lifts the front edge (+X) about the rear hinge
        lid_h = rng.uniform(0.08, 0.12)
        centre = hinge + rot @ np.array([radius * 1.02, lid_h / 2, 0])
        disc = np.array([[0, -lid_h / 2], [r_top * 1.03, -lid_h / 2],  # a low dome
                         [r_top * 0.97, lid_h / 2], [r_top * 0.6, lid_h * 1.1],
                         [0, lid_h * 1.3]])
        b.revolve(disc, "lid", _tf(centre, rot) @ squash, sections, phase)
        b.box((0.22, 0.03, 0.3 * oblong), (r_bot * np.cos(np.pi / sections) + 0.1, 0.03, 0),
              "pedal")
    # a label on the front (+X) breaks the symmetry: tilted with the tapered wall
    apothem_top, apothem_bot = radius, radius * taper
    lean = np.degrees(np.arctan2(apothem_top - apothem_bot, height))
    y_label = height * rng.uniform(0.4, 0.65)
    x_label = apothem_bot + (apothem_top - apothem_bot) * y_label / height + 0.006
    b.box((0.02, height * 0.25, 0.55 * radius * oblong), (x_label, y_label, 0), "label",
          rotation=_rot("z", -lean), axis=1)


def _chair(b: _Builder, rng: np.random.Generator) -> None:
    """Chairs: base ``four_legs`` (straight or splayed, with or without stretchers),
    ``pedestal`` (central column on a five-spoke star or a disc) or ``sled`` (floor runners);
    back ``tall`` / ``short`` (solid), ``slatted`` (posts, top rail and open slats) or
    ``rounded`` (arched top); arms or none; seat 0.4–0.65 wide, 0.3–0.55 high; back tilt
    0–20°. Colours: red seat, teal back, dark-brown frame, tan armrests.
    """
    base = _choice(rng, ["four_legs", "pedestal", "sled"], [0.45, 0.3, 0.25])
    back = _choice(rng, ["tall", "short", "slatted", "rounded"])
    arms = rng.uniform() < 0.4
    width = rng.uniform(0.4, 0.65)  # along Z
    depth = rng.uniform(0.38, 0.6)  # along X
    seat_t = rng.uniform(0.03, 0.09)
    seat_y = rng.uniform(0.38, 0.55) if base == "pedestal" else rng.uniform(0.3, 0.52)
    back_h = {"tall": rng.uniform(0.45, 0.8), "short": rng.uniform(0.15, 0.3),
              "slatted": rng.uniform(0.3, 0.6), "rounded": rng.uniform(0.35, 0.7)}[back]
    back_t = rng.uniform(0.025, 0.07)
    tilt = rng.uniform(0, 20)
    b.variant.update(base=base, back=back, arms="yes" if arms else "no", seat_height=seat_y,
                     back_height=back_h)
    top = seat_y + seat_t / 2
    b.box((depth, seat_t, width), (0, seat_y, 0), "seat", axis=2)

    # base
    if base == "four_legs":
        leg_r = rng.uniform(0.02, 0.04)
        splay = rng.uniform(0.0, 0.08)
        sections = 4 if rng.uniform() < 0.5 else 8
        bottom = seat_y - seat_t / 2
        corners = []
        for x in (-1, 1):
            for z in (-1, 1):
                p1 = np.array([x * (depth / 2 - leg_r * 1.5), bottom,
                               z * (width / 2 - leg_r * 1.5)])
                p0 = p1 + [x * splay, -bottom, z * splay]
                b.segment(p0, p1 + [0, 0.01, 0], leg_r, "frame", sections)
                corners.append(p0 * 0.7 + p1 * 0.3)
        if rng.uniform() < 0.5:  # stretchers between front and back legs
            for z in (0, 1):
                b.segment(corners[z], corners[2 + z], leg_r * 0.7, "frame", 6)
    elif base == "pedestal":
        col_r = rng.uniform(0.02, 0.045)
        foot = 0.05
        b.cylinder(col_r, seat_y - foot, (0, (seat_y + foot) / 2, 0), "frame", (0, 1, 0), 10)
        reach = rng.uniform(0.22, 0.36)
        if rng.uniform() < 0.65:  # a five-spoke star on casters
            b.variant["pedestal"] = "star"
            for k in range(5):
                a = 2 * np.pi * k / 5
                tip = np.array([reach * np.cos(a), 0.03, reach * np.sin(a)])
                b.segment([0, foot, 0], tip + [0, 0.01, 0], 0.025, "frame", 6)
                b.ellipsoid((0.025, 0.02, 0.02), tip - [0, 0.01, 0], "frame", subdivisions=1)
        else:  # a disc foot
            b.variant["pedestal"] = "disc"
            b.revolve(np.array([[0, 0], [reach, 0], [reach * 0.9, 0.025], [col_r * 1.5, foot],
                                [0, foot]]), "frame", sections=20)
    else:  # sled: runners along X on the floor, inclined uprights up to the seat
        run = depth * rng.uniform(0.95, 1.3)
        rad = rng.uniform(0.018, 0.028)
        for z in (-1, 1):
            zz = z * (width / 2 - 0.02)
            b.segment([-run / 2, rad, zz], [run / 2, rad, zz], rad, "frame", 6)
            for x in (-1, 1):
                b.segment([x * run / 2 * 0.92, rad, zz],
                          [x * depth * 0.35, seat_y - seat_t / 2 + 0.01, zz], rad, "frame", 6)

    # back at -X (the chair faces +X), tilted backwards about its bottom edge
    pivot = np.array([-depth / 2 + back_t / 2, top, 0.0])
    with b.frame(_tf(pivot, _rot("z", tilt))):
        bw = width * rng.uniform(0.85, 1.0)
        if back in ("tall", "short"):
            b.box((back_t, back_h, bw), (0, back_h / 2, 0), "back", axis=1)
        elif back == "rounded":
            arch = rng.uniform(0.2, 0.5) * back_h
            a = np.linspace(0, np.pi, 9)
            outline = np.r_[[[bw / 2, 0]], np.c_[bw / 2 * np.cos(a),
                                                 back_h - arch + arch * np.sin(a)],
                            [[-bw / 2, 0]]]
            # outline in (z, y), thickness along x
            b.prism(outline, back_t, "back", _tf(rotation=_rot("y", 90)), axis=1)
        else:  # slatted: side posts (frame), top rail and slats
            post = back_t * 0.8
            for z in (-1, 1):
                b.box((post, back_h, post), (0, back_h / 2, z * (bw / 2 - post / 2)), "frame")
            rail = rng.uniform(0.06, 0.14) * back_h + 0.03
            b.box((back_t, rail, bw), (0, back_h - rail / 2, 0), "back", axis=2)
            n = int(rng.integers(2, 6))
            if rng.uniform() < 0.5:  # vertical slats
                for k in range(n):
                    z = (k + 1) / (n + 1) * bw - bw / 2
                    b.box((back_t * 0.6, back_h - rail, bw / (3 * n)), (0, (back_h - rail) / 2, z),
                          "back", axis=1)
            else:  # horizontal slats
                for k in range(n - 1):
                    y = (k + 1) / n * (back_h - rail)
                    b.box((back_t * 0.6, rail * 0.5, bw), (0, y, 0), "back", axis=2)
    if arms:
        arm_y = top + rng.uniform(0.14, 0.26)
        for z in (-1, 1):
            zz = z * (width / 2 + 0.02)
            b.box((depth * 0.85, 0.03, 0.05), (0, arm_y, zz), "arm")
            b.segment([depth * 0.3, top - 0.01, zz], [depth * 0.3, arm_y, zz], 0.02, "arm", 6)


# bird families (body length 1): ranges of the body's height and width, neck length and
# angle, head radius, beak length, tail length, width and droop (degrees, + = down), leg
# length, body pitch (degrees, + = nose up), wing span (per wing), and the chance of spread
# wings; beak style
_BIRD_FAMILIES: dict[str, dict] = {
    "songbird": {"body_h": (0.45, 0.6), "body_w": (0.38, 0.5), "neck": (0.0, 0.05),
                 "neck_angle": (40, 70), "head": (0.1, 0.14), "beak": (0.07, 0.16),
                 "tail": (0.35, 0.7), "tail_w": (0.12, 0.3), "droop": (-25, 10),
                 "legs": (0.15, 0.3), "pitch": (15, 40), "span": (0.6, 0.9), "spread": 0.3,
                 "beak_style": "cone"},
    "waterfowl": {"body_h": (0.35, 0.45), "body_w": (0.42, 0.55), "neck": (0.1, 0.7),
                  "neck_angle": (55, 85), "head": (0.08, 0.11), "beak": (0.15, 0.28),
                  "tail": (0.08, 0.2), "tail_w": (0.15, 0.3), "droop": (-30, -10),
                  "legs": (0.06, 0.14), "pitch": (-8, 8), "span": (0.8, 1.2), "spread": 0.3,
                  "beak_style": "flat"},
    "wader": {"body_h": (0.3, 0.42), "body_w": (0.3, 0.4), "neck": (0.4, 0.9),
              "neck_angle": (55, 85), "head": (0.06, 0.08), "beak": (0.3, 0.55),
              "tail": (0.1, 0.25), "tail_w": (0.1, 0.2), "droop": (0, 25),
              "legs": (0.7, 1.2), "pitch": (5, 35), "span": (0.9, 1.3), "spread": 0.2,
              "beak_style": "cone"},
    "penguin": {"body_h": (0.5, 0.62), "body_w": (0.45, 0.55), "neck": (0.0, 0.0),
                "neck_angle": (60, 80), "head": (0.1, 0.13), "beak": (0.1, 0.2),
                "tail": (0.05, 0.12), "tail_w": (0.1, 0.15), "droop": (10, 30),
                "legs": (0.03, 0.06), "pitch": (65, 85), "span": (0.35, 0.5), "spread": 1.0,
                "beak_style": "cone"},
    "raptor": {"body_h": (0.35, 0.45), "body_w": (0.3, 0.4), "neck": (0.0, 0.1),
               "neck_angle": (30, 60), "head": (0.09, 0.12), "beak": (0.08, 0.15),
               "tail": (0.3, 0.5), "tail_w": (0.3, 0.5), "droop": (-10, 15),
               "legs": (0.15, 0.3), "pitch": (-5, 30), "span": (1.0, 1.5), "spread": 0.7,
               "beak_style": "hooked"},
    "parrot": {"body_h": (0.5, 0.65), "body_w": (0.4, 0.5), "neck": (0.0, 0.03),
               "neck_angle": (60, 80), "head": (0.12, 0.17), "beak": (0.06, 0.12),
               "tail": (0.2, 0.9), "tail_w": (0.1, 0.25), "droop": (10, 40),
               "legs": (0.1, 0.2), "pitch": (45, 70), "span": (0.6, 0.9), "spread": 0.15,
               "beak_style": "hooked"},
}


def _bird(b: _Builder, rng: np.random.Generator) -> None:
    """Birds: ``songbird``, ``waterfowl`` (duck to swan), ``wader`` (heron, stork),
    ``penguin``, ``raptor`` and ``parrot`` (owl-like upright) families.

    Body length 1; each family has its own ranges of body height and width, neck length (0 to
    0.9, bent) and angle, head size, beak length and style (cone, flat, hooked), tail length,
    width and droop, leg length (0.03–1.2) and posture (body pitch −8–85°); wings ``folded``
    along the body or ``spread`` (gliding, up- or down-stroke; a penguin's flippers). Colours:
    brown back, cream belly, dark-green head, yellow beak, blue-grey wings, black tail,
    orange legs.
    """
    family = _choice(rng, list(_BIRD_FAMILIES))
    f = _BIRD_FAMILIES[family]
    body_h, body_w, neck_len, neck_angle, head_r, beak_len, tail_len, tail_w, droop, \
        leg_len, pitch, span = (rng.uniform(*f[k]) for k in (
            "body_h", "body_w", "neck", "neck_angle", "head", "beak", "tail", "tail_w",
            "droop", "legs", "pitch", "span"))
    wings = "spread" if rng.uniform() < f["spread"] else "folded"
    if wings == "spread" and family != "penguin":
        pitch = min(pitch, 15.0)  # flying: the body roughly level
    b.variant.update(family=family, wings=wings, pitch=pitch, neck=neck_len, tail=tail_len,
                     legs=leg_len)

    body_t = _tf(rotation=_rot("z", pitch))
    with b.frame(body_t):
        b.ellipsoid((0.5, body_h / 2, body_w / 2), (0, 0, 0), "body")
        b.ellipsoid((0.42, body_h * 0.4, body_w * 0.46), (0.02, -body_h * 0.12, 0), "belly")
        # the neck: two segments from the front of the body, bent; the head at its end
        base = np.array([0.38, body_h * 0.15, 0.0])
        bend = rng.uniform(-25, 25)
        head = base.copy()
        for angle in (neck_angle + bend, neck_angle - bend):
            a = np.radians(angle - pitch)  # the neck's angle is to the horizontal
            step = head + np.array([np.cos(a), np.sin(a), 0]) * neck_len / 2
            if neck_len > 0.04:
                b.segment(head, step, min(body_w * 0.28, head_r * 0.85), "head", 10)
            head = step
        a = np.radians(neck_angle - pitch)
        head = head + np.array([np.cos(a), np.sin(a), 0]) * head_r * 0.6
        # the head stays level whatever the posture
        with b.frame(_tf(head, _rot("z", -pitch))):
            b.ellipsoid((head_r * 1.15, head_r, head_r * 0.9), (0, 0, 0), "head")
            tilt = {"hooked": -30.0, "flat": -5.0}.get(f["beak_style"], rng.uniform(-15, 5))
            beak_dir = np.array([np.cos(np.radians(tilt)), np.sin(np.radians(tilt)), 0])
            beak_r = head_r * rng.uniform(0.3, 0.5)
            shape = np.diag([0.55, 1.5, 1.0, 1.0]) if f["beak_style"] == "flat" else np.eye(4)
            b.add(_beak(beak_r, beak_len), "beak",
                  _tf(beak_dir * head_r * 0.9, _align_z(beak_dir)) @ shape, axis=2)
        # tail: a thin fan behind the body
        with b.frame(_tf((-0.45, body_h * 0.05, 0), _rot("z", droop))):
            b.planform(np.array([[0.05, -body_w * 0.2], [0.05, body_w * 0.2],
                                 [-tail_len, tail_w / 2], [-tail_len, -tail_w / 2]]),
                       0.02, "tail")
        if wings == "folded":
            wing_len = rng.uniform(0.5, 0.8)
            for s in (-1, 1):
                b.ellipsoid((wing_len / 2, body_h * 0.3, 0.03),
                            (-0.1, body_h * 0.12, s * body_w * 0.45), "wing",
                            rotation=_rot("z", -8))
        else:
            chord = rng.uniform(0.25, 0.45) * (0.5 if family == "penguin" else 1.0)
            if family == "penguin":  # flippers held out and down
                stroke, lift = "flippers", rng.uniform(-80, -45)
            else:
                stroke = _choice(rng, ["glide", "up", "down"])
                lift = {"glide": rng.uniform(-5, 15), "up": rng.uniform(35, 65),
                        "down": rng.uniform(-45, -20)}[stroke]
            b.variant["stroke"] = stroke
            sweep = rng.uniform(-0.05, 0.3) * span
            for s in (-1, 1):
                outline = np.array([[0.15, 0], [0.15 - chord, 0],
                                    [0.1 - sweep - chord * 0.6, s * span],
                                    [0.15 - sweep, s * span]])
                b.planform(outline, 0.025, "wing",
                           _tf((0, body_h * 0.25, s * body_w * 0.3), _rot("x", -s * lift)))
    # legs from the underside of the (pitched) body: straight down, or tucked back in flight
    t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    rim = body_t[:3, :3] @ np.stack([0.5 * np.cos(t), body_h / 2 * np.sin(t), 0 * t])
    hip = rim[:, int(np.argmin(rim[1]))] * 0.85
    for s in (-1, 1):
        top = hip + [0, 0, s * body_w * 0.2]
        if wings == "spread" and family != "penguin":
            foot = top + [-leg_len * 0.8, -leg_len * 0.3, 0]
        else:
            foot = top + [0, -leg_len, 0]
        b.segment(top, foot, 0.02 + 0.01 * (family == "wader"), "leg", 6)
        b.box((0.09 + 0.1 * (family == "penguin"), 0.015, 0.05), foot + [0.03, 0, 0], "leg")


def _beak(radius: float, length: float) -> Mesh:
    """A cone along +Z from its base at z=0 to the tip at ``length``."""
    return _revolve_z(np.array([[0, 0], [radius, 0], [radius * 0.5, length * 0.5],
                                [0, length]]), 10)


def _revolve_z(profile: np.ndarray, sections: int) -> Mesh:
    """:func:`_revolve` about +Z instead of +Y."""
    v, f = _revolve(profile, sections)
    return _outward(v @ _rot("x", 90).T, f)


PROCEDURAL_CATEGORIES: dict[str, Callable[[_Builder, np.random.Generator], None]] = {
    "airplane": _airplane,
    "trash_bin": _trash_bin,
    "car": _car,
    "laptop": _laptop,
    "chair": _chair,
    "bird": _bird,
}


def model_id_for(category: str, index: int, seed: int) -> str:
    """Stable, ShapeNet-like hex model id."""
    digest = hashlib.sha1(f"ss3d-procedural/{category}/{seed}/{index}".encode()).hexdigest()
    return digest[:24]


def _built(category: str, index: int, seed: int) -> _Builder:
    if category not in PROCEDURAL_CATEGORIES:
        raise ValueError(f"no procedural generator for category {category!r}; available: "
                         f"{', '.join(PROCEDURAL_CATEGORIES)}")
    rng = stable_rng(f"{category}/{seed}/{index}")
    builder = _Builder(category, index, seed)
    PROCEDURAL_CATEGORIES[category](builder, rng)
    return builder


def make_model(category: str, index: int, seed: int = 0) -> tuple[trimesh.Trimesh, Image.Image]:
    """Build one textured instance (deterministic in its arguments)."""
    return _built(category, index, seed).build()


def describe_model(category: str, index: int, seed: int = 0) -> ModelSpec:
    """The variant, part colours and atlas tiles of :func:`make_model`'s instance."""
    return _built(category, index, seed).spec()


def part_colours(category: str, index: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Part name → base RGB (uint8) of that part's texture tile in :func:`make_model`."""
    return describe_model(category, index, seed).part_colours


def write_model(mesh: trimesh.Trimesh, folder: Path) -> Path:
    """Write ``folder/models/model_normalized.{obj,mtl}`` + texture, atomically per model."""
    models = folder / "models"
    folder.parent.mkdir(parents=True, exist_ok=True)
    # a temp folder of this process's own: two processes generating one model never share it
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    (tmp / "models").mkdir()
    text, files = trimesh.exchange.obj.export_obj(
        mesh, include_texture=True, return_texture=True, mtl_name="model_normalized.mtl",
        include_normals=False)
    (tmp / "models" / "model_normalized.obj").write_text(text)
    for name, data in files.items():
        (tmp / "models" / name).write_bytes(data)
    if folder.exists() and not (models / "model_normalized.obj").is_file():
        shutil.rmtree(folder, ignore_errors=True)  # an incomplete model of an older ss3d
    try:
        tmp.rename(folder)
    except OSError:  # another process finished the same (deterministic) model first
        shutil.rmtree(tmp, ignore_errors=True)
    return models / "model_normalized.obj"


def generate_category(root: str | Path, category: str, count: int, seed: int = 0,
                      start: int = 0) -> list[Path]:
    """Write ``count`` instances of ``category`` under ``root`` in the ShapeNetCore v2 layout.

    Existing complete models are kept (a rerun is cheap). Returns the OBJ paths.
    """
    root = Path(root)
    synset = SYNSETS[category]
    paths = []
    for index in range(start, start + count):
        folder = root / synset / model_id_for(category, index, seed)
        obj = folder / "models" / "model_normalized.obj"
        if not obj.is_file():
            mesh, _ = make_model(category, index, seed)
            write_model(mesh, folder)
        paths.append(obj)
    meta = root / synset / "ss3d_procedural.json"
    meta.write_text(json.dumps({"category": category, "synset": synset, "seed": seed,
                                "generator": "ss3d.data.procedural"}, indent=1))
    return paths
