"""Bowls (front +X: a decoration on the outer wall; up +Y: the open top, the foot below;
rim radius 1)."""

from __future__ import annotations

import numpy as np

from ss3d.data.procedural.bottle import _wrapped_patch
from ss3d.data.procedural.builder import _Builder, _choice
from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.procedural.primitives import _tf
from ss3d.data.procedural.registry import register

PALETTE: dict[str, _PartStyle] = {
    "body": _PartStyle((0.03, 0.60, 0.72)),
    "inside": _PartStyle((0.11, 0.10, 0.96)),
    "foot": _PartStyle((0.07, 0.50, 0.32)),
    "decoration": _PartStyle((0.62, 0.75, 0.75), "stripes", (0.0, 0.0, 0.95)),
}


# bowl shapes (rim radius 1): height, bottom radius, roundness (1: conical walls, 3: round),
# flare of the rim
_SHAPES: dict[str, dict[str, tuple[float, float]]] = {
    "shallow": {"height": (0.15, 0.35), "bottom": (0.3, 0.55), "round": (1.5, 3.0),
                "flare": (0.0, 0.08)},
    "deep": {"height": (0.75, 1.3), "bottom": (0.25, 0.5), "round": (1.6, 3.0),
             "flare": (0.0, 0.05)},
    "footed": {"height": (0.35, 0.7), "bottom": (0.15, 0.3), "round": (1.5, 2.5),
               "flare": (0.0, 0.1)},
    "flat": {"height": (0.35, 0.8), "bottom": (0.5, 0.75), "round": (1.0, 1.3),
             "flare": (0.0, 0.0)},
    "flared": {"height": (0.45, 0.75), "bottom": (0.25, 0.4), "round": (1.0, 1.4),
               "flare": (0.12, 0.3)},
}


@register("bowl", PALETTE, core={"body", "decoration", "foot", "inside"},
          front=("decoration",), bottom=("foot",))
def _bowl(b: _Builder, rng: np.random.Generator) -> None:
    """Bowls: ``shallow`` (soup plate), ``deep`` (cereal, rice, near-hemispherical),
    ``footed`` (on a stem and a base), ``flat`` (flat-bottomed, straight walls, on a thin base)
    and ``flared`` (a ramen bowl: straight walls, the rim turned out); a foot ring or a disc
    foot under the others; the decoration a ``logo`` or a wide ``band`` on the +X side.

    Rim radius 1; height 0.2–1, bottom radius 0.15–0.75, walls 0.03–0.07, stems 0.15–0.5.
    Colours: terracotta outside, a white glaze inside and over the rim, a dark-brown foot,
    a blue decoration.
    """
    shape = _choice(rng, list(_SHAPES))
    f = _SHAPES[shape]
    height, r_bot, roundness, flare = (rng.uniform(*f[k]) for k in
                                       ("height", "bottom", "round", "flare"))
    wall = rng.uniform(0.03, 0.07)
    deco = _choice(rng, ["logo", "band"])
    lugs = shape != "footed" and rng.uniform() < 0.3
    b.variant.update(shape=shape, decoration=deco, lugs="yes" if lugs else "no", height=height)

    # the outer wall (radius, y) from the bottom edge up to the rim
    s = np.linspace(0, 1, 12)
    r = r_bot + (1 - flare - r_bot) * (1 - (1 - s) ** roundness) + flare * s ** 5
    outer = np.c_[r, height * s]
    tangent = np.gradient(outer, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    inward = np.c_[-tangent[:, 1], tangent[:, 0]]  # towards the inside of the bowl

    def offset(d: float) -> np.ndarray:
        return outer + d * inward

    inner = offset(wall)
    floor = max(inner[0, 1], wall)
    b.revolve(np.r_[[[0, 0]], outer, inner[::-1], [[0, floor]]], "body", sections=28)
    # the glaze: inside the wall, over the rim and a band down the outside
    lining = 0.01
    band = int(rng.integers(1, 4))
    rim_up = lining * tangent[-1]
    out = offset(-lining)[-band - 1:]
    inside = np.r_[[[0, floor - wall * 0.5]], offset(wall * 0.5)[:-band], out,
                   [out[-1] + rim_up, inner[-1] + inward[-1] * lining + rim_up],
                   offset(wall + lining)[::-1], [[0, floor + lining]]]
    b.revolve(inside, "inside", sections=28)

    # the foot
    if shape == "footed":
        stem_h = rng.uniform(0.2, 0.7)
        base_r = rng.uniform(0.4, 0.75)
        stem_r = r_bot * rng.uniform(0.35, 0.7)
        foot = [[0, -stem_h], [base_r, -stem_h], [base_r * 0.95, -stem_h + 0.04],
                [stem_r * 1.3, -stem_h + 0.08], [stem_r, -stem_h * 0.5],
                [r_bot * 0.9, 0.02], [0, 0.02]]
    elif shape == "flat":
        foot = [[0, -0.02], [r_bot * 0.98, -0.02], [r_bot, 0.01], [0, 0.01]]
    else:
        foot_h = rng.uniform(0.04, 0.12)
        foot_r = r_bot * rng.uniform(0.7, 0.95)
        foot = [[0, -foot_h], [foot_r, -foot_h], [foot_r * 1.05, 0.02], [0, 0.02]]
    b.revolve(np.array(foot), "foot", sections=28)

    if lugs:  # two flat lug handles on the sides (±Z), below the rim
        y = height * rng.uniform(0.75, 0.92)
        reach, half_w = rng.uniform(0.2, 0.4), rng.uniform(0.2, 0.35)
        r_at = float(np.interp(y, outer[:, 1], outer[:, 0]))
        for z in (-1, 1):
            lug = np.array([[-half_w, 0], [half_w, 0], [half_w * 0.7, reach],
                            [-half_w * 0.7, reach]])
            b.planform(lug[:, [0, 1]] * [1, z] + [0, z * (r_at - wall)], wall * 0.8, "body",
                       _tf((0, y, 0)))

    # the decoration on the +X side of the outer wall
    if deco == "logo":
        y0, y1 = height * rng.uniform(0.3, 0.5), height * rng.uniform(0.65, 0.85)
        half = rng.uniform(15, 30)
    else:
        y0, y1 = height * rng.uniform(0.5, 0.7), height * rng.uniform(0.78, 0.88)
        half = rng.uniform(50, 80)

    def radius_at(y: np.ndarray) -> np.ndarray:
        return np.interp(y, outer[:, 1], outer[:, 0])

    _wrapped_patch(b, "decoration", radius_at, y0, y1, np.radians(half), 0.012, rows=6,
                   cols=12)
