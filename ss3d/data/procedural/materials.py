"""Part colours and textures of the procedural categories.

A category's palette gives every part a :class:`_PartStyle`: a base colour (HSV), a pattern
and an accent colour. Each instance jitters the base colour a little in hue, saturation and
value (:func:`_jittered`) and paints one :data:`TILE`-pixel tile per part (:func:`_tile`) into
a texture atlas of ``ATLAS_TILES × ATLAS_TILES`` tiles (:class:`_Atlas`).
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

TILE = 32  # texture tile size (pixels); atlas is ATLAS_TILES x ATLAS_TILES tiles
ATLAS_TILES = 4
# per-instance colour jitter (half-ranges) in hue, saturation, value
HSV_JITTER = (0.01, 0.05, 0.05)


@dataclass(frozen=True)
class _PartStyle:
    hsv: tuple[float, float, float]  # the category's base colour of the part
    pattern: str = "solid"  # stripes | patches | two_tone | solid (accent covers <= 1/3)
    accent: tuple[float, float, float] | None = None  # None: a darker shade of the base


def _rgb(hsv: Sequence[float]) -> np.ndarray:
    return np.round(np.array(colorsys.hsv_to_rgb(*hsv)) * 255).astype(np.uint8)


def _jittered(style: _PartStyle, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The part's base and accent colours (uint8 RGB) for one instance."""
    h, s, v = style.hsv
    dh, ds, dv = (rng.uniform(-j, j) for j in HSV_JITTER)
    base = ((h + dh) % 1.0, float(np.clip(s + ds, 0, 1)), float(np.clip(v + dv, 0, 1)))
    accent = style.accent if style.accent is not None else (base[0], base[1], base[2] * 0.7)
    return _rgb(base), _rgb(accent)


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
        from PIL import Image

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
