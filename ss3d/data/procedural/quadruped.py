"""Four-legged animals (front +X: the head and snout; the tail at -X; up +Y: four legs down to
the ground; body length 1)."""

from __future__ import annotations

import numpy as np

from ss3d.data.procedural.builder import _Builder, _choice
from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.procedural.primitives import _rot, _tf
from ss3d.data.procedural.registry import register

PALETTE: dict[str, _PartStyle] = {
    "body": _PartStyle((0.09, 0.50, 0.75), "patches"),
    "head": _PartStyle((0.05, 0.60, 0.40)),
    "snout": _PartStyle((0.12, 0.15, 0.95)),
    "ear": _PartStyle((0.95, 0.45, 0.85)),
    "leg": _PartStyle((0.60, 0.25, 0.50)),
    "foot": _PartStyle((0.00, 0.00, 0.12)),
    "tail": _PartStyle((0.04, 0.75, 0.70), "stripes"),
    "horn": _PartStyle((0.55, 0.30, 0.85)),
    "mane": _PartStyle((0.40, 0.60, 0.50)),
}

# families (body length 1): ranges of body height and width, leg length and radius, neck
# length and angle (degrees above horizontal), head radius, snout length, head pitch (degrees,
# + = nose down), tail length and angle (degrees, + = up); ear and foot styles
_FAMILIES: dict[str, dict] = {
    "dog": {"body_h": (0.3, 0.42), "body_w": (0.24, 0.34), "legs": (0.3, 0.65),
            "leg_r": (0.035, 0.055), "neck": (0.12, 0.3), "neck_angle": (35, 60),
            "head": (0.11, 0.16), "snout": (0.1, 0.25), "pitch": (0, 20), "tail": (0.25, 0.5),
            "tail_angle": (10, 60), "ears": ("pointy", "floppy"), "foot": "paw"},
    "cat": {"body_h": (0.26, 0.34), "body_w": (0.2, 0.28), "legs": (0.28, 0.42),
            "leg_r": (0.03, 0.04), "neck": (0.04, 0.1), "neck_angle": (40, 70),
            "head": (0.13, 0.17), "snout": (0.03, 0.06), "pitch": (0, 10), "tail": (0.6, 0.95),
            "tail_angle": (20, 70), "ears": ("pointy",), "foot": "paw"},
    "horse": {"body_h": (0.38, 0.5), "body_w": (0.28, 0.36), "legs": (0.75, 1.05),
              "leg_r": (0.035, 0.05), "neck": (0.4, 0.6), "neck_angle": (45, 65),
              "head": (0.09, 0.12), "snout": (0.25, 0.38), "pitch": (35, 60),
              "tail": (0.4, 0.65), "tail_angle": (-75, -45), "ears": ("pointy",),
              "foot": "hoof"},
    "cow": {"body_h": (0.5, 0.62), "body_w": (0.38, 0.5), "legs": (0.45, 0.65),
            "leg_r": (0.05, 0.07), "neck": (0.12, 0.25), "neck_angle": (15, 35),
            "head": (0.13, 0.16), "snout": (0.14, 0.24), "pitch": (20, 45),
            "tail": (0.45, 0.65), "tail_angle": (-85, -70), "ears": ("side",), "foot": "hoof"},
    "giraffe": {"body_h": (0.45, 0.55), "body_w": (0.3, 0.36), "legs": (0.85, 1.35),
                "leg_r": (0.035, 0.045), "neck": (0.8, 1.5), "neck_angle": (45, 80),
                "head": (0.09, 0.11), "snout": (0.18, 0.26), "pitch": (20, 45),
                "tail": (0.4, 0.55), "tail_angle": (-80, -60), "ears": ("side",),
                "foot": "hoof"},
}


@register("quadruped", PALETTE, core={"body", "ear", "foot", "head", "leg", "snout", "tail"},
          front=("snout", "head"), back=("tail",), bottom=("foot", "leg"))
