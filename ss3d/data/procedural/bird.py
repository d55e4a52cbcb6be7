"""Birds (front +X: the beak; up +Y; body length 1)."""

from __future__ import annotations

import numpy as np

from ss3d.data.procedural.builder import _Builder, _choice
from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.procedural.primitives import Mesh, _align_z, _revolve_z, _rot, _tf
from ss3d.data.procedural.registry import register

PALETTE: dict[str, _PartStyle] = {
    "body": _PartStyle((0.08, 0.60, 0.55), "stripes"),
    "belly": _PartStyle((0.12, 0.20, 0.93)),
    "head": _PartStyle((0.36, 0.70, 0.45)),
    "beak": _PartStyle((0.12, 0.90, 0.95)),
    "wing": _PartStyle((0.60, 0.25, 0.55), "stripes"),
    "tail": _PartStyle((0.00, 0.00, 0.15), "two_tone", (0.0, 0.0, 0.95)),
    "leg": _PartStyle((0.03, 0.55, 0.80)),
}


# bird families (body length 1): ranges of the body's height and width, neck length and
# angle, head radius, beak length, tail length, width and droop (degrees, + = down), leg
# length, body pitch (degrees, + = nose up), wing span (per wing), and the chance of spread
# wings; beak style
_BIRD_FAMILIES: dict[str, dict] = {
    "songbird": {"body_h": (0.45, 0.6), "body_w": (0.38, 0.5), "neck": (0.0, 0.05),
                 "neck_angle": (40, 70), "head": (0.1, 0.14), "beak": (0.07, 0.16),
                 "tail": (0.35, 0.7), "tail_w": (0.12, 0.3), "droop": (-25, 10),
                 "legs": (0.15, 0.3), "pitch": (15, 40), "span": (0.6, 0.9), "spread": 0.3,
                 "beak_style": "cone"},
    "waterfowl": {"body_h": (0.35, 0.45), "body_w": (0.42, 0.55), "neck": (0.1, 0.7),
                  "neck_angle": (55, 85), "head": (0.08, 0.11), "beak": (0.15, 0.28),
                  "tail": (0.08, 0.2), "tail_w": (0.15, 0.3), "droop": (-30, -10),
                  "legs": (0.06, 0.14), "pitch": (-8, 8), "span": (0.8, 1.2), "spread": 0.3,
                  "beak_style": "flat"},
    "wader": {"body_h": (0.3, 0.42), "body_w": (0.3, 0.4), "neck": (0.4, 0.9),
              "neck_angle": (55, 85), "head": (0.06, 0.08), "beak": (0.3, 0.55),
              "tail": (0.1, 0.25), "tail_w": (0.1, 0.2), "droop": (0, 25),
              "legs": (0.7, 1.2), "pitch": (5, 35), "span": (0.9, 1.3), "spread": 0.2,
              "beak_style": "cone"},
    "penguin": {"body_h": (0.5, 0.62), "body_w": (0.45, 0.55), "neck": (0.0, 0.0),
                "neck_angle": (60, 80), "head": (0.1, 0.13), "beak": (0.1, 0.2),
                "tail": (0.05, 0.12), "tail_w": (0.1, 0.15), "droop": (10, 30),
                "legs": (0.03, 0.06), "pitch": (65, 85), "span": (0.35, 0.5), "spread": 1.0,
                "beak_style": "cone"},
    "raptor": {"body_h": (0.35, 0.45), "body_w": (0.3, 0.4), "neck": (0.0, 0.1),
               "neck_angle": (30, 60), "head": (0.09, 0.12), "beak": (0.08, 0.15),
               "tail": (0.3, 0.5), "tail_w": (0.3, 0.5), "droop": (-10, 15),
               "legs": (0.15, 0.3), "pitch": (-5, 30), "span": (1.0, 1.5), "spread": 0.7,
               "beak_style": "hooked"},
    "parrot": {"body_h": (0.5, 0.65), "body_w": (0.4, 0.5), "neck": (0.0, 0.03),
               "neck_angle": (60, 80), "head": (0.12, 0.17), "beak": (0.06, 0.12),
               "tail": (0.2, 0.9), "tail_w": (0.1, 0.25), "droop": (10, 40),
               "legs": (0.1, 0.2), "pitch": (45, 70), "span": (0.6, 0.9), "spread": 0.15,
               "beak_style": "hooked"},
}


@register("bird", PALETTE,
          core={"beak", "belly", "body", "head", "leg", "tail", "wing"}, front=("beak",),
          back=("tail",), bottom=("leg",))
