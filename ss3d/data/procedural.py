"""Built-in procedural categories, written in the ShapeNetCore v2 layout.

Nothing can be downloaded, so ss3d generates its own textured models. Each category is a
small parametric assembly of primitives (boxes, cylinders, cones, ellipsoids) whose proportions
vary per instance, with a texture atlas of structured tiles (stripes, checker patches, two-tone
splits) so that colour supervision means something, and deliberately asymmetric colouring
(airplane nose vs tail, car hood vs trunk, bird head vs tail) so that front and back views
differ (DESIGN.md §1.7: near-symmetric shapes make camera selection ambiguous).

Frame: +Y up; the "front" of every category points to +X (nose, hood, beak, laptop screen
faces +X, chair faces +X). Models are centred and scaled to a unit bounding-box diagonal,
like ShapeNetCore v2's ``model_normalized.obj``.

Output: ``<root>/<synset>/<model_id>/models/model_normalized.{obj,mtl}`` plus the texture PNG.
Everything is deterministic in ``(category, index, seed)``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from ss3d.config import SYNSETS
from ss3d.data.hashing import stable_rng

__all__ = ["PROCEDURAL_CATEGORIES", "generate_category", "make_model", "model_id_for"]

TILE = 32  # texture tile size (pixels); atlas is ATLAS_TILES x ATLAS_TILES tiles
ATLAS_TILES = 4


# ----------------------------------------------------------------------------------------------
# Textures
# ----------------------------------------------------------------------------------------------
def _palette(rng: np.random.Generator) -> np.ndarray:
    """A random saturated colour (uint8 RGB)."""
    hue = rng.uniform(0, 1)
    sat = rng.uniform(0.55, 0.95)
    val = rng.uniform(0.55, 0.95)
    import colorsys

    return (np.array(colorsys.hsv_to_rgb(hue, sat, val)) * 255).astype(np.uint8)


def _tile(rng: np.random.Generator, base: np.ndarray, accent: np.ndarray,
          pattern: str) -> np.ndarray:
    """A TILE×TILE texture tile with structure."""
    img = np.empty((TILE, TILE, 3), np.uint8)
    img[:] = base
    yy, xx = np.mgrid[0:TILE, 0:TILE]
    if pattern == "stripes":
        period = int(rng.integers(6, 12))
        img[(xx // (period // 2)) % 2 == 0] = accent
    elif pattern == "patches":
        cell = int(rng.integers(6, 11))
        img[((xx // cell) + (yy // cell)) % 2 == 0] = accent
    elif pattern == "two_tone":
        img[yy < TILE // 2] = accent
    elif pattern == "solid":
        pass
    else:
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
# Parts
# ----------------------------------------------------------------------------------------------
@dataclass
class _Part:
    mesh: trimesh.Trimesh
    tile: int


def _part_uv(mesh: trimesh.Trimesh, axis: int) -> np.ndarray:
    """Cylindrical UV around ``axis`` of the part's own bounding box (before placement)."""
    v = mesh.vertices - mesh.bounds.mean(axis=0)
    extent = np.maximum(mesh.extents, 1e-6)
    along = (v[:, axis] / extent[axis]) + 0.5
    other = [a for a in range(3) if a != axis]
    angle = (np.arctan2(v[:, other[1]], v[:, other[0]]) / (2 * np.pi)) + 0.5
    return np.stack([along, angle], axis=1)


