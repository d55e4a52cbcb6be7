"""Sofas (the sitting side faces +X, the backrest is at -X; up +Y; metres, along Z the
length)."""

from __future__ import annotations

import numpy as np

from ss3d.data.procedural.builder import _Builder, _choice
from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.procedural.primitives import _rot, _tf
from ss3d.data.procedural.registry import register

PALETTE: dict[str, _PartStyle] = {
    "frame": _PartStyle((0.60, 0.50, 0.42)),
    "seat_cushion": _PartStyle((0.57, 0.22, 0.85), "patches"),
    "back_cushion": _PartStyle((0.10, 0.38, 0.78), "patches"),
    "arm": _PartStyle((0.78, 0.35, 0.55)),
    "leg": _PartStyle((0.07, 0.60, 0.22)),
    "pillow": _PartStyle((0.00, 0.70, 0.85), "stripes"),
}


@register("sofa", PALETTE, core={"back_cushion", "frame", "leg", "seat_cushion"},
          back=("back_cushion",), top=("back_cushion",), bottom=("leg",))
def _sofa(b: _Builder, rng: np.random.Generator) -> None:
    """Sofas: shape ``straight`` (two to four seats) or ``sectional`` (a chaise reaching
    forward at one end); arms ``box``, ``rolled`` (a bolster on top), ``track`` (thin, low),
    ``tuxedo`` (as high as the back) or ``none``; base ``legs`` (thin, round or square,
    sometimes splayed), ``plinth`` (a recessed block) or ``bun`` (round feet); one loose seat
    and back cushion per seat or one long one; throw pillows on some.

    In metres (the normalisation removes the scale): seats 0.45–0.75 wide, depth 0.7–1.15,
    seat height 0.36–0.5 with cushions 0.08–0.18 thick, back 0.25–0.55 above the seat, chaise
    0.45–1.2 further forward, legs 0.04–0.25 high. Colours: slate-blue frame, pale-blue seat
    cushions, beige back cushions, mauve arms, dark-brown legs, red striped pillows.
    """
    shape = _choice(rng, ["straight", "sectional"], [0.65, 0.35])
    arms = _choice(rng, ["box", "rolled", "track", "tuxedo", "none"], [0.3, 0.2, 0.2, 0.15, 0.15])
    base = _choice(rng, ["legs", "plinth", "bun"], [0.55, 0.25, 0.2])
    seats = int(rng.integers(2, 5))
    seat_w = rng.uniform(0.45, 0.75)
    depth = rng.uniform(0.7, 1.15)
    leg_h = {"legs": rng.uniform(0.04, 0.25), "plinth": rng.uniform(0.03, 0.08),
             "bun": rng.uniform(0.03, 0.1)}[base]
    seat_y = rng.uniform(0.36, 0.5)  # top of the seat cushions
    cush_t = rng.uniform(0.08, 0.18)
    back_h = rng.uniform(0.25, 0.55)
    back_t = rng.uniform(0.1, 0.2)
    arm_w = {"box": rng.uniform(0.12, 0.25), "rolled": rng.uniform(0.14, 0.24),
             "track": rng.uniform(0.05, 0.1), "tuxedo": rng.uniform(0.1, 0.2), "none": 0.0}[arms]
    arm_top = {"track": seat_y + 0.06, "tuxedo": seat_y + back_h}.get(
        arms, seat_y + rng.uniform(0.08, 0.25))
    inner = seats * seat_w
    length = inner + 2 * arm_w
    chaise = rng.uniform(0.45, 1.2) if shape == "sectional" else 0.0
    side = 1 if rng.uniform() < 0.5 else -1  # the chaise's end
    b.variant.update(shape=shape, arms=arms, base=base, seats=str(seats), depth=depth,
                     seat_height=seat_y, back_height=back_h)
    base_top = seat_y - cush_t
    body_h = base_top - leg_h

    # the upholstered body: seat deck and back frame
    b.box((depth, body_h, inner), (0, leg_h + body_h / 2, 0), "frame", axis=2)
    back_top = seat_y + back_h
    b.box((back_t, back_top - leg_h, inner), (-depth / 2 + back_t / 2, (back_top + leg_h) / 2, 0),
          "frame", axis=2)
    zc = side * (inner / 2 - seat_w / 2)  # the chaise seat's centre along Z
    if chaise:
        b.box((chaise, body_h, seat_w), (depth / 2 + chaise / 2, leg_h + body_h / 2, zc), "frame")

    # cushions: one per seat, or one long one
    long_cushion = rng.uniform() < 0.3
    widths = [inner] if long_cushion else [seat_w] * seats
    rounding = rng.uniform(0.0, 0.04)
    sd = depth - back_t
    z0 = -inner / 2
    back_tilt = rng.uniform(5, 18)
    bc_t = rng.uniform(0.1, 0.2)
    for w in widths:
        zc_k = z0 + w / 2
        z0 += w
        reach = chaise if (chaise and not long_cushion and abs(zc_k - zc) < 1e-9) else 0.0
        b.box((sd + reach + 0.02, cush_t, w - 0.01),
              (-depth / 2 + back_t + (sd + reach + 0.02) / 2, base_top + cush_t / 2, zc_k),
              "seat_cushion", axis=2)
        with b.frame(_tf((-depth / 2 + back_t, seat_y, zc_k), _rot("z", back_tilt))):
            b.box((bc_t, back_h * rng.uniform(0.8, 0.95) - rounding, w - 0.02),
                  (bc_t / 2, back_h * 0.45, 0), "back_cushion", axis=2)
    if chaise and long_cushion:
        b.box((chaise, cush_t, seat_w - 0.01),
              (depth / 2 + 0.02 + chaise / 2, base_top + cush_t / 2, zc), "seat_cushion")

    # arms at both ends (along the whole side, the chaise's end too)
    if arms != "none":
        for sz in (-1, 1):
            run = depth + (chaise if (chaise and sz == side) else 0.0)
            xc = -depth / 2 + run / 2
            z = sz * (inner / 2 + arm_w / 2)
            if arms == "rolled":
                top_y = arm_top - arm_w / 2
                b.box((run, top_y - leg_h, arm_w), (xc, (top_y + leg_h) / 2, z), "arm")
                b.cylinder(arm_w * 0.58, run + 0.02, (xc + 0.01, top_y, z), "arm", (1, 0, 0), 12)
            else:
                b.box((run, arm_top - leg_h, arm_w), (xc, (arm_top + leg_h) / 2, z), "arm")

    # base below the body
    x0, x1 = -depth / 2, depth / 2 + chaise
    z_lo, z_hi = -length / 2, length / 2
    if base == "plinth":
        rec = rng.uniform(0.03, 0.08)
        b.box((depth - 2 * rec, leg_h, length - 2 * rec), (0, leg_h / 2, 0), "leg", axis=2)
        if chaise:
            b.box((chaise, leg_h, seat_w - 2 * rec), ((depth + chaise) / 2 - rec, leg_h / 2, zc),
                  "leg")
    else:
        r = rng.uniform(0.012, 0.025) if base == "legs" else rng.uniform(0.035, 0.06)
        splay = rng.uniform(0.0, 0.03) if base == "legs" else 0.0
        sections = 4 if rng.uniform() < 0.4 else 8
        xs = [x0 + r * 2, depth / 2 - r * 2] + ([x1 - r * 2] if chaise else [])
        zs = [z_lo + r * 2, z_hi - r * 2]
        if seats >= 3:
            zs.append(0.0)
        feet = [(x, z) for x in xs[:2] for z in zs]
        if chaise:
            feet += [(xs[2], zc + s * (seat_w / 2 - r * 2)) for s in (-1, 1)]
        for x, z in feet:
            if base == "legs":
                b.segment((x + np.sign(x) * splay, 0, z + np.sign(z) * splay), (x, leg_h + 0.01, z),
                          r, "leg", sections)
            else:
                b.ellipsoid((r, leg_h / 2 + 0.005, r), (x, leg_h / 2, z), "leg", subdivisions=1)

    # throw pillows against the back cushions, at the ends
    if rng.uniform() < 0.45:
        ps = min(rng.uniform(0.3, 0.45), back_h + 0.05)
        for sz in (-1, 1):
            z = sz * (inner / 2 - ps / 2 - 0.05)
            with b.frame(_tf((-depth / 2 + back_t + bc_t + 0.03, seat_y + ps / 2 - 0.03, z),
                             _rot("z", back_tilt + 5))):
                b.ellipsoid((0.06, ps / 2, ps / 2), (0, 0, 0), "pillow", subdivisions=1)
