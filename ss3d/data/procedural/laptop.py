"""Laptops (the screen faces +X; up +Y; depth 1)."""

from __future__ import annotations

import numpy as np

from ss3d.data.procedural.builder import _Builder
from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.procedural.registry import register

PALETTE: dict[str, _PartStyle] = {
    "shell": _PartStyle((0.58, 0.05, 0.78), "two_tone"),
    "screen": _PartStyle((0.62, 0.75, 0.40), "stripes", (0.58, 0.55, 0.55)),
    "keyboard": _PartStyle((0.00, 0.00, 0.12), "patches", (0.0, 0.0, 0.35)),
    "touchpad": _PartStyle((0.58, 0.08, 0.52)),
    "logo": _PartStyle((0.50, 0.60, 0.95)),
}


@register("laptop", PALETTE,
          core={"keyboard", "logo", "screen", "shell", "touchpad"}, front=("touchpad",))
def _laptop(b: _Builder, rng: np.random.Generator) -> None:
    """Laptops, open at 70–180° (pose ``narrow``, ``upright``, ``wide`` or ``flat``: from a
    narrow V to lying flat), the screen facing +X.

    Depth 1; width 1.15–1.9 (aspect ratio), base 0.02–0.07 thick, lid 35–80 % of that; the
    keyboard, touchpad and screen inset on the inside, a logo on the lid's back. Colours:
    silver shell, dark blue screen, black keyboard, grey touchpad, cyan logo on the back.
    """
    depth = 1.0
    width = rng.uniform(1.15, 1.9)
    thick = rng.uniform(0.02, 0.07)
    lid_t = thick * rng.uniform(0.35, 0.8)
    angle = rng.uniform(70, 180)  # between base and lid
    pose = ("narrow" if angle < 95 else "upright" if angle < 135 else "wide" if angle < 165
            else "flat")
    b.variant.update(pose=pose, lid_angle=angle, width=width, thickness=thick)
    b.box((depth, thick, width), (0, thick / 2, 0), "shell", axis=2)
    b.box((depth * 0.42, 0.006, width * 0.86), (-depth * 0.14, thick, 0), "keyboard", axis=2)
    b.box((depth * 0.22, 0.006, width * 0.28), (depth * 0.3, thick, 0), "touchpad", axis=2)
    # the lid turns about the hinge (at -X on the top of the base); a = angle to the base
    a = np.radians(angle)
    along = np.array([np.cos(a), np.sin(a), 0.0])  # from the hinge to the lid's far edge
    normal = np.array([np.sin(a), -np.cos(a), 0.0])  # the screen side
    rot = np.stack([normal, along, [0, 0, 1]], axis=1)
    hinge = np.array([-depth / 2, thick, 0.0])
    lid_c = hinge + along * depth / 2 - normal * lid_t / 2
    b.box((lid_t, depth, width), lid_c, "shell", rotation=rot, axis=2)
    b.box((0.006, depth * 0.86, width * 0.9), hinge + along * depth * 0.52, "screen",
          rotation=rot, axis=2)
    b.ellipsoid((0.004, depth * 0.08, depth * 0.08), lid_c - normal * lid_t / 2, "logo",
                rotation=rot, subdivisions=1)
