"""ShapeNetCore loader (v1 and v2 folder layouts; the procedural data uses v2).

* v1: ``<root>/<synset>/<model_id>/model.obj``
* v2: ``<root>/<synset>/<model_id>/models/model_normalized.obj``

Models are loaded with trimesh as a list of textured meshes (one per material, as pyrender
wants them) and normalised into the canonical cube: bounding-box centre at the origin, longest
side 1, so the object fits [-0.5, 0.5]^3 (README: Conventions).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from ss3d.data import taxonomy
from ss3d.data.hashing import stable_hash

__all__ = ["ModelRecord", "ShapeNetError", "index_shapenet", "load_model", "stable_split"]

log = logging.getLogger(__name__)
SYNSET_NAMES = {v: k for k, v in taxonomy.SYNSETS.items()}
DEFAULT_COLOR = np.array([180, 180, 180, 255], np.uint8)


class ShapeNetError(ValueError):
    """A ShapeNet root or model is missing or unreadable (the message names the path)."""


@dataclass(frozen=True)
class ModelRecord:
    category: str
    synset: str
    model_id: str
    path: Path
    layout: str  # "v1" or "v2"

    @property
    def key(self) -> str:
        return f"{self.synset}/{self.model_id}"


def _resolve_category(name_or_synset: str) -> tuple[str, str]:
    """``(canonical name, synset)`` of a taxonomy name, alias or synset id; a synset folder
    name outside the taxonomy (digits) is its own name."""
    text = str(name_or_synset).strip()
    if text.isdigit() and text not in SYNSET_NAMES:
        return text, text  # a synset we have no name for: index_shapenet checks it exists
    try:
        return taxonomy.resolve(text)
    except taxonomy.UnknownCategoryError as err:
        raise ShapeNetError(str(err)) from None


def index_shapenet(root: str | Path, categories: list[str] | None = None) -> list[ModelRecord]:
    """All models under ``root`` (optionally only ``categories``: names or synset ids).

    Returns records sorted by (synset, model_id) so indexing is deterministic.
    """
    root = Path(root)
    if not root.is_dir():
        raise ShapeNetError(f"ShapeNet root not found: {root}")
    wanted = None if categories is None else {_resolve_category(c)[1] for c in categories}
    records = []
    for synset_dir in sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit()):
        if wanted is not None and synset_dir.name not in wanted:
            continue
        category = SYNSET_NAMES.get(synset_dir.name, synset_dir.name)
        for model_dir in sorted(p for p in synset_dir.iterdir() if p.is_dir()
                                and not p.name.startswith(".")):
            v2 = model_dir / "models" / "model_normalized.obj"
            v1 = model_dir / "model.obj"
            if v2.is_file():
                records.append(ModelRecord(category, synset_dir.name, model_dir.name, v2, "v2"))
            elif v1.is_file():
                records.append(ModelRecord(category, synset_dir.name, model_dir.name, v1, "v1"))
    if wanted is not None:
        found = {r.synset for r in records}
        missing = sorted(wanted - found)
        if missing:
            names = [SYNSET_NAMES.get(s, s) for s in missing]
            raise ShapeNetError(f"{root}: no models for categories {names} (synsets {missing})")
    return records


def stable_split(model_id: str, val_fraction: float, test_fraction: float) -> str:
    """'train' / 'val' / 'test' from a hash of the model id alone.

    Adding or removing other models never moves a model to another split.
    """
    h = stable_hash(model_id) / 2.0**64
    if h < test_fraction:
        return "test"
    if h < test_fraction + val_fraction:
        return "val"
    return "train"


def _meshes_of(loaded: trimesh.Scene | trimesh.Trimesh) -> list[trimesh.Trimesh]:
    if isinstance(loaded, trimesh.Scene):
        meshes = []
        for node in loaded.graph.nodes_geometry:
            transform, name = loaded.graph[node]
            geom = loaded.geometry[name]
            if isinstance(geom, trimesh.Trimesh) and len(geom.faces):
                geom = geom.copy()
                geom.apply_transform(transform)
                meshes.append(geom)
        return meshes
    return [loaded] if isinstance(loaded, trimesh.Trimesh) and len(loaded.faces) else []


def load_model(path: str | Path) -> list[trimesh.Trimesh]:
    """Load an OBJ as textured meshes normalised into the canonical cube.

    A missing or unreadable texture falls back to a default grey colour with one warning.

    Raises:
        ShapeNetError: the file is missing, unreadable or holds no triangles.
    """
    path = Path(path)
    if not path.is_file():
        raise ShapeNetError(f"mesh not found: {path}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            loaded = trimesh.load(path, force="scene", process=False)
        except Exception as err:  # trimesh raises many exception types on broken files
            raise ShapeNetError(f"{path}: unreadable mesh ({type(err).__name__}: {err})") from None
    meshes = _meshes_of(loaded)
    if not meshes:
        raise ShapeNetError(f"{path}: no triangles in file")
    missing_texture = False
    for i, mesh in enumerate(meshes):
        visual = mesh.visual
        if isinstance(visual, trimesh.visual.TextureVisuals):
            image = getattr(visual.material, "image", None)
            if image is None:
                image = getattr(visual.material, "baseColorTexture", None)
            if image is None or visual.uv is None:
                missing_texture = True
                meshes[i] = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False,
                                            vertex_colors=np.tile(DEFAULT_COLOR,
                                                                  (len(mesh.vertices), 1)))
    if missing_texture or any("texture" in str(w.message).lower() for w in caught):
        log.warning("%s: texture missing or unreadable, using a default colour", path)
    lo = np.min([m.bounds[0] for m in meshes], axis=0)
    hi = np.max([m.bounds[1] for m in meshes], axis=0)
    scale = 1.0 / float(np.max(hi - lo))
    for mesh in meshes:
        mesh.apply_translation(-(lo + hi) / 2)
        mesh.apply_scale(scale)
    return meshes
