"""Tables (a long side, with the drawer, faces +X; the top is up, +Y; length 1 along Z)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ss3d.data.procedural.builder import _Builder, _choice
from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.procedural.primitives import _align_z, _rot, _tf
from ss3d.data.procedural.registry import register

PALETTE: dict[str, _PartStyle] = {
    "top": _PartStyle((0.09, 0.45, 0.85), "stripes"),
    "leg": _PartStyle((0.05, 0.55, 0.30)),
    "apron": _PartStyle((0.02, 0.65, 0.58)),
    "drawer": _PartStyle((0.55, 0.45, 0.60), "two_tone"),
    "knob": _PartStyle((0.14, 0.80, 0.95)),
}


def _taper(b: _Builder, p0: Sequence[float], p1: Sequence[float], r0: float, r1: float,
           part: str, sections: int) -> None:
    """A tapered round (or square, ``sections=4``) leg from ``p0`` (radius ``r0``) to ``p1``."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    d = p1 - p0
    h = float(np.linalg.norm(d))
    profile = np.array([[0, 0], [r0, 0], [r1, h], [0, h]])
    rot = _align_z(d) @ _rot("x", 90)  # the profile's +Y onto the leg's axis
    b.revolve(profile, part, _tf(p0, rot), sections, np.pi / 4 if sections == 4 else 0.0)


def _outline(shape: str, depth: float, length: float, corner: float) -> np.ndarray:
    """The top's outline in (x, z): ``rectangle``, ``rounded`` corners or ``round`` (ellipse)."""
    if shape == "round":
        a = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        return np.c_[depth / 2 * np.cos(a), length / 2 * np.sin(a)]
    if shape == "rectangle":
        corner = 1e-3
    pts = []
    for k, (sx, sz) in enumerate(((1, 1), (-1, 1), (-1, -1), (1, -1))):
        c = np.array([sx * (depth / 2 - corner), sz * (length / 2 - corner)])
        a = np.linspace(0, np.pi / 2, 5) + k * np.pi / 2
        pts.append(c + corner * np.c_[np.cos(a), np.sin(a)])
    return np.concatenate(pts)


@register("table", PALETTE, core={"drawer", "knob", "leg", "top"}, front=("drawer", "knob"),
          top=("top",), bottom=("leg",))
