"""Procedural categories: real intra-category variation, consistent part colours, determinism.

The variation floors are measured (canonical cube, longest side 1, 1024 points): instances 0
and 1 are >= 0.05 apart in Chamfer-L1 in every category and the first six >= 0.057 apart on
average; the generator before the category families gave 0.026–0.037 and 0.025–0.053.
``benchmarks/category_variation.py`` measures what matters: the category-medoid baseline.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
import torch

from ss3d.data.procedural import (
    ATLAS_TILES,
    CATEGORY_FRAMES,
    PROCEDURAL_CATEGORIES,
    TILE,
    base_colours,
    describe_model,
    make_model,
    part_colours,
)
from ss3d.eval.metrics import chamfer_fscore
from ss3d.geometry import sample_surface

CATEGORIES = list(PROCEDURAL_CATEGORIES)
PAIR_FLOOR = 0.04  # Chamfer-L1 between instances 0 and 1 (measured: >= 0.050)
MEAN_FLOOR = 0.055  # mean pairwise Chamfer-L1 over instances 0..5 (measured: >= 0.057)
COLOUR_TOLERANCE = 32  # max channel deviation from the category's part colour (measured <= 25)
PART_SEPARATION = 40.0  # RGB distance between two parts of one instance (measured >= 46)
# the parts each category promises (every instance has ``core``; front/back/top/bottom show
# its frame): declared by the category module when it registers
FRAMES = CATEGORY_FRAMES
CORE_PARTS = {c: set(f.core) for c, f in FRAMES.items()}
FRAME_PARTS = [(c, part, axis, side) for c, f in FRAMES.items()
               for parts, axis, side in ((f.front, 2, -1), (f.back, 2, 1), (f.top, 1, 1),
                                         (f.bottom, 1, -1))
               for part in parts]


def _canonical_points(category: str, index: int, count: int = 1024) -> torch.Tensor:
    """Surface samples in the canonical cube (bbox centre at 0, longest side 1)."""
    mesh, _ = make_model(category, index)
    mesh = mesh.copy()
    lo, hi = mesh.bounds
    mesh.apply_translation(-(lo + hi) / 2)
    mesh.apply_scale(1.0 / float(np.max(hi - lo)))
    return torch.from_numpy(sample_surface(mesh, count, seed=0))


def _vertex_parts(category: str, index: int) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Vertices, the atlas tile each vertex's UV falls in, and tile → part name."""
    mesh, _ = make_model(category, index)
    uv = np.asarray(mesh.visual.uv)
    col = np.floor(uv[:, 0] * ATLAS_TILES).astype(int)
    row = np.floor((1.0 - uv[:, 1]) * ATLAS_TILES).astype(int)
    tiles = row * ATLAS_TILES + col
    spec = describe_model(category, index)
    return np.asarray(mesh.vertices), tiles, {t: p for p, t in spec.part_tiles.items()}


@pytest.mark.parametrize("category", CATEGORIES)
def test_instances_of_a_category_really_differ(category):
    points = [_canonical_points(category, i) for i in range(6)]
    pairs = {(i, j): chamfer_fscore(points[i], points[j])["chamfer_l1"]
             for i, j in itertools.combinations(range(6), 2)}
    assert pairs[(0, 1)] > PAIR_FLOOR, pairs[(0, 1)]
    assert np.mean(list(pairs.values())) > MEAN_FLOOR, pairs
    # discrete variants, not only proportions: the first instances are not all one variant
    variants = {tuple(sorted((k, v) for k, v in describe_model(category, i).variant.items()
                             if isinstance(v, str))) for i in range(6)}
    assert len(variants) >= 3, variants


@pytest.mark.parametrize("category", CATEGORIES)
def test_part_colours_are_consistent_within_a_category(category):
    nominal = base_colours(category)
    for index in range(8):
        colours = part_colours(category, index)
        assert CORE_PARTS[category] <= set(colours) <= set(nominal), colours.keys()
        for part, rgb in colours.items():
            assert rgb.dtype == np.uint8 and rgb.shape == (3,)
            deviation = np.abs(rgb.astype(int) - nominal[part].astype(int)).max()
            assert deviation <= COLOUR_TOLERANCE, (part, rgb, nominal[part])
        for a, b in itertools.combinations(colours, 2):  # distinct parts stay distinguishable
            distance = np.linalg.norm(colours[a].astype(int) - colours[b].astype(int))
            assert distance >= PART_SEPARATION, (a, b, colours[a], colours[b])
    # shared parts of two instances: similar colour, but jittered (not one flat palette)
    a, b = part_colours(category, 0), part_colours(category, 1)
    shared = set(a) & set(b)
    assert shared >= CORE_PARTS[category]
    assert any(not np.array_equal(a[p], b[p]) for p in shared)