def _bird(b: _Builder, rng: np.random.Generator) -> None:
    """Birds: ``songbird``, ``waterfowl`` (duck to swan), ``wader`` (heron, stork),
    ``penguin``, ``raptor`` and ``parrot`` (owl-like upright) families.

    Body length 1; each family has its own ranges of body height and width, neck length (0 to
    0.9, bent) and angle, head size, beak length and style (cone, flat, hooked), tail length,
    width and droop, leg length (0.03–1.2) and posture (body pitch −8–85°); wings ``folded``
    along the body or ``spread`` (gliding, up- or down-stroke; a penguin's flippers). Colours:
    brown back, cream belly, dark-green head, yellow beak, blue-grey wings, black tail,
    orange legs.
    """
    family = _choice(rng, list(_BIRD_FAMILIES))
    f = _BIRD_FAMILIES[family]
    body_h, body_w, neck_len, neck_angle, head_r, beak_len, tail_len, tail_w, droop, \
        leg_len, pitch, span = (rng.uniform(*f[k]) for k in (
            "body_h", "body_w", "neck", "neck_angle", "head", "beak", "tail", "tail_w",
            "droop", "legs", "pitch", "span"))
    wings = "spread" if rng.uniform() < f["spread"] else "folded"
    if wings == "spread" and family != "penguin":
        pitch = min(pitch, 15.0)  # flying: the body roughly level
    b.variant.update(family=family, wings=wings, pitch=pitch, neck=neck_len, tail=tail_len,
                     legs=leg_len)

    body_t = _tf(rotation=_rot("z", pitch))
    with b.frame(body_t):
        b.ellipsoid((0.5, body_h / 2, body_w / 2), (0, 0, 0), "body")
        b.ellipsoid((0.42, body_h * 0.4, body_w * 0.46), (0.02, -body_h * 0.12, 0), "belly")
        # the neck: two segments from the front of the body, bent; the head at its end
        base = np.array([0.38, body_h * 0.15, 0.0])
        bend = rng.uniform(-25, 25)
        head = base.copy()
        for angle in (neck_angle + bend, neck_angle - bend):
            a = np.radians(angle - pitch)  # the neck's angle is to the horizontal
            step = head + np.array([np.cos(a), np.sin(a), 0]) * neck_len / 2
            if neck_len > 0.04:
                b.segment(head, step, min(body_w * 0.28, head_r * 0.85), "head", 10)
            head = step
        a = np.radians(neck_angle - pitch)
        head = head + np.array([np.cos(a), np.sin(a), 0]) * head_r * 0.6
        # the head stays level whatever the posture
        with b.frame(_tf(head, _rot("z", -pitch))):
            b.ellipsoid((head_r * 1.15, head_r, head_r * 0.9), (0, 0, 0), "head")
            tilt = {"hooked": -30.0, "flat": -5.0}.get(f["beak_style"], rng.uniform(-15, 5))
            beak_dir = np.array([np.cos(np.radians(tilt)), np.sin(np.radians(tilt)), 0])
            beak_r = head_r * rng.uniform(0.3, 0.5)
            shape = np.diag([0.55, 1.5, 1.0, 1.0]) if f["beak_style"] == "flat" else np.eye(4)
            b.add(_beak(beak_r, beak_len), "beak",
                  _tf(beak_dir * head_r * 0.9, _align_z(beak_dir)) @ shape, axis=2)
        # tail: a thin fan behind the body
        with b.frame(_tf((-0.45, body_h * 0.05, 0), _rot("z", droop))):
            b.planform(np.array([[0.05, -body_w * 0.2], [0.05, body_w * 0.2],
                                 [-tail_len, tail_w / 2], [-tail_len, -tail_w / 2]]),
                       0.02, "tail")
        if wings == "folded":
            wing_len = rng.uniform(0.5, 0.8)
            for s in (-1, 1):
                b.ellipsoid((wing_len / 2, body_h * 0.3, 0.03),
                            (-0.1, body_h * 0.12, s * body_w * 0.45), "wing",
                            rotation=_rot("z", -8))
        else:
            chord = rng.uniform(0.25, 0.45) * (0.5 if family == "penguin" else 1.0)
            if family == "penguin":  # flippers held out and down
                stroke, lift = "flippers", rng.uniform(-80, -45)
            else:
                stroke = _choice(rng, ["glide", "up", "down"])
                lift = {"glide": rng.uniform(-5, 15), "up": rng.uniform(35, 65),
                        "down": rng.uniform(-45, -20)}[stroke]
            b.variant["stroke"] = stroke
            sweep = rng.uniform(-0.05, 0.3) * span
            for s in (-1, 1):
                outline = np.array([[0.15, 0], [0.15 - chord, 0],
                                    [0.1 - sweep - chord * 0.6, s * span],
                                    [0.15 - sweep, s * span]])
                b.planform(outline, 0.025, "wing",
                           _tf((0, body_h * 0.25, s * body_w * 0.3), _rot("x", -s * lift)))
    # legs from the underside of the (pitched) body: straight down, or tucked back in flight
    t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    rim = body_t[:3, :3] @ np.stack([0.5 * np.cos(t), body_h / 2 * np.sin(t), 0 * t])
    hip = rim[:, int(np.argmin(rim[1]))] * 0.85
    for s in (-1, 1):
        top = hip + [0, 0, s * body_w * 0.2]
        if wings == "spread" and family != "penguin":
            foot = top + [-leg_len * 0.8, -leg_len * 0.3, 0]
        else:
            foot = top + [0, -leg_len, 0]
        b.segment(top, foot, 0.02 + 0.01 * (family == "wader"), "leg", 6)
        b.box((0.09 + 0.1 * (family == "penguin"), 0.015, 0.05), foot + [0.03, 0, 0], "leg")


def _beak(radius: float, length: float) -> Mesh:
    """A cone along +Z from its base at z=0 to the tip at ``length``."""
    return _revolve_z(np.array([[0, 0], [radius, 0], [radius * 0.5, length * 0.5],
                                [0, length]]), 10)
