"""Trash bins (front +X: the label and pedal; up +Y)."""

from __future__ import annotations

import numpy as np

from ss3d.data.procedural.builder import _Builder, _choice
from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.procedural.primitives import _rot, _tf
from ss3d.data.procedural.registry import register

PALETTE: dict[str, _PartStyle] = {
    "body": _PartStyle((0.36, 0.65, 0.45), "two_tone"),
    "lid": _PartStyle((0.00, 0.00, 0.15)),
    "rim": _PartStyle((0.00, 0.00, 0.60)),
    "label": _PartStyle((0.14, 0.85, 0.95), "stripes", (0.0, 0.0, 0.95)),
    "pedal": _PartStyle((0.58, 0.05, 0.85)),
}


@register("trash_bin", PALETTE, core={"body", "label", "rim"}, front=("label",))
def _trash_bin(b: _Builder, rng: np.random.Generator) -> None:
    """Trash bins: ``round`` or ``square`` (or oblong), straight or ``tapered``.

    Lids: ``none`` (open: a hollow bin with a rim), ``flat``, ``dome``, ``swing`` (a cap with a
    tilted grey flap at the front) or ``step`` (a flat lid raised 0–65° about a rear hinge,
    with a pedal at the front). Height 0.7–1.7 × the top width. Colours: green body, dark lid,
    grey rim, a yellow label on the front, a silver pedal.
    """
    shape = _choice(rng, ["round", "square"])
    tapered = rng.uniform() < 0.5
    lid = _choice(rng, ["none", "flat", "dome", "swing", "step"])
    radius = 0.5
    taper = rng.uniform(0.6, 0.85) if tapered else 1.0
    height = rng.uniform(0.7, 1.7)
    oblong = rng.uniform(0.6, 1.0) if shape == "square" else 1.0
    b.variant.update(shape=shape, profile="tapered" if tapered else "straight", lid=lid,
                     height=height)
    sections, phase = (4, np.pi / 4) if shape == "square" else (24, 0.0)
    circum = radius / np.cos(np.pi / sections)  # the radius to the corners
    squash = np.diag([1.0, 1.0, oblong, 1.0])  # an oblong square bin
    r_top, r_bot = circum, circum * taper
    if lid == "none":  # hollow: outer wall up, inner wall down, floor
        wall = 0.04
        profile = [[0, 0], [r_bot, 0], [r_top, height], [r_top - wall, height],
                   [r_bot - wall, 0.06], [0, 0.06]]
    else:
        profile = [[0, 0], [r_bot, 0], [r_top, height], [0, height]]
    b.revolve(np.array(profile), "body", squash, sections, phase)
    rim = np.array([[0, height - 0.03], [r_top * 1.04, height - 0.03], [r_top * 1.04, height],
                    [0, height]])
    if lid == "none":
        ring = [[0, height - 0.04], [r_top + 0.015, height - 0.04], [r_top + 0.015, height + 0.01],
                [r_top - 0.035, height + 0.01], [r_top - 0.035, height - 0.02],
                [0, height - 0.02]]
        b.revolve(np.array(ring), "rim", squash, sections, phase)
    else:
        b.revolve(rim, "rim", squash, sections, phase)
    top = height
    if lid == "flat":
        lid_h = rng.uniform(0.05, 0.12)
        b.revolve(np.array([[0, top], [r_top * 1.03, top], [r_top * 1.0, top + lid_h],
                            [0, top + lid_h]]), "lid", squash, sections, phase)
        b.box((0.06, 0.04, 0.3 * oblong), (0, top + lid_h + 0.02, 0), "lid")
    elif lid == "dome":
        dome_h = rng.uniform(0.15, 0.45)
        if shape == "round":
            b.ellipsoid((r_top * 1.02, dome_h, r_top * 1.02), (0, top, 0), "lid",
                        flat_bottom=True)
        else:  # a square dome: a hipped roof
            b.revolve(np.array([[0, top], [r_top * 1.02, top], [r_top * 0.6, top + dome_h * 0.8],
                                [0, top + dome_h]]), "lid", squash, 4, phase)
    elif lid == "swing":
        cap_h = rng.uniform(0.15, 0.35)
        b.revolve(np.array([[0, top], [r_top * 1.02, top], [r_top * 0.8, top + cap_h],
                            [0, top + cap_h]]), "lid", squash, sections, phase)
        tilt = rng.uniform(-25, 25)
        b.box((0.02, cap_h * 0.7, radius * 0.9 * oblong), (r_top * 0.85, top + cap_h * 0.5, 0),
              "rim", rotation=_rot("z", 15 + tilt))
    elif lid == "step":
        opening = rng.uniform(0, 65)
        hinge = np.array([-radius, top, 0.0])
        rot = _rot("z", opening)  # lifts the front edge (+X) about the rear hinge
        lid_h = rng.uniform(0.08, 0.12)
        centre = hinge + rot @ np.array([radius * 1.02, lid_h / 2, 0])
        disc = np.array([[0, -lid_h / 2], [r_top * 1.03, -lid_h / 2],  # a low dome
                         [r_top * 0.97, lid_h / 2], [r_top * 0.6, lid_h * 1.1],
                         [0, lid_h * 1.3]])
        b.revolve(disc, "lid", _tf(centre, rot) @ squash, sections, phase)
        b.box((0.22, 0.03, 0.3 * oblong), (r_bot * np.cos(np.pi / sections) + 0.1, 0.03, 0),
              "pedal")
    # a label on the front (+X) breaks the symmetry: tilted with the tapered wall
    apothem_top, apothem_bot = radius, radius * taper
    lean = np.degrees(np.arctan2(apothem_top - apothem_bot, height))
    y_label = height * rng.uniform(0.4, 0.65)
    x_label = apothem_bot + (apothem_top - apothem_bot) * y_label / height + 0.006
    b.box((0.02, height * 0.25, 0.55 * radius * oblong), (x_label, y_label, 0), "label",
          rotation=_rot("z", -lean), axis=1)