@pytest.mark.parametrize("category", CATEGORIES)
def test_texture_atlas_carries_the_reported_part_colours(category):
    for index in range(3):
        mesh, image = make_model(category, index)
        spec = describe_model(category, index)
        atlas = np.asarray(image)[..., :3]
        assert atlas.shape == (ATLAS_TILES * TILE, ATLAS_TILES * TILE, 3)
        assert np.array_equal(np.asarray(mesh.visual.material.image)[..., :3], atlas)
        for part, tile in spec.part_tiles.items():
            r, c = divmod(tile, ATLAS_TILES)
            texels = atlas[r * TILE:(r + 1) * TILE, c * TILE:(c + 1) * TILE].reshape(-1, 3)
            colours, counts = np.unique(texels, axis=0, return_counts=True)
            # the base colour is the tile's majority (patterns cover at most a third of it)
            assert np.array_equal(colours[counts.argmax()], spec.part_colours[part]), part
            assert counts.max() >= texels.shape[0] // 2
        # the mesh uses exactly the parts' tiles, so every reported colour is on the surface
        _, tiles, _ = _vertex_parts(category, index)
        assert set(np.unique(tiles)) == set(spec.part_tiles.values())


@pytest.mark.parametrize(("category", "part", "axis", "side"), FRAME_PARTS)
def test_frame_parts_sit_where_the_canonical_frame_says(category, part, axis, side):
    """ShapeNetCore v2's frame, front = -Z and up = +Y, in every category: the parts that tell
    front from back and top from bottom sit where they should (parts a variant lacks are
    skipped)."""
    seen = 0
    for index in range(8):
        vertices, tiles, part_of = _vertex_parts(category, index)
        names = np.array([part_of[t] for t in tiles])
        if part not in names:
            continue
        seen += 1
        centre = (vertices.max(0) + vertices.min(0)) / 2
        assert side * (vertices[names == part, axis].mean() - centre[axis]) > 0, (
            category, index, part)
    assert seen >= 5


def test_every_category_promises_its_frame():
    for category, frame in FRAMES.items():
        assert frame.core, category
        assert frame.front or frame.back, f"{category}: no front/back cue"


@pytest.mark.parametrize("category", CATEGORIES)
def test_models_are_deterministic_normalised_and_small(category):
    a, image_a = make_model(category, 7, seed=3)
    b, image_b = make_model(category, 7, seed=3)
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)
    assert np.array_equal(a.visual.uv, b.visual.uv)
    assert np.array_equal(np.asarray(image_a), np.asarray(image_b))
    spec_a, spec_b = describe_model(category, 7, seed=3), describe_model(category, 7, seed=3)
    assert spec_a.variant == spec_b.variant
    assert all(np.array_equal(spec_a.part_colours[p], spec_b.part_colours[p])
               for p in spec_a.part_colours)
    c, _ = make_model(category, 7, seed=4)
    assert a.vertices.shape != c.vertices.shape or not np.allclose(a.vertices, c.vertices)
    # ShapeNet v2 normalisation: centred, unit bounding-box diagonal
    assert np.allclose(a.bounds.mean(axis=0), 0, atol=1e-9)
    assert np.isclose(np.linalg.norm(a.extents), 1.0)
    assert len(a.faces) < 5000 and np.isfinite(a.vertices).all()


def test_generation_is_fast():
    tic = time.perf_counter()
    count = 0
    for category in CATEGORIES:
        for index in range(5):
            make_model(category, index)
            count += 1
    assert (time.perf_counter() - tic) / count < 0.05  # ~2-5 ms on a 2-core CPU


def test_unknown_category_is_a_clear_error():
    with pytest.raises(ValueError, match="no procedural generator"):
        describe_model("washer", 0)  # a ShapeNet category without a generator
