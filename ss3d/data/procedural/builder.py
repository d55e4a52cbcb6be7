"""The builder that category generators add parts to, and the model-level functions.

:class:`_Builder` collects named parts (each placed by a transform, textured by its own atlas
tile) and produces one textured mesh, normalised like ShapeNetCore v2's
``model_normalized.obj``: bounding-box centre at the origin, unit bounding-box diagonal.
:func:`make_model`, :func:`describe_model`, :func:`part_colours` and :func:`generate_category`
run a registered generator (:mod:`ss3d.data.procedural.registry`) on a fresh builder with the
random stream of ``(category, index, seed)``.

**Frames.** Category modules are written in an authoring frame: front +X, up +Y.
:meth:`_Builder.build` turns every model by one rotation about +Y into ShapeNetCore v2's
canonical frame: up +Y, front −Z, the Y–Z plane the plane of symmetry. So a real ShapeNetCore
v2 root and the procedural world are interchangeable, category by category.
:data:`PROCEDURAL_VERSION` is written next to the models; a data root made by another version
is refused (:func:`check_generated_version`), never silently mixed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ss3d.data.hashing import stable_rng
from ss3d.data.procedural.materials import _Atlas, _jittered, _rgb, _tile
from ss3d.data.procedural.primitives import (
    _PLANFORM,
    Mesh,
    _align_z,
    _part_uv,
    _prism,
    _revolve,
    _tf,
    _unit_box,
    _unit_cylinder,
    _unit_sphere,
)
from ss3d.data.procedural.registry import PART_PALETTES, PROCEDURAL_CATEGORIES
from ss3d.data.taxonomy import SYNSETS
from ss3d.files import remove_dead_temp_dirs, temp_dir

if TYPE_CHECKING:  # trimesh takes about a second to import: only where a mesh is built
    import trimesh
    from PIL import Image

#: 1: front +X (the authoring frame); 2: ShapeNetCore v2's frame (front −Z, up +Y)
PROCEDURAL_VERSION = 2
# authoring frame → ShapeNetCore v2: the rotation about +Y taking +X (front) to −Z.
# Written out exactly: cos(90°) in floating point is not 0.
_TO_SHAPENET = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
_META = "ss3d_procedural.json"


class GeneratorVersionError(RuntimeError):
    """A data root holds procedural models of another generator version."""


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
        import trimesh

        vertices, faces, uvs = [], [], []
        offset = 0
        for v, f, uv in self.parts:
            vertices.append(v)
            faces.append(f + offset)
            uvs.append(uv)
            offset += len(v)
        v = np.concatenate(vertices) @ _TO_SHAPENET.T
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


def _weighted(rng: np.random.Generator, options: dict[str, float]) -> str:
    weights = np.array(list(options.values()), float)
    return _choice(rng, list(options), weights / weights.sum())


def base_colours(category: str) -> dict[str, np.ndarray]:
    """Part name → the category's nominal RGB (uint8); instances jitter around it."""
    return {part: _rgb(style.hsv) for part, style in PART_PALETTES[category].items()}


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
    import trimesh

    """Write ``folder/models/model_normalized.{obj,mtl}`` + texture, atomically per model."""
    models = folder / "models"
    folder.parent.mkdir(parents=True, exist_ok=True)
    # a temp folder of this process's own: two processes generating one model never share it;
    # one a killed process left is removed by the next generate_category
    tmp = temp_dir(folder)
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
    check_generated_version(root, category)
    remove_dead_temp_dirs(root / synset)  # half-written models of a killed run
    paths = []
    for index in range(start, start + count):
        folder = root / synset / model_id_for(category, index, seed)
        obj = folder / "models" / "model_normalized.obj"
        if not obj.is_file():
            mesh, _ = make_model(category, index, seed)
            write_model(mesh, folder)
        paths.append(obj)
    (root / synset / _META).write_text(json.dumps(
        {"category": category, "synset": synset, "seed": seed,
         "generator": "ss3d.data.procedural", "version": PROCEDURAL_VERSION}, indent=1))
    return paths


def check_generated_version(root: str | Path, category: str) -> None:
    """Refuse a folder of ``category`` models written by another generator version.

    Models are reused when they exist, so models of an older frame would otherwise be mixed
    with (or silently stand in for) this version's. Nothing is deleted: the user chooses.

    Raises:
        GeneratorVersionError: naming the folder, both versions and what to do.
    """
    folder = Path(root) / SYNSETS[category]
    meta = folder / _META
    if not meta.is_file():
        return
    try:
        found = json.loads(meta.read_text()).get("version", 1)
    except (OSError, ValueError) as err:
        raise GeneratorVersionError(f"{meta}: unreadable ({err}); delete {folder} to "
                                    "regenerate its models") from None
    if found != PROCEDURAL_VERSION:
        raise GeneratorVersionError(
            f"{folder} holds procedural {category} models of generator version {found}, this "
            f"ss3d writes version {PROCEDURAL_VERSION} (ShapeNetCore v2's frame: front -Z, up "
            f"+Y). Delete the data root ({Path(root).parent}, e.g. `make clean-data`) or set "
            "data.root to a new folder, and render again")