def _quadruped(b: _Builder, rng: np.random.Generator) -> None:
    """Four-legged animals: ``dog`` (pointy or floppy ears), ``cat`` (round head, long tail),
    ``horse`` (long legs and neck, a mane, a long head held down, a hanging tail), ``cow``
    (deep body, horns, thick legs) and ``giraffe`` (very long neck and legs, ossicones); dogs,
    horses and cows ``alert`` or ``grazing`` (the head lowered to the ground).

    Body length 1; each family has its own ranges of body height (0.26–0.62) and width, leg
    length (0.28–1.35), neck length (0.04–1.5) and angle, head size, snout length, head pitch and
    tail length and carriage; the legs stand straight, walk or stretch (a trot). Colours: tan
    body (patches), chocolate head, cream snout, pink ears, grey-blue legs, black feet, a rust
    tail, pale-blue horns, a green mane.
    """
    family = _choice(rng, list(_FAMILIES))
    f = _FAMILIES[family]
    body_h, body_w, leg_len, leg_r, neck_len, neck_angle, head_r, snout_len, pitch, \
        tail_len, tail_angle = (rng.uniform(*f[k]) for k in (
            "body_h", "body_w", "legs", "leg_r", "neck", "neck_angle", "head", "snout", "pitch",
            "tail", "tail_angle"))
    ears = _choice(rng, list(f["ears"]))
    gait = _choice(rng, ["stand", "walk", "trot"], [0.5, 0.3, 0.2])
    y = leg_len + body_h * 0.3  # the body's centre height
    pose = "grazing" if family in ("dog", "horse", "cow") and rng.uniform() < 0.3 else "alert"
    if pose == "grazing":  # the head lowered towards the ground
        drop = y + body_h * 0.15 - head_r * 2 - 0.05
        neck_angle = -np.degrees(np.arcsin(min(drop / (neck_len + head_r), 1.0)))
        neck_angle = max(neck_angle, -60.0) * rng.uniform(0.6, 1.0)
        pitch += 30
    b.variant.update(family=family, ears=ears, gait=gait, pose=pose, legs=leg_len,
                     neck=neck_len)

    b.ellipsoid((0.5, body_h / 2, body_w / 2), (0, y, 0), "body")
    b.ellipsoid((0.22, body_h * 0.55, body_w * 0.52), (0.27, y + body_h * 0.04, 0), "body")

    # legs: thigh and shin (the hind legs' hocks bent back), a paw or a hoof
    swing = {"stand": 0.0, "walk": 10.0, "trot": 18.0}[gait]
    for k, (x, hind) in enumerate(((0.33, False), (-0.33, True))):
        for s, z in enumerate((-1, 1)):
            a = np.radians(swing * (1 if (k + s) % 2 else -1))
            hip = np.array([x, y - body_h * 0.1, z * body_w * 0.3])
            foot = hip + [np.sin(a) * leg_len, -np.cos(a) * (y - body_h * 0.1), 0]
            foot[1] = 0.03
            knee = (hip + foot) / 2 + [(-0.06 if hind else 0.03) * leg_len, 0, 0]
            b.segment(hip, knee, leg_r * 1.5, "leg", 8)
            b.segment(knee, foot + [0, 0.02, 0], leg_r, "leg", 8)
            if f["foot"] == "paw":
                b.ellipsoid((leg_r * 1.8, 0.03, leg_r * 1.3), foot + [leg_r * 0.8, 0, 0], "foot",
                            subdivisions=1)
            else:
                b.cylinder(leg_r * 1.25, 0.06, foot, "foot", (0, 1, 0), 8)

    # the neck from the front of the body, the head at its end
    a = np.radians(neck_angle)
    base = np.array([0.4, y + body_h * 0.15, 0])
    head = base + np.array([np.cos(a), np.sin(a), 0]) * (neck_len + head_r * 0.5)
    neck_r = min(body_h * 0.3, max(head_r * 0.9, 0.06 + 0.05 * (family == "cow")))
    b.segment(base, head, neck_r, "body", 10)
    if family in ("horse", "giraffe"):  # a mane along the top of the neck
        normal = np.array([-np.sin(a), np.cos(a), 0]) * neck_r * 0.9
        b.segment(base + normal + (head - base) * 0.1, head + normal * 0.6, neck_r * 0.35,
                  "mane", 6)
    _head(b, rng, head, head_r, snout_len, pitch, ears, family)

    # the tail from the rump: a chain of segments bending further (up or down)
    root = np.array([-0.48, y + body_h * 0.2, 0])
    bend = rng.uniform(-25, 25) if family in ("dog", "cat") else rng.uniform(-10, 5)
    r0 = {"cat": 0.035, "dog": 0.04}.get(family, 0.025)
    n = 5
    point, angle = root, np.radians(180 - tail_angle)
    for k in range(n):
        step = np.array([np.cos(angle), np.sin(angle), 0]) * tail_len / n
        b.segment(point - step * 0.1, point + step, r0 * (1 - 0.12 * k), "tail", 8)
        point, angle = point + step, angle - np.radians(bend)
    if family in ("cow", "giraffe", "horse"):  # a tuft or a switch of hair at the end
        b.ellipsoid((0.04, 0.09 if family == "horse" else 0.05, 0.04), point, "tail",
                    subdivisions=1)


