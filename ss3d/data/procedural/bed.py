"""Beds (the headboard at -X, the foot end at +X; up +Y: legs at the bottom; length 1)."""

from __future__ import annotations

import numpy as np

from ss3d.data.procedural.builder import _Builder, _choice
from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.procedural.primitives import _rot, _tf
from ss3d.data.procedural.registry import register

PALETTE: dict[str, _PartStyle] = {
    "frame": _PartStyle((0.07, 0.60, 0.45), "stripes"),
    "leg": _PartStyle((0.00, 0.00, 0.18)),
    "mattress": _PartStyle((0.00, 0.00, 0.93)),
    "blanket": _PartStyle((0.60, 0.65, 0.75), "patches", (0.6, 0.3, 0.95)),
    "pillow": _PartStyle((0.14, 0.35, 0.98)),
    "headboard": _PartStyle((0.11, 0.70, 0.75), "two_tone"),
    "canopy": _PartStyle((0.90, 0.45, 0.85), "stripes"),
}

# bed types: mattress width (× the length), and the chance of a footboard
_TYPES: dict[str, tuple[tuple[float, float], float]] = {
    "single": ((0.4, 0.58), 0.4), "double": ((0.7, 0.98), 0.45),
    "bunk": ((0.4, 0.52), 1.0), "four_poster": ((0.7, 1.0), 1.0), "crib": ((0.5, 0.62), 0.0),
}


@register("bed", PALETTE, core={"blanket", "frame", "headboard", "leg", "mattress", "pillow"},
          front=("blanket",), back=("headboard", "pillow"), bottom=("leg",))
def _bed(b: _Builder, rng: np.random.Generator) -> None:
    """Beds: ``single``, ``double`` (two pillows), ``bunk`` (two single beds on shared posts,
    a guard rail on the +Z side, a ladder on that side or on the foot end), ``four_poster``
    (tall corner posts, an open frame or a fabric canopy on top) and ``crib`` (high legs,
    barred sides); headboard ``panel``, ``slatted``, ``arched`` or ``padded``; a footboard on
    some.

    Length 1; mattress width 0.4–1, thickness 0.06–0.14; legs 0.03–0.3 tall; headboard
    0.12–0.6 above the mattress; a blanket over the foot end, 0.45–0.8 of the mattress, hanging
    down the sides. Colours: brown wooden frame, black legs, white mattress, blue quilted
    blanket, pale-yellow pillows, a mustard headboard, a pink canopy.
    """
    kind = _choice(rng, list(_TYPES), [0.2, 0.25, 0.2, 0.2, 0.15])
    width_range, foot_p = _TYPES[kind]
    width = rng.uniform(*width_range)
    head = _choice(rng, ["panel", "slatted", "arched", "padded"])
    head = "end_panels" if kind == "bunk" else "panel" if kind == "crib" else head
    footboard = rng.uniform() < foot_p
    leg_h = {"bunk": (0.06, 0.12), "crib": (0.12, 0.3)}.get(kind, (0.03, 0.16))
    leg_h = rng.uniform(*leg_h)
    rail_h = rng.uniform(0.05, 0.12)
    mat_t = rng.uniform(0.06, 0.14)
    head_h = rng.uniform(0.12, 0.6)
    post_r = rng.uniform(0.018, 0.035)
    b.variant.update(kind=kind, headboard=head, footboard="yes" if footboard else "no",
                     width=width, legs=leg_h)

    board_t = rng.uniform(0.025, 0.05)
    x0, x1 = -0.5 + board_t, 0.5 - (board_t if footboard else 0.0)
    levels = [0.0]
    if kind == "bunk":
        levels.append(rng.uniform(0.5, 0.7))
    top = 0.0
    for level, base in enumerate(levels):
        y_rail = base + leg_h + rail_h / 2
        # side and end rails, the mattress on them, a blanket over the foot end
        for z in (-1, 1):
            b.box((x1 - x0, rail_h, 0.03), (0, y_rail, z * (width / 2 + 0.015)), "frame")
        b.box((0.03, rail_h, width + 0.06), (x1 - 0.015, y_rail, 0), "frame", axis=2)
        y_mat = base + leg_h + rail_h * 0.8
        b.box((x1 - x0 - 0.01, mat_t, width), ((x0 + x1) / 2, y_mat + mat_t / 2, 0), "mattress")
        top = y_mat + mat_t
        _blanket(b, rng, x0, x1, width, top, mat_t)
        _pillows(b, rng, x0, width, top, 2 if kind in ("double", "four_poster") else 1)
        if level == 0:  # legs under the corners (under the posts of a bunk bed)
            xs = (-0.5 + board_t / 2, 0.5 - board_t / 2) if kind == "bunk" else (x0, x1)
            zl = width / 2 + (0.03 if kind == "bunk" else 0.015)
            for x in xs:
                for z in (-1, 1):
                    b.cylinder(max(post_r * 1.2, 0.022), leg_h, (x, leg_h / 2, z * zl), "leg",
                               (0, 1, 0), 8)
        if kind == "bunk" and level == 1:  # guard rail along +Z, from the head end
            g = rng.uniform(0.5, 0.7) * (x1 - x0)
            b.box((g, 0.03, 0.025), (x0 + g / 2, top + 0.1, width / 2 + 0.015), "frame")

    # the headboard at -X, between or in front of corner posts
    y_floor = leg_h
    if kind == "bunk":
        head_top = top + rng.uniform(0.1, 0.25)
        _bunk_ends(b, rng, x0, x1, width, levels, leg_h, rail_h, head_top, post_r, board_t)
    else:
        head_top = top + head_h
        _headboard(b, rng, head, -0.5 + board_t / 2, board_t, width + 0.06, y_floor, head_top)
        if kind == "crib":
            _crib_sides(b, rng, x0, x1, width, top, head_top, board_t)
        elif footboard:
            foot_top = top + rng.uniform(0.0, 0.5) * head_h + 0.02
            b.box((board_t, foot_top - y_floor, width + 0.06),
                  (0.5 - board_t / 2, (foot_top + y_floor) / 2, 0), "frame", axis=2)
    if kind == "four_poster":
        post_top = head_top + rng.uniform(0.35, 0.8)
        corners = [(x, z * (width / 2 + 0.03 + post_r)) for x in (-0.5 + post_r, 0.5 - post_r)
                   for z in (-1, 1)]
        for x, z in corners:
            b.cylinder(post_r, post_top, (x, post_top / 2, z), "frame", (0, 1, 0), 10)
        zz = width / 2 + 0.03 + post_r
        if rng.uniform() < 0.5:  # a fabric canopy
            b.variant["canopy"] = "fabric"
            b.box((1.0, 0.02, 2 * zz), (0, post_top, 0), "canopy", axis=2)
            drop = rng.uniform(0.05, 0.18)
            for z in (-1, 1):
                b.box((1.0, drop, 0.012), (0, post_top - drop / 2, z * (zz + 0.01)), "canopy")
        else:  # an open frame of rails
            b.variant["canopy"] = "rails"
            for z in (-1, 1):
                b.box((1.0, 0.03, 0.03), (0, post_top, z * zz), "frame")
            for x in (-0.5 + post_r, 0.5 - post_r):
                b.box((0.03, 0.03, 2 * zz), (x, post_top, 0), "frame", axis=2)


