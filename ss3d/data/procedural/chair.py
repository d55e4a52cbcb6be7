"""Chairs (the seat faces +X, the back is at -X; up +Y)."""

from __future__ import annotations

import numpy as np

from ss3d.data.procedural.builder import _Builder, _choice
from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.procedural.primitives import _rot, _tf
from ss3d.data.procedural.registry import register

PALETTE: dict[str, _PartStyle] = {
    "seat": _PartStyle((0.98, 0.70, 0.62), "patches"),
    "back": _PartStyle((0.52, 0.60, 0.50), "stripes"),
    "frame": _PartStyle((0.07, 0.60, 0.28), "stripes"),
    "arm": _PartStyle((0.11, 0.40, 0.80)),
}


@register("chair", PALETTE, core={"back", "frame", "seat"}, back=("back",))
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
