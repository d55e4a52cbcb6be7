"""Benches (the sitting side faces +X, the backrest is at -X; up +Y; length 1 along Z)."""

from __future__ import annotations

import numpy as np

from ss3d.data.procedural.builder import _Builder, _choice
from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.procedural.primitives import _rot, _tf
from ss3d.data.procedural.registry import register

PALETTE: dict[str, _PartStyle] = {
    "seat": _PartStyle((0.08, 0.55, 0.78), "stripes"),
    "backrest": _PartStyle((0.33, 0.55, 0.48), "stripes"),
    "leg": _PartStyle((0.00, 0.00, 0.18)),
    "arm": _PartStyle((0.60, 0.45, 0.85)),
}


@register("bench", PALETTE, core={"leg", "seat"}, back=("backrest",), bottom=("leg",))
def _bench(b: _Builder, rng: np.random.Generator) -> None:
    """Benches: base ``four_legs`` (four or six thin legs, a stretcher or not), ``slab_ends``
    (a solid end panel at each end, arched underneath or not), ``park_frame`` (cast end frames
    with splayed front and back legs) or ``plinth`` (two blocks or one long block); seat
    ``slats`` or ``plank``; backrest ``slatted`` (rails on posts), ``panel`` or ``none``
    (``park_frame`` always has one), tilted 0–20° back; armrests on some.

    Length 1 (along Z); depth 0.2–0.55, seat height 0.22–0.65, backrest 0.15–0.4 high, legs
    0.012–0.025 thick. Colours: warm wooden seat, green backrest, near-black legs and frames,
    light blue armrests.
    """
    base = _choice(rng, ["four_legs", "slab_ends", "park_frame", "plinth"], [0.3, 0.25, 0.25, 0.2])
    back = _choice(rng, ["slatted", "panel", "none"], [0.45, 0.35, 0.2])
    if base == "park_frame" and back == "none":
        back = "slatted"
    seat_kind = _choice(rng, ["slats", "plank"])
    arms = rng.uniform() < 0.35
    length = 1.0
    depth = rng.uniform(0.2, 0.55)
    seat_y = rng.uniform(0.22, 0.45 if base == "plinth" else 0.65)
    seat_t = rng.uniform(0.025, 0.07)
    leg_r = rng.uniform(0.012, 0.025)
    b.variant.update(base=base, back=back, seat=seat_kind, arms="yes" if arms else "no",
                     depth=depth, seat_height=seat_y)
    under = seat_y - seat_t / 2
    top = seat_y + seat_t / 2

    # seat
    if seat_kind == "slats":
        n = int(rng.integers(3, 7))
        gap = depth * rng.uniform(0.04, 0.1)
        w = (depth - gap * (n - 1)) / n
        for k in range(n):
            x = -depth / 2 + w / 2 + k * (w + gap)
            b.box((w, seat_t, length), (x, seat_y, 0), "seat", axis=2)
    else:
        b.box((depth, seat_t, length), (0, seat_y, 0), "seat", axis=2)

    # base
    end_z = length / 2 - rng.uniform(0.04, 0.15)
    if base == "four_legs":
        sections = 4 if rng.uniform() < 0.5 else 8
        zs = [-end_z, end_z] + ([0.0] if rng.uniform() < 0.4 else [])
        splay = rng.uniform(0.0, 0.05)
        lx = depth / 2 - leg_r * 2
        for z in zs:
            for sx in (-1, 1):
                b.segment((sx * (lx + splay), 0, z), (sx * lx, under + 0.005, z), leg_r, "leg",
                          sections)
            b.box((2 * lx, leg_r * 2, leg_r * 2), (0, under - leg_r, z), "seat")  # a rail
        if rng.uniform() < 0.5:
            sy = seat_y * rng.uniform(0.15, 0.35)
            b.segment((0, sy, -end_z), (0, sy, end_z), leg_r * 0.8, "leg", 6)
            for z in (-end_z, end_z):
                b.segment((-lx - splay * 0.7, sy, z), (lx + splay * 0.7, sy, z), leg_r * 0.7,
                          "leg", 6)
    elif base == "slab_ends":
        panel_t = rng.uniform(0.03, 0.07)
        pd = depth * rng.uniform(0.7, 1.0)
        if rng.uniform() < 0.5:  # an arch cut out underneath
            b.variant["ends"] = "arched"
            a = np.linspace(0, np.pi, 9)
            arch_h = under * rng.uniform(0.3, 0.6)
            arch = np.c_[pd * 0.32 * np.cos(a), arch_h * np.sin(a)]
            outline = np.r_[[[-pd / 2, 0]], arch[::-1], [[pd / 2, 0], [pd / 2, under],
                                                         [-pd / 2, under]]]
        else:
            b.variant["ends"] = "solid"
            outline = np.array([[-pd / 2, 0], [pd / 2, 0], [pd / 2, under], [-pd / 2, under]])
        for sz in (-1, 1):
            b.prism(outline, panel_t, "leg", _tf((0, 0, sz * (end_z + 0.02))))
    elif base == "park_frame":
        for z in (-end_z, end_z):
            front = (depth / 2 + rng.uniform(0.0, 0.05), 0, z)
            back_foot = (-depth / 2 - rng.uniform(0.03, 0.08), 0, z)
            b.segment(front, (depth / 2 - 0.02, under, z), leg_r * 1.3, "leg", 6)
            b.segment(back_foot, (-depth / 2 + 0.02, under, z), leg_r * 1.3, "leg", 6)
            b.box((depth, 0.03, 0.03), (0, under - 0.015, z), "leg")
            b.segment(front, back_foot, leg_r, "leg", 6)
    else:  # plinth
        ph = under
        if rng.uniform() < 0.5:
            b.variant["plinths"] = "two"
            pw = rng.uniform(0.1, 0.25)
            for sz in (-1, 1):
                b.box((depth * rng.uniform(0.55, 0.9), ph, pw), (0, ph / 2, sz * (end_z - pw / 2)),
                      "leg", axis=1)
        else:
            b.variant["plinths"] = "one"
            b.box((depth * rng.uniform(0.4, 0.8), ph, length * rng.uniform(0.5, 0.85)),
                  (0, ph / 2, 0), "leg", axis=2)

    # backrest at -X, tilted back about the seat's back edge
    if back != "none":
        tilt = rng.uniform(0, 20)
        back_h = rng.uniform(0.15, 0.4)
        back_t = rng.uniform(0.02, 0.045)
        bl = length * rng.uniform(0.9, 1.0)
        gap = rng.uniform(0.0, 0.06)
        pivot = (-depth / 2 + back_t / 2, top, 0.0)
        with b.frame(_tf(pivot, _rot("z", tilt))):
            if back == "slatted":
                for z in (-end_z, end_z):
                    b.box((back_t, back_h + gap, 0.04), (-back_t, (back_h + gap) / 2, z),
                          "backrest", axis=1)
                n = int(rng.integers(2, 5))
                rail = (back_h * 0.85) / n
                for k in range(n):
                    y = gap + back_h - rail / 2 - k * back_h / n
                    b.box((back_t, rail * 0.75, bl), (0, y, 0), "backrest", axis=2)
            else:
                b.box((back_t, back_h, bl), (0, gap + back_h / 2, 0), "backrest", axis=2)
                if gap > 0.0:
                    for z in (-end_z * 0.8, end_z * 0.8):
                        b.box((back_t * 0.8, gap + 0.01, 0.04), (0, gap / 2, z), "backrest",
                              axis=1)
    if arms:
        arm_h = rng.uniform(0.12, 0.25)
        for sz in (-1, 1):
            z = sz * (length / 2 - 0.025)
            b.box((depth * 0.9, 0.03, 0.05), (0, top + arm_h, z), "arm")
            b.segment((depth * 0.35, top - 0.01, z), (depth * 0.35, top + arm_h, z), 0.018,
                      "arm", 6)
