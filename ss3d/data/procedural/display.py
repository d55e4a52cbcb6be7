"""Displays: monitors and TVs (the screen faces +X, the back cover is at -X; up +Y, the stand
or foot at the bottom; width 1)."""

from __future__ import annotations

import numpy as np

from ss3d.data.procedural.builder import _Builder, _choice, _weighted
from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.procedural.primitives import _rot, _rounded_rect, _tf
from ss3d.data.procedural.registry import register

PALETTE: dict[str, _PartStyle] = {
    "bezel": _PartStyle((0.00, 0.00, 0.12)),
    "screen": _PartStyle((0.60, 0.75, 0.55), "stripes", (0.55, 0.45, 0.70)),
    "back_cover": _PartStyle((0.08, 0.18, 0.62), "two_tone"),
    "stand": _PartStyle((0.58, 0.06, 0.85)),
    "foot": _PartStyle((0.95, 0.55, 0.45)),
    "led": _PartStyle((0.33, 0.85, 0.90)),
}


def _rear(b: _Builder) -> float:
    """The rearmost x of the parts added so far."""
    return float(min(v[:, 0].min() for v, _, _ in b.parts))


@register("display", PALETTE, core={"back_cover", "bezel", "foot", "screen"},
          front=("screen",), back=("back_cover",), bottom=("foot",))
def _display(b: _Builder, rng: np.random.Generator) -> None:
    """Displays: ``monitor`` (flat panel on a neck, foot ``rect``, ``disc`` or ``v``; some
    in portrait), ``tv`` (wide flat panel on two end ``feet`` or a central ``pedestal``),
    ``crt`` (deep tapering tube housing on a swivel plinth) and ``all_in_one`` (panel with a
    chin on an inclined plate stand).

    Width 1 (along Z); aspect 1.25–2.4 (CRT 1.2–1.4), panel depth 0.015–0.06 (CRT housing
    0.45–0.95), bezel 0.01–0.09, the panel raised 0.02–0.4 of its short side above the desk.
    Colours: black bezel, dark-blue screen at the front, warm-grey back cover, silver stand,
    burgundy foot, a green power LED on some.
    """
    style = _weighted(rng, {"monitor": 1.2, "tv": 1.0, "crt": 0.7, "all_in_one": 0.8})
    b.variant["style"] = style
    if style == "crt":
        _crt(b, rng)
        return
    aspect = rng.uniform(1.25, 2.4) if style == "monitor" else rng.uniform(1.55, 2.1)
    width, height = 1.0, 1.0 / aspect
    if style == "monitor" and rng.uniform() < 0.15:  # a monitor turned to portrait
        b.variant["orientation"] = "portrait"
        width, height = height, width
    depth = rng.uniform(0.015, 0.045) if style != "all_in_one" else rng.uniform(0.02, 0.06)
    bez = rng.uniform(0.01, 0.05) * max(width, height)
    chin = rng.uniform(0.08, 0.2) * height if style == "all_in_one" else 0.0
    cover_d = rng.uniform(0.015, 0.06)
    cover_w, cover_h = width * rng.uniform(0.45, 0.85), height * rng.uniform(0.45, 0.85)
    short = min(width, height)
    if style == "monitor":
        y0 = rng.uniform(0.12, 0.4) * short
    elif style == "tv":
        y0 = rng.uniform(0.02, 0.12) * short
    else:
        y0 = rng.uniform(0.1, 0.25) * short
    yc = y0 + (height + chin) / 2
    b.variant.update(aspect=aspect, depth=depth, elevation=y0)

    # the panel: bezel, screen on the +X face, back cover on the -X face
    b.box((depth, height + chin, width), (0, yc, 0), "bezel", axis=2)
    sy = y0 + chin + height / 2
    b.box((0.006, height - 2 * bez, width - 2 * bez), (depth / 2 + 0.002, sy, 0), "screen",
          axis=2)
    cover_y = y0 + chin + height * rng.uniform(0.4, 0.55)
    if rng.uniform() < 0.5:  # a box, else a tapered hump
        b.box((cover_d, cover_h, cover_w), (-depth / 2 - cover_d / 2, cover_y, 0),
              "back_cover", axis=2)
    else:
        b.ellipsoid((cover_h / 2, cover_d, cover_w / 2), (-depth / 2, cover_y, 0),
                    "back_cover", _rot("z", 90), flat_bottom=True)
    if rng.uniform() < 0.6:  # a power LED on the bezel's bottom edge
        b.box((0.006, 0.012, 0.02), (depth / 2 + 0.003, y0 + chin / 2 + bez / 2 + 0.003,
                                      width / 2 - bez - 0.03), "led")
    back_x = -depth / 2 - cover_d  # the back of the cover, where a stand attaches

    if style == "tv" and rng.uniform() < 0.55:  # two feet near the ends
        b.variant["foot"] = "feet"
        spread = rng.uniform(0.12, 0.3) * height + depth
        inset = rng.uniform(0.05, 0.3) * width
        blade = rng.uniform() < 0.5
        for s in (-1, 1):
            z = s * (width / 2 - inset)
            if blade:  # a flat blade per end, wider at the floor
                outline = np.array([[-spread / 2, 0], [spread / 2, 0], [depth / 2, y0 + 0.04],
                                    [-depth / 2, y0 + 0.04]])
                b.prism(outline, 0.015, "foot", _tf((0, 0, z)))
            else:  # a splayed V of two rods
                for x in (-1, 1):
                    b.segment([0, y0 + 0.03, z], [x * spread / 2, 0.008, z + s * 0.03], 0.008,
                              "foot", 6)
        return
    if style == "all_in_one":  # an inclined plate from the back down to a floor plate
        b.variant["foot"] = "plate"
        tilt = np.radians(rng.uniform(8, 22))
        top_y = cover_y
        run = (top_y - 0.01) * np.tan(tilt)
        plate_w = width * rng.uniform(0.2, 0.4)
        length = (top_y - 0.01) / np.cos(tilt)
        b.box((0.012, length, plate_w), (back_x - run / 2 - 0.006, (top_y + 0.01) / 2, 0),
              "stand", rotation=_rot("z", -np.degrees(tilt)), axis=1)
        rear = min(_rear(b), back_x - run - 0.02)
        # the plate as far ahead of the panel as the stand is behind it
        front = 2 * rng.uniform(-depth / 2, depth / 4) - rear
        b.box((front - rear, 0.012, plate_w), ((front + rear) / 2, 0.006, 0), "foot")
        return

    # monitor, or a TV on a pedestal: a neck from the back cover down to a foot
    foot = "rect" if style == "tv" else _choice(rng, ["rect", "disc", "v"])
    b.variant["foot"] = foot
    neck_t = rng.uniform(0.015, 0.04)
    neck_w = rng.uniform(0.03, 0.12)
    neck_x = back_x - neck_t / 2
    foot_t = rng.uniform(0.01, 0.03)
    if rng.uniform() < 0.5:
        b.box((neck_t, cover_y - foot_t, neck_w), (neck_x, (cover_y + foot_t) / 2, 0), "stand",
              axis=1)
    else:
        b.cylinder(neck_t * 0.8, cover_y - foot_t, (neck_x, (cover_y + foot_t) / 2, 0),
                   "stand", (0, 1, 0), 10)
    if foot == "v":  # two bars splayed forward from the neck
        spread = rng.uniform(0.15, 0.35) * max(width, height)
        # the tips as far ahead of the panel as the neck is behind it
        rear = min(_rear(b), neck_x - 0.02 - foot_t)
        tip = 2 * rng.uniform(-depth / 2, 0) - rear - foot_t
        for s in (-1, 1):
            b.segment([neck_x - 0.02, foot_t / 2, 0], [tip, foot_t / 2, s * spread / 2],
                      foot_t * 0.9, "foot", 6)
        return
    reach = rng.uniform(0.1, 0.2) + depth + cover_d  # foot depth, along X
    foot_x = max(neck_x + reach / 2 - neck_t, -depth / 2)
    foot_x = min(foot_x, depth / 4)
    reach = max(reach, 2 * (foot_x - neck_x) + 2 * neck_t)
    foot_w = rng.uniform(0.2, 0.45) * width
    if foot == "disc":
        b.ellipsoid((reach / 2, foot_t, foot_w / 2), (foot_x, 0, 0), "foot", flat_bottom=True)
    else:
        b.planform(_rounded_rect(reach, foot_w, rng.uniform(0, 0.5) * reach), foot_t, "foot",
                   _tf((foot_x, foot_t / 2, 0)))


