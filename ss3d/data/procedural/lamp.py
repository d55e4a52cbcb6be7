"""Lamps: table, desk and floor lamps (front +X: the side the arm or the shade's opening leans
towards, where the switch is; the cord leaves the base at -X; up +Y, the base at the bottom)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ss3d.data.procedural.builder import _Builder, _choice, _weighted
from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.procedural.primitives import _align_z, _rot, _tf
from ss3d.data.procedural.registry import register

PALETTE: dict[str, _PartStyle] = {
    "base": _PartStyle((0.40, 0.60, 0.40)),
    "stem": _PartStyle((0.12, 0.45, 0.80), "two_tone"),
    "shade": _PartStyle((0.02, 0.70, 0.75), "stripes"),
    "bulb": _PartStyle((0.15, 0.25, 1.00)),
    "joint": _PartStyle((0.00, 0.00, 0.12)),
    "cord": _PartStyle((0.00, 0.00, 0.45)),
    "switch": _PartStyle((0.58, 0.75, 0.80)),
}


def _shade(b: _Builder, top: Sequence[float], direction: Sequence[float], r_top: float,
           r_bottom: float, length: float, bulb: bool = True, domed: bool = False) -> None:
    """A hollow shade (closed at the top, open at the rim) hanging from ``top``, its opening
    along ``direction``; a bulb inside."""
    t = max(0.006, 0.04 * r_bottom)
    if domed:  # a bell: the outline bows out
        a = np.linspace(0, np.pi / 2, 6)
        outer = np.c_[r_top + (r_bottom - r_top) * np.sin(a), -length * (1 - np.cos(a))]
    else:
        outer = np.array([[r_top, 0.0], [r_bottom, -length]])
    inner = (outer - [t, 0])[::-1]
    inner[:, 1] = np.minimum(inner[:, 1], -t)
    profile = np.r_[[[0, 0]], outer, inner, [[0, -t]]]
    profile[:, 0] = np.maximum(profile[:, 0], 1e-3)
    profile[0, 0] = profile[-1, 0] = 0
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    rot = _align_z(-d) @ _rot("x", 90)  # local -Y (the opening) → direction
    b.revolve(profile, "shade", _tf(top, rot), sections=18)
    if bulb:
        r = min(r_bottom, length) * 0.35
        b.ellipsoid((r, r * 1.3, r), np.asarray(top) + d * (length * 0.45), "bulb",
                    _align_z(d) @ _rot("x", 90), subdivisions=1)


def _base(b: _Builder, rng: np.random.Generator, radius: float, height: float,
          x: float = 0.0) -> float:
    """A round or square base centred at ``(x, 0)``; returns its rear x."""
    if rng.uniform() < 0.6:
        b.revolve(np.array([[0, 0], [radius, 0], [radius * 0.92, height],
                            [radius * 0.3, height * 1.3], [0, height * 1.3]]), "base",
                  _tf((x, 0, 0)), sections=20)
        return x - radius
    side = radius * 1.6
    b.box((side, height, side), (x, height / 2, 0), "base")
    return x - side / 2


def _cord(b: _Builder, rng: np.random.Generator, rear: float, scale: float) -> None:
    """The power cord: out of the base at the back, lying on the floor towards -X."""
    r = 0.006 * scale
    run = rng.uniform(0.15, 0.35) * scale
    bend = rng.uniform(-0.5, 0.5) * run
    b.segment([rear + r, r, 0], [rear - run * 0.6, r, bend * 0.4], r, "cord", 6)
    b.segment([rear - run * 0.6, r, bend * 0.4], [rear - run, r, bend], r, "cord", 6)


@register("lamp", PALETTE, core={"base", "cord", "shade", "stem", "switch"},
          front=("switch",), back=("cord",), bottom=("base",))
def _lamp(b: _Builder, rng: np.random.Generator) -> None:
    """Lamps: ``table`` (a vase, column or stacked-ball body under a drum or empire shade),
    ``banker`` (a stem at the back, a tilted half-cylinder shade reaching forward, a pull
    chain), ``desk_arm`` (two jointed twin-rod arms, a cone or bell shade aimed forward and
    down), ``floor_arc`` (a tall pole bending over to +X, a bell shade hanging from it) and
    ``floor`` (a straight pole on a disc or a tripod, with a drum shade, an up-lighter bowl
    or a reading head leaning forward).

    Heights 0.25–2.1 (a desk lamp's arms 0.25–0.5 each, an arc's reach 0.6–1.4), bases
    0.08–0.25 in radius, shades 0.07–0.35 in radius. Colours: dark-green base, brass stem and arms,
    terracotta shade, pale-yellow bulb, black joints and finials, grey cord at the back,
    blue switch at the front.
    """
    style = _weighted(rng, {"table": 1.0, "banker": 0.6, "desk_arm": 1.0, "floor_arc": 0.7,
                            "floor": 0.9})
    b.variant["style"] = style
    {"table": _table, "banker": _banker, "desk_arm": _desk_arm, "floor_arc": _floor_arc,
     "floor": _floor}[style](b, rng)


def _table(b: _Builder, rng: np.random.Generator) -> None:
    body = _choice(rng, ["vase", "column", "balls"])
    height = rng.uniform(0.35, 0.75)  # to the shade's bottom
    base_r = rng.uniform(0.08, 0.16)
    base_h = rng.uniform(0.015, 0.04)
    b.variant.update(body=body, height=height)
    rear = _base(b, rng, base_r, base_h)
    top = height * rng.uniform(0.55, 0.85)  # the body's top
    if body == "vase":
        w = base_r * rng.uniform(0.6, 1.3)
        ys = np.linspace(0, 1, 8)
        r = w * (0.35 + 0.65 * np.sin(np.pi * (0.15 + 0.8 * ys)) ** rng.uniform(0.5, 2))
        profile = np.r_[[[0, 0]], np.c_[r, base_h + ys * (top - base_h)], [[0, top]]]
        b.revolve(profile, "stem", sections=16)
    elif body == "column":
        b.cylinder(base_r * rng.uniform(0.1, 0.3), top - base_h, (0, (top + base_h) / 2, 0),
                   "stem", (0, 1, 0), 12)
    else:
        n = int(rng.integers(2, 5))
        rr = (top - base_h) / (2 * n)
        for k in range(n):
            b.ellipsoid((rr * 1.1, rr, rr * 1.1), (0, base_h + rr * (2 * k + 1), 0), "stem",
                        subdivisions=1)
    b.segment([0, top - 0.01, 0], [0, height + 0.05, 0], 0.008, "stem", 6)  # the harp rod
    r_bot = rng.uniform(0.12, 0.3)
    if body == "vase":  # the shade wider than the vase
        r_bot = max(r_bot, 1.25 * w)
    r_top = r_bot * rng.uniform(0.55, 1.0)
    length = r_bot * rng.uniform(0.7, 1.4)
    _shade(b, (0, height + length, 0), (0, -1, 0), r_top, r_bot, length)
    b.ellipsoid((0.012,) * 3, (0, height + length + 0.012, 0), "joint", subdivisions=1)
    b.box((0.02, base_h * 0.6, 0.03), (-rear, base_h * 0.6, 0), "switch")
    _cord(b, rng, rear, 1.0)


def _banker(b: _Builder, rng: np.random.Generator) -> None:
    stem_h = rng.uniform(0.25, 0.5)
    reach = rng.uniform(0.1, 0.2)
    length = rng.uniform(0.25, 0.45)  # the shade along Z
    radius = rng.uniform(0.06, 0.1)
    tilt = rng.uniform(10, 25)
    b.variant.update(height=stem_h, shade_length=length)
    rear = _base(b, rng, rng.uniform(0.08, 0.14), rng.uniform(0.02, 0.04))
    stem_x = -reach * 0.3
    b.segment([stem_x, 0.02, 0], [stem_x, stem_h, 0], 0.01, "stem", 8)
    b.segment([stem_x, stem_h, 0], [reach, stem_h, 0], 0.008, "stem", 6)
    b.ellipsoid((0.012,) * 3, (stem_x, stem_h, 0), "joint", subdivisions=1)
    # a half-cylinder shell along Z, opening downwards, its front edge tipped down
    a = np.linspace(0, np.pi, 10)
    t = 0.006
    outline = np.r_[np.c_[radius * np.cos(a), radius * np.sin(a)],
                    np.c_[(radius - t) * np.cos(a[::-1]), (radius - t) * np.sin(a[::-1])]]
    centre = np.array([reach, stem_h - radius * 0.6, 0])
    b.prism(outline, length, "shade", _tf(centre, _rot("z", -tilt)))
    b.ellipsoid((radius * 0.4, radius * 0.4, length * 0.3), centre, "bulb", subdivisions=1)
    chain_x = centre[0] + radius * np.cos(np.radians(tilt))
    chain_top = centre[1] - radius * np.sin(np.radians(tilt))
    drop = rng.uniform(0.04, 0.1)
    b.segment([chain_x, chain_top, length * 0.3], [chain_x, chain_top - drop, length * 0.3],
              0.003, "switch", 4)
    b.ellipsoid((0.01,) * 3, (chain_x, chain_top - drop, length * 0.3), "switch",
                subdivisions=1)
    _cord(b, rng, min(rear, stem_x), 1.0)


def _desk_arm(b: _Builder, rng: np.random.Generator) -> None:
    lower, upper = rng.uniform(0.25, 0.5), rng.uniform(0.25, 0.5)
    a1 = np.radians(rng.uniform(-25, 30))  # lower arm from vertical, + = forward
    a2 = np.radians(rng.uniform(-30, 40))  # upper arm from horizontal, + = up
    aim = np.radians(rng.uniform(20, 70))  # shade axis from straight down, towards +X
    bell = rng.uniform() < 0.4
    b.variant.update(shade="bell" if bell else "cone", lower_arm=lower, upper_arm=upper)
    base_h = rng.uniform(0.02, 0.05)
    rear = _base(b, rng, rng.uniform(0.08, 0.14), base_h)
    p0 = np.array([0, base_h + 0.02, 0])
    p1 = p0 + lower * np.array([np.sin(a1), np.cos(a1), 0])
    p2 = p1 + upper * np.array([np.cos(a2), np.sin(a2), 0])
    gap = rng.uniform(0.008, 0.02)
    for pa, pb in ((p0, p1), (p1, p2)):
        for s in (-1, 1):
            b.segment(pa + [0, 0, s * gap], pb + [0, 0, s * gap], 0.006, "stem", 6)
    for p in (p0, p1, p2):
        b.cylinder(0.018, 2 * gap + 0.02, p, "joint", (0, 0, 1), 10)
    d = np.array([np.sin(aim), -np.cos(aim), 0])
    r_bot = rng.uniform(0.07, 0.14)
    _shade(b, p2 + d * 0.02, d, r_bot * rng.uniform(0.2, 0.45), r_bot,
           r_bot * rng.uniform(0.9, 1.6), domed=bell)
    up = np.array([np.cos(aim), np.sin(aim), 0])  # the shade's top side
    b.box((0.025, 0.015, 0.02), p2 + d * 0.05 + up * 0.03, "switch",
          _rot("z", np.degrees(aim)))
    _cord(b, rng, rear, 1.0)


def _floor_arc(b: _Builder, rng: np.random.Generator) -> None:
    height = rng.uniform(1.4, 2.1)
    reach = rng.uniform(0.6, 1.4)
    b.variant.update(height=height, reach=reach)
    base_r = rng.uniform(0.15, 0.25)
    rear = _base(b, rng, base_r, rng.uniform(0.03, 0.07))
    start = np.array([0, rng.uniform(0.3, 0.8) * height, 0])  # the arc leaves the pole
    tip = np.array([reach, height * rng.uniform(0.6, 0.85), 0])
    ctrl = np.array([0, height * 1.05, 0])
    b.segment([0, 0.03, 0], start, 0.015, "stem", 8)
    t = np.linspace(0, 1, 9)[:, None]
    pts = (1 - t) ** 2 * start + 2 * t * (1 - t) * ctrl + t ** 2 * tip
    for pa, pb in zip(pts[:-1], pts[1:]):
        b.segment(pa, pb, 0.01, "stem", 6)
    b.ellipsoid((0.02,) * 3, start, "joint", subdivisions=1)
    r_bot = rng.uniform(0.15, 0.3)
    length = r_bot * rng.uniform(0.5, 0.9)
    _shade(b, tip - [0, 0.01, 0], (0, -1, 0), r_bot * 0.2, r_bot, length, domed=True)
    b.box((0.04, 0.02, 0.03), tip + [0.015, 0.01, 0], "switch")
    _cord(b, rng, rear, 1.5)


def _floor(b: _Builder, rng: np.random.Generator) -> None:
    height = rng.uniform(1.2, 1.9)
    head = _choice(rng, ["drum", "uplight", "reading"])
    stand = _choice(rng, ["disc", "tripod"])
    b.variant.update(head=head, stand=stand, height=height)
    if stand == "tripod":  # three thin legs, one pointing back
        spread = rng.uniform(0.2, 0.4)
        knee = height * rng.uniform(0.25, 0.45)
        for k in range(3):
            a = np.pi + 2 * np.pi * k / 3
            b.segment([0, knee, 0], [spread * np.cos(a), 0.01, spread * np.sin(a)], 0.012,
                      "base", 6)
        rear = -spread
        b.segment([0, knee, 0], [0, height, 0], 0.013, "stem", 8)
        b.ellipsoid((0.025,) * 3, (0, knee, 0), "joint", subdivisions=1)
    else:
        rear = _base(b, rng, rng.uniform(0.13, 0.22), rng.uniform(0.02, 0.05))
        b.segment([0, 0.02, 0], [0, height, 0], 0.013, "stem", 8)
    if head == "reading":  # a short arm leaning forward, a small cone aimed down-forward
        lean = np.radians(rng.uniform(25, 60))
        arm = rng.uniform(0.15, 0.35)
        p = np.array([0, height, 0]) + arm * np.array([np.sin(lean), np.cos(lean), 0])
        b.segment([0, height, 0], p, 0.009, "stem", 6)
        b.ellipsoid((0.02,) * 3, (0, height, 0), "joint", subdivisions=1)
        aim = np.radians(rng.uniform(15, 50))
        d = np.array([np.sin(aim), -np.cos(aim), 0])
        r_bot = rng.uniform(0.07, 0.12)
        _shade(b, p, d, r_bot * 0.35, r_bot, r_bot * 1.4)
        b.box((0.025, 0.015, 0.02), p + [0.02, 0.02, 0], "switch")
    else:
        r_bot = rng.uniform(0.15, 0.35)
        length = r_bot * rng.uniform(0.6, 1.1)
        if head == "drum":
            _shade(b, (0, height + length * 0.8, 0), (0, -1, 0), r_bot * rng.uniform(0.6, 1.0),
                   r_bot, length)
        else:  # an up-lighter bowl opening upwards
            _shade(b, (0, height, 0), (0, 1, 0), r_bot * 0.15, r_bot, length * 0.6,
                   bulb=False, domed=True)
        b.box((0.02, 0.05, 0.025), (0.018, height * rng.uniform(0.4, 0.6), 0), "switch")
    _cord(b, rng, rear, 1.5)