def _head(b: _Builder, rng: np.random.Generator, at: np.ndarray, r: float, snout: float,
          pitch: float, ears: str, family: str) -> None:
    """The head at ``at`` facing +X, its nose ``pitch`` degrees down: skull, snout, ears and
    horns or ossicones."""
    with b.frame(_tf(at, _rot("z", -pitch))):
        b.ellipsoid((r * 1.15, r, r * 0.9), (0, 0, 0), "head")
        # the snout: a rounded, slightly narrower block reaching forward
        sr = r * rng.uniform(0.45, 0.6)
        length = snout + sr
        b.ellipsoid((length / 2 + 0.01, sr, sr * 0.95), (r * 0.6 + length / 2 - sr * 0.6,
                                                         -r * 0.3, 0), "snout")
        for z in (-1, 1):
            if ears == "pointy":  # upright triangles
                t = np.array([[-r * 0.35, 0], [r * 0.35, 0], [0, r * rng.uniform(0.8, 1.2)]])
                tilt = _rot("x", z * 15) @ _rot("y", 90)
                b.prism(t, 0.02, "ear", _tf((-r * 0.2, r * 0.75, z * r * 0.5), tilt))
            elif ears == "floppy":  # hanging down the sides
                b.ellipsoid((r * 0.4, r * 0.8, 0.015), (-r * 0.2, -r * 0.2, z * r * 0.95), "ear",
                            rotation=_rot("x", z * 10), subdivisions=1)
            else:  # sticking out sideways
                b.ellipsoid((r * 0.3, 0.015, r * 0.6), (-r * 0.3, r * 0.3, z * r * 1.3), "ear",
                            rotation=_rot("x", z * 20), subdivisions=1)
            if family == "cow":  # horns curving out and up
                p0 = np.array([-r * 0.2, r * 0.7, z * r * 0.5])
                p1 = p0 + [0, r * 0.2, z * r * 0.8]
                b.segment(p0, p1, 0.025, "horn", 6)
                b.cylinder(0.015, r * 0.6, p1 + [0, r * 0.25, z * 0.01], "horn",
                           (0, 1, z * 0.3), 6)
            elif family == "giraffe":  # ossicones with knobs
                p0 = np.array([-r * 0.3, r * 0.6, z * r * 0.35])
                p1 = p0 + [-r * 0.2, r * 1.2, z * r * 0.1]
                b.segment(p0, p1, 0.018, "horn", 6)
                b.ellipsoid((0.03, 0.03, 0.03), p1, "horn", subdivisions=1)