def _crt(b: _Builder, rng: np.random.Generator) -> None:
    """A cathode-ray-tube display: a deep housing tapering to the back, on a plinth."""
    aspect = rng.uniform(1.2, 1.4)
    width, height = 1.0, 1.0 / aspect
    depth = rng.uniform(0.06, 0.14)  # the front frame
    tube = rng.uniform(0.4, 0.8)  # the tapering back housing
    taper = rng.uniform(0.35, 0.7)
    bez = rng.uniform(0.04, 0.09)
    y0 = rng.uniform(0.02, 0.1)
    foot = _choice(rng, ["plinth", "swivel"])
    b.variant.update(foot=foot, aspect=aspect, depth=depth + tube, elevation=y0)
    yc = y0 + height / 2
    b.box((depth, height, width), (0, yc, 0), "bezel", axis=2)
    b.box((0.008, height - 2 * bez, width - 2 * bez), (depth / 2 + 0.003, yc, 0), "screen",
          axis=2)
    # a square frustum about +Y (four sections), turned to run towards -X and scaled
    profile = np.array([[0, 0], [1, 0], [taper, 1], [0, 1]]) * [np.sqrt(2) / 2, 1]
    scale = np.diag([height * 0.92, tube, width * 0.92])
    turn = _rot("z", 90)  # +Y → -X
    b.revolve(profile, "back_cover", _tf((-depth / 2, yc - height * 0.04, 0), turn @ scale),
              sections=4, phase=np.pi / 4)
    if rng.uniform() < 0.7:
        b.box((0.008, 0.015, 0.03), (depth / 2 + 0.004, y0 + bez / 2, width / 2 - bez - 0.04),
              "led")
    cx = -(depth + tube) / 2 + depth / 2
    fw = width * rng.uniform(0.4, 0.8)
    fd = (depth + tube) * rng.uniform(0.4, 0.7)
    if foot == "plinth":
        b.box((fd, y0, fw), (cx, y0 / 2, 0), "foot")
    else:  # a disc under a short neck
        b.ellipsoid((fd / 2, y0 * 0.5, fw / 2), (cx, 0, 0), "foot", flat_bottom=True)
        b.cylinder(fw * 0.15, y0 * 0.6, (cx, y0 * 0.7, 0), "stand", (0, 1, 0), 12)
