"""Mugs and cups (front +X: the handle; up +Y: the open top, the foot below; height 1)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ss3d.data.procedural.bottle import _loop_handle
from ss3d.data.procedural.builder import _Builder, _choice
from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.procedural.registry import register

PALETTE: dict[str, _PartStyle] = {
    "body": _PartStyle((0.58, 0.45, 0.80)),
    "inside": _PartStyle((0.12, 0.18, 0.97)),
    "handle": _PartStyle((0.04, 0.75, 0.85)),
    "foot": _PartStyle((0.08, 0.55, 0.40)),
    "saucer": _PartStyle((0.30, 0.40, 0.70), "two_tone"),
}


# mug shapes (height 1): radius at the rim, bottom radius (× the rim's), bulge, wall
# thickness, the chance of a saucer
_SHAPES: dict[str, dict[str, tuple[float, float] | float]] = {
    "classic": {"radius": (0.33, 0.48), "bottom": (0.95, 1.0), "bulge": (0.0, 0.0),
                "wall": (0.03, 0.05), "saucer": 0.25},
    "tall": {"radius": (0.2, 0.3), "bottom": (0.85, 1.0), "bulge": (0.0, 0.0),
             "wall": (0.02, 0.035), "saucer": 0.15},
    "wide": {"radius": (0.55, 0.8), "bottom": (0.5, 0.65), "bulge": (0.0, 0.0),
             "wall": (0.03, 0.05), "saucer": 0.8},
    "tapered": {"radius": (0.35, 0.5), "bottom": (0.6, 0.78), "bulge": (0.0, 0.0),
                "wall": (0.03, 0.045), "saucer": 0.3},
    "barrel": {"radius": (0.3, 0.45), "bottom": (0.85, 1.0), "bulge": (0.1, 0.2),
               "wall": (0.03, 0.05), "saucer": 0.2},
}


@register("mug", PALETTE, core={"body", "foot", "handle", "inside"}, front=("handle",),
          bottom=("foot",))
def _mug(b: _Builder, rng: np.random.Generator) -> None:
    """Mugs and cups: ``classic`` (straight), ``tall`` (latte), ``wide`` (a rounded
    cappuccino cup, mostly on a saucer), ``tapered`` (wider at the rim) and ``barrel``
    (bulging); handle ``round``, ``square`` (D-shaped) or ``ear`` (a small loop near the top);
    a saucer under some.

    Height 1; rim radius 0.2–0.8, bottom radius 0.5–1 × the rim's, bulge up to 0.2, walls
    0.02–0.05; handle reach 0.12–0.4, bar radius 0.025–0.05. Colours: pale-blue glaze, a cream
    inside and rim, an orange handle, a brown unglazed foot, a sage saucer.
    """
    shape = _choice(rng, list(_SHAPES))
    f = _SHAPES[shape]
    radius, bottom_k, bulge, wall = (rng.uniform(*f[k]) for k in
                                     ("radius", "bottom", "bulge", "wall"))
    handle = _choice(rng, ["round", "square", "ear"], [0.45, 0.3, 0.25])
    saucer = rng.uniform() < f["saucer"]
    rim_h = rng.uniform(0.015, 0.08)
    floor = rng.uniform(0.05, 0.1)
    b.variant.update(shape=shape, handle=handle, saucer="yes" if saucer else "no",
                     radius=radius)

    r_bot = radius * bottom_k

    def outer(y: np.ndarray) -> np.ndarray:
        if shape == "wide":  # a rounded cup
            return r_bot + (radius - r_bot) * np.sin(np.pi / 2 * y) ** 0.7
        return r_bot + (radius - r_bot) * y + radius * bulge * np.sin(np.pi * y)

    # the body: outer wall up to the rim band, inner wall down to the floor
    top = 1.0 - rim_h
    ys = np.linspace(0.04, top, 14)
    inner_ys = np.linspace(top, floor, 10)
    body = np.r_[[[0, 0], [r_bot * 0.93, 0]], np.c_[outer(ys), ys],
                 np.c_[outer(inner_ys) - wall, inner_ys], [[0, floor]]]
    b.revolve(body, "body", sections=28)
    # the glaze inside, over the rim and in a band round its outside
    lining = 0.008
    up = np.linspace(floor, top, 10)
    down = np.linspace(1.0 + lining, floor + lining, 10)
    inside = np.r_[[[0, floor]], np.c_[outer(up) - wall * 0.5, up],
                   [[outer(np.array([top]))[0] + lining, top],
                    [outer(np.array([1.0]))[0] + lining, 1.0 + lining]],
                   np.c_[outer(down) - wall - lining, down], [[0, floor + lining]]]
    b.revolve(inside, "inside", sections=28)
    # the unglazed foot ring
    foot_h = rng.uniform(0.015, 0.05)
    b.revolve(np.array([[0, -foot_h], [r_bot * 0.8, -foot_h], [r_bot * 0.9, 0.01],
                        [0, 0.01]]), "foot", sections=24)

    # the handle on the +X side
    _handle(b, rng, handle, outer, wall)

    if saucer:
        rs = max(radius, r_bot) * rng.uniform(1.5, 2.2)
        lift = rng.uniform(0.03, 0.1)
        t = rng.uniform(0.02, 0.04)
        y0 = -foot_h - t
        dish = np.array([[0, y0], [rs * 0.4, y0], [rs * 0.45, y0 - 0.015],
                         [rs * 0.55, y0 - 0.015], [rs, y0 + lift], [rs * 0.98, y0 + lift + t],
                         [rs * 0.5, y0 + t], [0, y0 + t]])
        b.revolve(dish, "saucer", sections=28)


def _handle(b: _Builder, rng: np.random.Generator, style: str,
            outer: Callable[[np.ndarray], np.ndarray], wall: float) -> None:
    """The handle on the +X side: a loop from near the rim down the wall."""
    bar = rng.uniform(0.025, 0.05)
    if style == "ear":  # a small loop near the top
        y_top = rng.uniform(0.75, 0.88)
        y_bot = y_top - rng.uniform(0.25, 0.4)
        reach = rng.uniform(0.12, 0.2)
    else:
        y_top = rng.uniform(0.72, 0.88)
        y_bot = rng.uniform(0.12, 0.35)
        reach = rng.uniform(0.18, 0.4)
    x_top = float(outer(np.array([y_top]))[0]) - wall * 0.5
    x_bot = float(outer(np.array([y_bot]))[0]) - wall * 0.5
    _loop_handle(b, "handle", (x_top, y_top, 0), (x_bot, y_bot, 0), (1, 0, 0), reach, bar,
                 1.0 if style == "square" else rng.uniform(0.0, 0.3), count=11)