def _table(b: _Builder, rng: np.random.Generator) -> None:
    """Tables: base ``four_legs`` (straight or tapered, square or round, sometimes splayed,
    with an apron and sometimes low stretchers), ``trestle`` (two end frames on feet and a
    stretcher), ``pedestal`` (a turned column on a disc or a four-footed cross) or ``sawhorse``
    (crossed legs at each end); top ``rectangle``, ``rounded`` or ``round`` (a circle or an
    ellipse); a shallow drawer under the top on the +X side.

    Length 1 (along Z); depth 0.35–1 of it (round tops 0.6–1), height 0.25–1 (coffee to bar
    table), top 0.02–0.06 thick with 0–0.08 overhang; legs 0.012–0.03 thick. Colours: light
    oak top, dark walnut legs, red-brown apron, blue-grey drawer with a brass knob.
    """
    base = _choice(rng, ["four_legs", "trestle", "pedestal", "sawhorse"], [0.4, 0.2, 0.25, 0.15])
    shape = _choice(rng, ["rectangle", "rounded", "round"],
                    [0.25, 0.2, 0.55] if base == "pedestal" else [0.45, 0.35, 0.2])
    length = 1.0
    depth = rng.uniform(0.6, 1.0) if shape == "round" else rng.uniform(0.35, 0.8)
    height = rng.uniform(0.25, 1.0)
    thick = rng.uniform(0.02, 0.06)
    overhang = rng.uniform(0.0, 0.08)
    leg_r = rng.uniform(0.012, 0.03)
    b.variant.update(base=base, top=shape, depth=depth, height=height)
    y_top = height - thick / 2
    under = height - thick  # the underside of the top
    b.planform(_outline(shape, depth, length, rng.uniform(0.03, 0.12) * depth), thick, "top",
               _tf((0, y_top, 0)))
    # the footprint the base stands in (inside the top; a round top's inscribed rectangle)
    inset = 0.72 if shape == "round" else 1.0
    fx = max(depth * inset / 2 - overhang - leg_r, 0.1 * depth)
    fz = max(length * inset / 2 - overhang - leg_r, 0.2)
    apron_h = rng.uniform(0.05, 0.12) * min(1.0, height / 0.6)

    if base == "four_legs":
        sections = 4 if rng.uniform() < 0.5 else 8
        tapered = rng.uniform() < 0.5
        splay = rng.uniform(0.0, 0.06) if rng.uniform() < 0.3 else 0.0
        b.variant["legs"] = ("tapered" if tapered else "straight") + ("_square" if sections == 4
                                                                      else "_round")
        for sx in (-1, 1):
            for sz in (-1, 1):
                top_p = (sx * fx, under + 0.005, sz * fz)
                foot = (sx * (fx + splay), 0.0, sz * (fz + splay))
                _taper(b, foot, top_p, leg_r * (0.55 if tapered else 1.0), leg_r, "leg",
                       sections)
        # apron: rails between the legs just below the top
        ay = under - apron_h / 2
        for sx in (-1, 1):
            b.box((0.015, apron_h, 2 * fz), (sx * fx, ay, 0), "apron", axis=2)
        for sz in (-1, 1):
            b.box((2 * fx, apron_h, 0.015), (0, ay, sz * fz), "apron")
        if rng.uniform() < 0.35 and height > 0.35:  # low stretchers along the short sides
            sy = height * rng.uniform(0.12, 0.3)
            for sz in (-1, 1):
                b.segment((-fx, sy, sz * fz), (fx, sy, sz * fz), leg_r * 0.6, "leg", 6)
    elif base == "trestle":
        post_w = rng.uniform(0.06, 0.16)
        foot_h = rng.uniform(0.03, 0.06)
        reach = depth * inset / 2 * rng.uniform(0.75, 0.95)
        for sz in (-1, 1):
            z = sz * fz * rng.uniform(0.8, 0.95)
            b.box((2 * reach, foot_h, 0.05), (0, foot_h / 2, z), "leg")
            b.box((post_w, under - foot_h, 0.035), (0, (under + foot_h) / 2, z), "leg", axis=1)
            b.box((2 * reach * 0.9, apron_h, 0.045), (0, under - apron_h / 2, z), "apron")
            zs = z
        sy = under * rng.uniform(0.3, 0.6)
        b.box((0.04, 0.05, 2 * abs(zs)), (0, sy, 0), "apron", axis=2)
    elif base == "pedestal":
        col_r = rng.uniform(0.035, 0.08)
        bulge = col_r * rng.uniform(1.0, 1.8)
        prof = np.array([[0, 0.04], [col_r, 0.04], [bulge, under * 0.3], [col_r * 0.8, under * 0.6],
                         [col_r, under - 0.01], [col_r * 1.6, under], [0, under]])
        b.revolve(prof, "leg", sections=16)
        reach = min(fx, fz) * rng.uniform(0.8, 1.3)
        if rng.uniform() < 0.5:
            b.variant["foot"] = "disc"
            b.revolve(np.array([[0, 0], [reach, 0], [reach * 0.95, 0.03], [col_r, 0.06],
                                [0, 0.06]]), "leg", sections=24)
        else:
            b.variant["foot"] = "cross"
            for k in range(4):
                a = np.pi / 4 + k * np.pi / 2
                tip = np.array([reach * np.cos(a), 0.015, reach * np.sin(a)])
                b.segment((0, 0.08, 0), tip, 0.022, "leg", 6)
        b.cylinder(col_r * 1.4, apron_h, (0, under - apron_h / 2, 0), "apron", (0, 1, 0), 12)
    else:  # sawhorse: an X of two legs at each end, a stretcher between the crossings
        spread = depth * inset / 2 * rng.uniform(0.6, 0.95)
        for sz in (-1, 1):
            z = sz * fz
            for sx in (-1, 1):
                b.segment((sx * spread, leg_r, z), (-sx * spread, under - 0.03, z), leg_r * 1.2,
                          "leg", 6)
            b.box((2 * spread, 0.03, 0.05), (0, under - 0.015, z), "apron")
        b.segment((0, under / 2, -fz), (0, under / 2, fz), leg_r, "apron", 6)

    # the drawer: a shallow box under the top, its front on the +X edge of the footprint
    dw = rng.uniform(0.2, 0.4) * length
    dh = max(apron_h * 0.85, 0.04)
    dd = fx * rng.uniform(0.5, 0.9)
    front_x = fx + 0.01
    b.box((dd, dh, dw), (front_x - dd / 2, under - dh / 2, 0), "drawer", axis=2)
    b.ellipsoid((0.012, min(0.012, dh / 3), 0.012), (front_x + 0.008, under - dh / 2, 0), "knob",
                subdivisions=1)