def _blanket(b: _Builder, rng: np.random.Generator, x0: float, x1: float, width: float,
             top: float, mat_t: float) -> None:
    """A blanket over the foot end of the mattress, hanging down its sides."""
    cover = rng.uniform(0.45, 0.8) * (x1 - x0)
    t = rng.uniform(0.012, 0.03)
    drop = mat_t * rng.uniform(0.5, 1.1)
    b.box((cover + 0.01, drop + t, width + 2 * t), (x1 - cover / 2, top + t - (drop + t) / 2, 0),
          "blanket", axis=2)
    if rng.uniform() < 0.5:  # the top edge folded back
        b.box((0.06, t * 1.5, width + 2 * t), (x1 - cover + 0.03, top + t * 1.6, 0), "blanket",
              axis=2)


def _pillows(b: _Builder, rng: np.random.Generator, x0: float, width: float, top: float,
             count: int) -> None:
    """Pillows against the headboard, side by side."""
    depth = rng.uniform(0.12, 0.2)
    span = width / count
    h = rng.uniform(0.03, 0.07)
    tilt = rng.uniform(0, 25)
    for k in range(count):
        z = -width / 2 + span * (k + 0.5)
        b.ellipsoid((depth / 2, h, span * 0.44), (x0 + depth / 2 + 0.02, top + h * 0.7, z),
                    "pillow", rotation=_rot("z", -tilt), subdivisions=2)