class _Builder:
    """Collects parts, each with its own tile; produces one textured mesh."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.atlas = _Atlas()
        self.parts: list[tuple[trimesh.Trimesh, np.ndarray]] = []

    def tile(self, base: np.ndarray, accent: np.ndarray | None = None,
             pattern: str | None = None) -> int:
        if pattern is None:
            pattern = str(self.rng.choice(["stripes", "patches", "two_tone", "solid"]))
        if accent is None:
            accent = _palette(self.rng)
        return self.atlas.add(_tile(self.rng, base, accent, pattern))

    def add(self, mesh: trimesh.Trimesh, tile: int, transform: np.ndarray | None = None,
            axis: int = 0) -> None:
        local = _part_uv(mesh, axis)
        mesh = mesh.copy()
        if transform is not None:
            mesh.apply_transform(transform)
        self.parts.append((mesh, _Atlas.uv(tile, local)))

    def box(self, size, center, tile, rotation=None, axis=0) -> None:
        self.add(trimesh.creation.box(extents=size), tile, _tf(center, rotation), axis)

    def cylinder(self, radius, height, center, tile, axis_dir=(0, 0, 1), sections=20) -> None:
        mesh = trimesh.creation.cylinder(radius=radius, height=height, sections=sections)
        self.add(mesh, tile, _tf(center, _align_z(axis_dir)), axis=2)

    def cone(self, radius, height, center, tile, axis_dir=(0, 0, 1), sections=20) -> None:
        mesh = trimesh.creation.cone(radius=radius, height=height, sections=sections)
        mesh.apply_translation([0, 0, -height / 2])  # centre the cone on its own bbox
        self.add(mesh, tile, _tf(center, _align_z(axis_dir)), axis=2)

    def ellipsoid(self, radii, center, tile, rotation=None, subdivisions=2) -> None:
        mesh = trimesh.creation.icosphere(subdivisions=subdivisions)
        mesh.apply_scale(1.0)
        mesh.vertices = mesh.vertices * np.asarray(radii, dtype=float)
        self.add(mesh, tile, _tf(center, rotation), axis=int(np.argmax(radii)))

    def build(self) -> tuple[trimesh.Trimesh, Image.Image]:
        vertices, faces, uvs = [], [], []
        offset = 0
        for mesh, uv in self.parts:
            vertices.append(mesh.vertices)
            faces.append(mesh.faces + offset)
            uvs.append(uv)
            offset += len(mesh.vertices)
        v = np.concatenate(vertices)
        # ShapeNet v2 normalisation: bbox centre at the origin, unit bbox diagonal
        lo, hi = v.min(axis=0), v.max(axis=0)
        v = (v - (lo + hi) / 2) / np.linalg.norm(hi - lo)
        image = self.atlas.image()
        visual = trimesh.visual.TextureVisuals(
            uv=np.concatenate(uvs), material=trimesh.visual.material.SimpleMaterial(image=image))
        mesh = trimesh.Trimesh(v, np.concatenate(faces), visual=visual, process=False)
        return mesh, image


def _tf(center, rotation=None) -> np.ndarray:
    m = np.eye(4)
    if rotation is not None:
        m[:3, :3] = rotation
    m[:3, 3] = center
    return m


def _align_z(direction) -> np.ndarray:
    """Rotation taking +Z onto ``direction``."""
    return trimesh.geometry.align_vectors([0, 0, 1], np.asarray(direction, float))[:3, :3]


def _rot(axis: str, degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    c, s = np.cos(a), np.sin(a)
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]),
            "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


# ----------------------------------------------------------------------------------------------
# Categories (front = +X, up = +Y)
# ----------------------------------------------------------------------------------------------
def _airplane(b: _Builder, rng: np.random.Generator) -> None:
    length = rng.uniform(1.6, 2.2)
    radius = rng.uniform(0.12, 0.17)
    span = rng.uniform(1.8, 2.6)
    chord = rng.uniform(0.22, 0.38)
    sweep = rng.uniform(0.0, 35.0)
    body_col, wing_col, nose_col = _palette(rng), _palette(rng), _palette(rng)
    body = b.tile(body_col, pattern="stripes")
    wing = b.tile(wing_col, pattern=str(rng.choice(["two_tone", "patches"])))
    nose = b.tile(nose_col, pattern="solid")
    tail = b.tile(_palette(rng), pattern="two_tone")
    b.cylinder(radius, length, (0, 0, 0), body, axis_dir=(1, 0, 0))
    b.cone(radius, rng.uniform(0.25, 0.4), (length / 2 + 0.15, 0, 0), nose, axis_dir=(1, 0, 0))
    b.cone(radius * 0.9, 0.3, (-length / 2 - 0.1, 0, 0), tail, axis_dir=(-1, 0, 0))
    for side in (-1, 1):
        rot = _rot("y", side * sweep)
        b.box((chord, 0.04, span / 2), (0.05 * length - side * 0, -radius * 0.3, side * span / 4),
              wing, rotation=rot, axis=2)
        b.box((chord * 0.6, 0.03, span * 0.18), (-length / 2 + 0.05, 0.02, side * span * 0.09),
              tail, axis=2)
    fin_h = rng.uniform(0.25, 0.45)
    b.box((chord * 0.7, fin_h, 0.03), (-length / 2 + 0.08, radius + fin_h / 2, 0), tail, axis=1)
    if rng.uniform() < 0.6:  # engines under the wings
        for side in (-1, 1):
            b.cylinder(radius * 0.45, 0.3, (0.1, -radius - 0.06, side * span * 0.22), nose,
                       axis_dir=(1, 0, 0))


def _car(b: _Builder, rng: np.random.Generator) -> None:
    length = rng.uniform(1.6, 2.2)
    width = rng.uniform(0.75, 0.95)
    height = rng.uniform(0.3, 0.45)
    cabin_len = rng.uniform(0.45, 0.65) * length
    cabin_h = rng.uniform(0.22, 0.35)
    cabin_shift = rng.uniform(-0.2, 0.05) * length
    wheel_r = rng.uniform(0.15, 0.21)
    body_col = _palette(rng)
    body = b.tile(body_col, pattern="solid")
    hood = b.tile(_palette(rng), pattern="stripes")  # front differs from back
    trunk = b.tile(body_col, pattern="two_tone")
    cabin = b.tile(np.array([40, 50, 70], np.uint8), pattern="patches")
    wheel = b.tile(np.array([25, 25, 25], np.uint8), np.array([160, 160, 160], np.uint8),
                   pattern="stripes")
    base_y = wheel_r * 0.9
    b.box((length * 0.5, height, width), (-length * 0.25, base_y + height / 2, 0), trunk)
    b.box((length * 0.5, height, width), (length * 0.25, base_y + height / 2, 0), hood)
    b.box((cabin_len, cabin_h, width * 0.85),
          (cabin_shift, base_y + height + cabin_h / 2, 0), cabin)
    b.box((0.06, height * 0.4, width * 0.9), (length / 2 + 0.03, base_y + height * 0.5, 0), body)
    for x in (-length * 0.32, length * 0.32):
        for z in (-width / 2, width / 2):
            b.cylinder(wheel_r, 0.14, (x, wheel_r, z), wheel, axis_dir=(0, 0, 1))


def _laptop(b: _Builder, rng: np.random.Generator) -> None:
    width = rng.uniform(1.1, 1.5)
    depth = rng.uniform(0.75, 1.0)
    thick = rng.uniform(0.04, 0.07)
    lid_angle = rng.uniform(95, 135)  # degrees between base and lid
    shell = b.tile(_palette(rng), pattern=str(rng.choice(["solid", "two_tone"])))
    keys = b.tile(np.array([30, 30, 35], np.uint8), np.array([200, 200, 200], np.uint8),
                  pattern="patches")
    screen = b.tile(_palette(rng), pattern="stripes")
    # base: keyboard towards +X (the user sits at +X), hinge at -X
    b.box((depth, thick, width), (0, thick / 2, 0), shell, axis=2)
    b.box((depth * 0.55, 0.01, width * 0.85), (depth * 0.05, thick + 0.005, 0), keys, axis=2)
    hinge = np.array([-depth / 2, thick, 0.0])
    tilt = _rot("z", -(lid_angle - 90))  # lid leans back, away from +X
    lid_center = hinge + tilt @ np.array([thick / 2, depth / 2, 0])
    b.box((thick, depth, width), lid_center, shell, rotation=tilt, axis=2)
    screen_center = hinge + tilt @ np.array([thick + 0.005, depth / 2, 0])
    b.box((0.01, depth * 0.85, width * 0.9), screen_center, screen, rotation=tilt, axis=2)


def _trash_bin(b: _Builder, rng: np.random.Generator) -> None:
    height = rng.uniform(0.9, 1.5)
    r_top = rng.uniform(0.35, 0.5)
    taper = rng.uniform(0.6, 1.0)
    square = rng.uniform() < 0.4
    body = b.tile(_palette(rng), pattern=str(rng.choice(["stripes", "two_tone"])))
    rim = b.tile(_palette(rng), pattern="solid")
    label = b.tile(_palette(rng), pattern="patches")
    sections = 4 if square else 24
    # a frustum: a cone truncated by scaling the cylinder's top ring
    mesh = trimesh.creation.cylinder(radius=r_top, height=height, sections=sections)
    bottom = mesh.vertices[:, 2] < 0
    mesh.vertices[bottom, :2] *= taper
    rot = _rot("x", -90)  # cylinder axis z → y
    b.add(mesh, body, _tf((0, height / 2, 0), rot), axis=2)
    b.cylinder(r_top * 1.05, 0.06, (0, height, 0), rim, axis_dir=(0, 1, 0), sections=sections)
    # a label on the front (+X) breaks the rotational symmetry
    b.box((0.03, height * 0.3, r_top * 0.6), (r_top * (1 + taper) / 2 + 0.01, height * 0.55, 0),
          label, axis=1)
    if rng.uniform() < 0.5:  # pedal at the front
        b.box((0.2, 0.04, 0.18), (r_top * taper + 0.1, 0.03, 0), rim)


def _chair(b: _Builder, rng: np.random.Generator) -> None:
    seat_w = rng.uniform(0.8, 1.1)
    seat_d = rng.uniform(0.8, 1.0)
    leg_h = rng.uniform(0.7, 1.0)
    back_h = rng.uniform(0.7, 1.2)
    leg_r = rng.uniform(0.03, 0.06)
    wood = b.tile(_palette(rng), pattern="stripes")
    cushion = b.tile(_palette(rng), pattern=str(rng.choice(["patches", "two_tone"])))
    b.box((seat_d, 0.08, seat_w), (0, leg_h, 0), cushion, axis=2)
    for x in (-seat_d / 2 + leg_r, seat_d / 2 - leg_r):
        for z in (-seat_w / 2 + leg_r, seat_w / 2 - leg_r):
            b.cylinder(leg_r, leg_h, (x, leg_h / 2, z), wood, axis_dir=(0, 1, 0), sections=8)
    # backrest at -X (the chair faces +X)
    b.box((0.07, back_h, seat_w), (-seat_d / 2 + 0.035, leg_h + back_h / 2, 0), cushion, axis=1)
    if rng.uniform() < 0.5:  # armrests
        for z in (-seat_w / 2, seat_w / 2):
            b.box((seat_d * 0.8, 0.05, 0.07), (0, leg_h + 0.3, z), wood)


def _bird(b: _Builder, rng: np.random.Generator) -> None:
    body_len = rng.uniform(0.8, 1.1)
    body_h = rng.uniform(0.35, 0.5)
    head_r = rng.uniform(0.17, 0.24)
    beak_len = rng.uniform(0.12, 0.3)
    tail_len = rng.uniform(0.3, 0.55)
    wing_len = rng.uniform(0.45, 0.7)
    spread = rng.uniform(0, 70)  # wing opening (degrees)
    body_col = _palette(rng)
    body = b.tile(body_col, _palette(rng), pattern="two_tone")
    head = b.tile(_palette(rng), pattern="solid")
    beak = b.tile(np.array([230, 170, 30], np.uint8), pattern="solid")
    wing = b.tile(_palette(rng), pattern="stripes")
    leg = b.tile(np.array([120, 80, 40], np.uint8), pattern="solid")
    b.ellipsoid((body_len / 2, body_h / 2, body_h * 0.42), (0, 0, 0), body)
    head_c = np.array([body_len / 2 - 0.02, body_h * 0.45, 0])
    b.ellipsoid((head_r, head_r, head_r * 0.9), head_c, head)
    b.cone(head_r * 0.35, beak_len, head_c + [head_r + beak_len / 2 - 0.03, -0.02, 0], beak,
           axis_dir=(1, 0, 0), sections=10)
    b.box((tail_len, 0.03, body_h * 0.5), (-body_len / 2 - tail_len / 2 + 0.05, 0.05, 0),
          wing, rotation=_rot("z", rng.uniform(-25, -5)))
    for side in (-1, 1):
        rot = _rot("x", side * spread)
        b.ellipsoid((wing_len / 2, 0.025, body_h * 0.3),
                    (-0.05, body_h * 0.25, side * body_h * 0.4), wing, rotation=rot)
        b.cylinder(0.02, 0.3, (0.05, -body_h / 2 - 0.1, side * 0.08), leg,
                   axis_dir=(0, 1, 0), sections=6)


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


def make_model(category: str, index: int, seed: int = 0) -> tuple[trimesh.Trimesh, Image.Image]:
    """Build one textured instance (deterministic in its arguments)."""
    if category not in PROCEDURAL_CATEGORIES:
        raise ValueError(f"no procedural generator for category {category!r}; available: "
                         f"{', '.join(PROCEDURAL_CATEGORIES)}")
    rng = stable_rng(f"{category}/{seed}/{index}")
    builder = _Builder(rng)
    PROCEDURAL_CATEGORIES[category](builder, rng)
    return builder.build()


def write_model(mesh: trimesh.Trimesh, folder: Path) -> Path:
    """Write ``folder/models/model_normalized.{obj,mtl}`` + texture, atomically per model."""
    models = folder / "models"
    tmp = folder.parent / f".{folder.name}.tmp"
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    (tmp / "models").mkdir(parents=True)
    text, files = trimesh.exchange.obj.export_obj(
        mesh, include_texture=True, return_texture=True, mtl_name="model_normalized.mtl",
        include_normals=False)
    (tmp / "models" / "model_normalized.obj").write_text(text)
    for name, data in files.items():
        (tmp / "models" / name).write_bytes(data)
    if folder.exists():
        import shutil

        shutil.rmtree(folder)
    tmp.rename(folder)
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
