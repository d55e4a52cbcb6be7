"""The registry of procedural categories: one :func:`register` call per category module.

A category module decorates its generator with ``@register("name", PALETTE, core=...,
front=..., ...)``; that records the generator, the part palette, the parts that show its frame
(:class:`CategoryFrame`) and the category's synset id (from
:data:`ss3d.data.taxonomy.SYNSETS`, so a category must have a name there first). The order of
registration is the order of :data:`PROCEDURAL_CATEGORIES` (and of the lists in messages).

This module imports neither the builder nor the category modules, so that both can import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.taxonomy import SYNSETS

if TYPE_CHECKING:
    from ss3d.data.procedural.builder import _Builder

__all__ = ["CATEGORY_FRAMES", "PART_PALETTES", "PROCEDURAL_CATEGORIES", "PROCEDURAL_SYNSETS",
           "CategoryFrame", "Generator", "register"]

# A generator adds one instance's parts to the builder, drawing every choice from ``rng``.
Generator = Callable[["_Builder", np.random.Generator], None]

# category name → generator, in registration order
PROCEDURAL_CATEGORIES: dict[str, Generator] = {}
# category name → part name → style; every part a generator adds must be in its palette
PART_PALETTES: dict[str, dict[str, _PartStyle]] = {}
# category name → synset id (the folder that generate_category writes to)
PROCEDURAL_SYNSETS: dict[str, str] = {}


@dataclass(frozen=True)
class CategoryFrame:
    """What a category promises about its parts, checked for every category by
    ``tests/test_procedural.py``: ``core`` parts every instance has, and parts that show the
    canonical frame: ``front`` parts sit at +X, ``back`` at -X, ``top`` above the centre
    (+Y), ``bottom`` below it (an instance whose variant lacks one of them is skipped)."""

    core: frozenset[str]
    front: tuple[str, ...] = ()
    back: tuple[str, ...] = ()
    top: tuple[str, ...] = ()
    bottom: tuple[str, ...] = ()


# category name → its frame promises
CATEGORY_FRAMES: dict[str, CategoryFrame] = {}


def register(name: str, palette: dict[str, _PartStyle], *, core: set[str] | frozenset[str],
             front: tuple[str, ...] = (), back: tuple[str, ...] = (), top: tuple[str, ...] = (),
             bottom: tuple[str, ...] = ()) -> Callable[[Generator], Generator]:
    """Decorator that registers ``generator`` as category ``name`` with its part ``palette``
    and its frame promises (:class:`CategoryFrame`).

    Raises:
        ValueError: ``name`` is registered already or is not a canonical taxonomy name, or a
            promised part is not in the palette.
    """
    if name in PROCEDURAL_CATEGORIES:
        raise ValueError(f"procedural category {name!r} is registered twice")
    if name not in SYNSETS:
        raise ValueError(f"procedural category {name!r} has no synset id in "
                         "ss3d.data.taxonomy.SYNSETS: add it there first")
    frame = CategoryFrame(frozenset(core), tuple(front), tuple(back), tuple(top), tuple(bottom))
    unknown = (set(frame.core) | {*front, *back, *top, *bottom}) - set(palette)
    if unknown:
        raise ValueError(f"procedural category {name!r}: parts {sorted(unknown)} are not in "
                         "its palette")

    def decorator(generator: Generator) -> Generator:
        PROCEDURAL_CATEGORIES[name] = generator
        PART_PALETTES[name] = palette
        PROCEDURAL_SYNSETS[name] = SYNSETS[name]
        CATEGORY_FRAMES[name] = frame
        return generator

    return decorator