def _headboard(b: _Builder, rng: np.random.Generator, style: str, x: float, t: float,
               w: float, y0: float, y1: float) -> None:
    """The headboard in the plane x = ``x``, from ``y0`` up to ``y1``."""
    h = y1 - y0
    if style == "panel":
        b.box((t, h, w), (x, (y0 + y1) / 2, 0), "headboard", axis=2)
    elif style == "padded":  # a frame panel with a thick cushion in front
        b.box((t, h, w), (x, (y0 + y1) / 2, 0), "frame", axis=2)
        pad_h = h * rng.uniform(0.4, 0.7)
        b.box((t * 2.5, pad_h, w * 0.92), (x + t, y1 - pad_h / 2 - 0.02, 0), "headboard",
              axis=2)
    elif style == "arched":
        arch = rng.uniform(0.2, 0.6) * h
        a = np.linspace(0, np.pi, 11)
        outline = np.r_[[[w / 2, 0]], np.c_[w / 2 * np.cos(a), h - arch + arch * np.sin(a)],
                        [[-w / 2, 0]]]
        b.prism(outline, t, "headboard", _tf((x, y0, 0), _rot("y", 90)), axis=1)
    else:  # slatted: two posts, a top rail and vertical slats
        for z in (-1, 1):
            b.box((t * 1.3, h, t * 1.3), (x, (y0 + y1) / 2, z * (w / 2 - t * 0.65)), "frame")
        rail = rng.uniform(0.04, 0.08)
        b.box((t, rail, w), (x, y1 - rail / 2, 0), "headboard", axis=2)
        n = int(rng.integers(4, 9))
        for k in range(n):
            z = (k + 1) / (n + 1) * w - w / 2
            b.box((t * 0.6, h - rail, w / (3 * n)), (x, y0 + (h - rail) / 2, z), "headboard",
                  axis=1)


def _bunk_ends(b: _Builder, rng: np.random.Generator, x0: float, x1: float, width: float,
               levels: list[float], leg_h: float, rail_h: float, top: float, post_r: float,
               t: float) -> None:
    """A bunk bed's corner posts, end panels (the head end in the headboard's colour) and a
    ladder on the +Z side near the foot end or on the foot end."""
    zz = width / 2 + 0.03
    for x in (-0.5 + t / 2, 0.5 - t / 2):
        for z in (-1, 1):
            b.cylinder(post_r * 1.2, top - leg_h, (x, (top + leg_h) / 2, z * zz), "frame",
                       (0, 1, 0), 8)
        for base in levels:
            y = base + leg_h + rail_h * 0.8
            panel = rng.uniform(0.15, 0.25)
            part = "headboard" if x < 0 else "frame"
            b.box((t, panel, 2 * zz), (x, y + panel / 2, 0), part, axis=2)
    # the ladder, leaning out from the +Z side or from the foot end (near the +Z side)
    ladder = _choice(rng, ["side", "end"])
    b.variant["ladder"] = ladder
    y_top = levels[-1] + leg_h + rail_h + 0.08
    out = rng.uniform(0.04, 0.12)
    rungs = int(rng.integers(3, 6))
    if ladder == "side":
        centre, along, normal = np.array([x1 - rng.uniform(0.12, 0.25), 0, zz]), 0, 2
    else:
        centre, along, normal = np.array([0.5, 0, zz - rng.uniform(0.12, 0.2)]), 2, 0

    def at(u: float, w: float, y: float) -> np.ndarray:
        p = centre + [0, y, 0]
        p[along] += u
        p[normal] += w
        return p

    for u in (-0.08, 0.08):
        b.segment(at(u, out, 0), at(u, 0.02, y_top), 0.012, "frame", 6)
    for k in range(1, rungs + 1):
        s = k / (rungs + 1)
        w = out + (0.02 - out) * s
        b.segment(at(-0.08, w, s * y_top), at(0.08, w, s * y_top), 0.01, "frame", 6)


def _crib_sides(b: _Builder, rng: np.random.Generator, x0: float, x1: float, width: float,
                top: float, rail_top: float, t: float) -> None:
    """A crib's barred sides (±Z) and foot end, up to the headboard's height."""
    gap = rng.uniform(0.045, 0.075)
    bar = rng.uniform(0.008, 0.014)
    zz = width / 2 + 0.015
    ends = ((x0, zz, x1, zz), (x0, -zz, x1, -zz), (0.5 - t / 2, -zz, 0.5 - t / 2, zz))
    for xa, za, xb, zb in ends:
        b.segment((xa, rail_top, za), (xb, rail_top, zb), 0.018, "frame", 6)
        n = max(int(np.hypot(xb - xa, zb - za) / gap), 2)
        for k in range(1, n):
            x, z = xa + (xb - xa) * k / n, za + (zb - za) * k / n
            b.segment((x, top - 0.05, z), (x, rail_top, z), bar, "frame", 6)
    for z in (-1, 1):  # the foot end's corner posts
        b.box((t * 1.3, rail_top, t * 1.3), (0.5 - t / 2, rail_top / 2, z * zz), "frame")
