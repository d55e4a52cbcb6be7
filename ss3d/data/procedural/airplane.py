"""Airplanes (front +X: the nose; up +Y; fuselage length 1)."""

from __future__ import annotations

import numpy as np

from ss3d.data.procedural.builder import _Builder, _choice, _weighted
from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.procedural.primitives import _revolve, _rot, _tf
from ss3d.data.procedural.registry import register

PALETTE: dict[str, _PartStyle] = {
    "fuselage": _PartStyle((0.60, 0.03, 0.95), "two_tone", (0.62, 0.75, 0.65)),
    "nose": _PartStyle((0.00, 0.85, 0.85)),
    "cockpit": _PartStyle((0.60, 0.75, 0.35)),
    "wing": _PartStyle((0.60, 0.06, 0.62), "stripes"),
    "tail": _PartStyle((0.62, 0.80, 0.75)),
    "engine": _PartStyle((0.60, 0.05, 0.32), "two_tone", (0.0, 0.0, 0.8)),
    "gear": _PartStyle((0.00, 0.00, 0.10)),
}


# airplane families: ranges of the fuselage radius, nose and tail-cone length (fractions of
# the fuselage length), span, sweep (degrees), root chord, taper, dihedral, wing position
# (root-chord centre along X), fin height; weighted choices of the wing mount, tail type,
# engines and landing gear
_AIRPLANE_FAMILIES: dict[str, dict] = {
    "airliner": {"radius": (0.04, 0.075), "nose": (0.06, 0.11), "tail_cone": (0.2, 0.3),
                 "span": (0.78, 1.12), "sweep": (24, 38), "root": (0.16, 0.25),
                 "taper": (0.22, 0.4), "dihedral": (3, 8), "wing_x": (-0.1, 0.06),
                 "fin": (0.1, 0.26), "mount": {"low": 1},
                 "tail": {"conventional": 0.7, "t_tail": 0.3},
                 "engines": {"wing_2": 0.6, "wing_4": 0.4},
                 "gear": {"none": 0.45, "tricycle": 0.55}},
    "bizjet": {"radius": (0.05, 0.075), "nose": (0.1, 0.16), "tail_cone": (0.22, 0.32),
               "span": (0.8, 1.15), "sweep": (12, 32), "root": (0.14, 0.22), "taper": (0.3, 0.5),
               "dihedral": (2, 6), "wing_x": (-0.16, -0.04), "fin": (0.1, 0.24),
               "mount": {"low": 1}, "tail": {"t_tail": 0.8, "conventional": 0.2},
               "engines": {"tail_2": 1}, "gear": {"none": 0.45, "tricycle": 0.55}},
    "cargo": {"radius": (0.07, 0.12), "nose": (0.06, 0.1), "tail_cone": (0.25, 0.35),
              "span": (0.85, 1.45), "sweep": (0, 8), "root": (0.1, 0.16), "taper": (0.45, 0.8),
              "dihedral": (-4, 2), "wing_x": (-0.04, 0.12), "fin": (0.12, 0.3),
              "mount": {"high": 0.8, "parasol": 0.2}, "tail": {"t_tail": 0.5, "conventional": 0.5},
              "engines": {"wing_2": 0.5, "wing_4": 0.5},
              "gear": {"none": 0.35, "tricycle": 0.35, "taildragger": 0.1, "floats": 0.2}},
    "light": {"radius": (0.05, 0.09), "nose": (0.06, 0.1), "tail_cone": (0.35, 0.5),
              "span": (1.15, 1.65), "sweep": (0, 4), "root": (0.13, 0.2), "taper": (0.6, 1),
              "dihedral": (1, 6), "wing_x": (0.06, 0.24), "fin": (0.09, 0.22),
              "mount": {"high": 0.4, "low": 0.4, "parasol": 0.2},
              "tail": {"conventional": 0.6, "v_tail": 0.2, "t_tail": 0.2},
              "engines": {"propeller": 1},
              "gear": {"tricycle": 0.35, "taildragger": 0.35, "floats": 0.3}},
    "glider": {"radius": (0.035, 0.05), "nose": (0.1, 0.16), "tail_cone": (0.4, 0.55),
               "span": (2, 3), "sweep": (0, 3), "root": (0.07, 0.11), "taper": (0.35, 0.6),
               "dihedral": (2, 6), "wing_x": (0.05, 0.2), "fin": (0.1, 0.2),
               "mount": {"mid": 0.5, "high": 0.5}, "tail": {"t_tail": 0.7, "v_tail": 0.3},
               "engines": {"none": 1}, "gear": {"none": 1}},
    "biplane": {"radius": (0.05, 0.075), "nose": (0.05, 0.09), "tail_cone": (0.35, 0.5),
                "span": (0.9, 1.4), "sweep": (0, 5), "root": (0.14, 0.22), "taper": (0.8, 1),
                "dihedral": (0, 4), "wing_x": (0.12, 0.26), "fin": (0.08, 0.14),
                "mount": {"low": 1}, "tail": {"conventional": 1}, "engines": {"propeller": 1},
                "gear": {"taildragger": 0.8, "none": 0.2}},
    "twin_boom": {"radius": (0.06, 0.09), "nose": (0.06, 0.1), "tail_cone": (0.08, 0.14),
                  "span": (1, 1.5), "sweep": (0, 5), "root": (0.12, 0.18), "taper": (0.6, 0.9),
                  "dihedral": (0, 3), "wing_x": (0.02, 0.15), "fin": (0.08, 0.16),
                  "mount": {"high": 1}, "tail": {"twin_fin": 1},
                  "engines": {"wing_2": 0.5, "propeller": 0.5},
                  "gear": {"tricycle": 0.6, "none": 0.2, "floats": 0.2}},
    "fighter": {"radius": (0.05, 0.075), "nose": (0.15, 0.25), "tail_cone": (0.06, 0.12),
                "span": (0.4, 0.75), "sweep": (40, 62), "root": (0.3, 0.5), "taper": (0.05, 0.3),
                "dihedral": (-5, 0), "wing_x": (-0.26, -0.1), "fin": (0.1, 0.24),
                "mount": {"mid": 1},
                "tail": {"twin_fin": 0.45, "conventional": 0.3, "tailless": 0.25},
                "engines": {"none": 1}, "gear": {"none": 0.5, "tricycle": 0.5}},
}


@register("airplane", PALETTE,
          core={"cockpit", "fuselage", "nose", "tail", "wing"}, front=("nose",), back=("tail",))
def _airplane(b: _Builder, rng: np.random.Generator) -> None:
    """Airplanes: ``airliner``, ``bizjet``, ``cargo`` (high wing, props), ``light`` (nose
    propeller), ``glider`` (pod and boom), ``biplane``, ``twin_boom`` and ``fighter`` (flat
    fuselage, intakes) families.

    Fuselage length 1; each family has its own ranges of fuselage radius (3.5–12 %), nose and
    upswept tail cone, span (0.4–3 × length), sweep (0–65°), root chord, taper, dihedral, wing
    position and mount (low, mid, high, parasol on struts), fin height; tail
    ``conventional`` / ``t_tail`` / ``twin_fin`` / ``v_tail`` / ``tailless`` (a delta wing and
    one fin); engines ``none`` / ``propeller`` / ``wing_2`` / ``wing_4`` (under the wings) /
    ``tail_2`` (rear fuselage); landing gear ``none`` (retracted) / ``tricycle`` /
    ``taildragger`` (sits nose-up) / ``floats``. Colours: red nose, near-white fuselage with a
    blue cheatline, dark cockpit glazing, grey wings, blue tail, grey engines, black gear.
    """
    family = _choice(rng, list(_AIRPLANE_FAMILIES))
    f = _AIRPLANE_FAMILIES[family]
    r, nose, tail_cone, span, sweep, root, taper, dihedral, wing_x, fin_h = (
        rng.uniform(*f[k]) for k in ("radius", "nose", "tail_cone", "span", "sweep", "root",
                                     "taper", "dihedral", "wing_x", "fin"))
    mount, tail, engines, gear = (_weighted(rng, f[k])
                                  for k in ("mount", "tail", "engines", "gear"))
    squash = rng.uniform(0.7, 0.9) if family == "fighter" else rng.uniform(1.0, 1.2)
    upsweep = rng.uniform(0.2, 1.0) * r if family in ("cargo", "airliner") else 0.2 * r
    if family == "twin_boom":
        upsweep = 0.0
    if tail == "tailless":
        root, taper, sweep = rng.uniform(0.5, 0.7), rng.uniform(0.02, 0.15), rng.uniform(50, 65)
        wing_x = -0.5 + root / 2 + 0.02
    b.variant.update(family=family, mount=mount, tail=tail, engines=engines, gear=gear,
                     span=span, sweep=sweep, radius=r)

    # fuselage along X: nose cone (own part) + body with a tail cone, elliptic section
    to_x = _rot("z", -90)  # the revolve axis +Y → +X (a profile's y is then x)
    squash_y = np.diag([1.0, squash, 1.0, 1.0])
    front = 0.5 - nose
    t = np.linspace(0.2, 1.0, 5)
    pointed = 2.0 if family == "fighter" else 0.5  # ogive vs rounded nose
    nose_profile = np.r_[[[0, 0.5]], np.c_[r * (1 - (1 - t) ** 2) ** pointed, 0.5 - nose * t],
                         [[0, front]]]
    b.revolve(nose_profile, "nose", squash_y @ _tf(rotation=to_x), sections=16, axis=0)
    # a twin-boom's pod ends early; a glider's pod narrows into a thin boom behind the wing
    pod_end = rng.uniform(-0.2, 0.0) if family == "twin_boom" else -0.5
    tail_start = pod_end + tail_cone
    if family == "glider":
        waist = wing_x - root / 2
        stations = [(front, r), (waist, r), (waist - 0.12, 0.35 * r), (-0.5, 0.22 * r)]
    else:
        stations = [(front, r), (tail_start, r), (pod_end, 0.3 * r)]
    body = np.array([[0, front], *[[rad, x] for x, rad in stations], [0, pod_end]])
    fv, ff = _revolve(body, 16)
    fv = fv @ to_x.T
    fv[:, 1] *= squash
    behind = fv[:, 0] < tail_start  # the tail cone rises towards the end
    fv[behind, 1] += upsweep * (tail_start - fv[behind, 0]) / tail_cone
    b.add((fv, ff), "fuselage", axis=0)
    canopy = 1.6 if family in ("fighter", "glider", "light") else 1.0
    b.ellipsoid((min(nose, 0.1) * 0.8 * canopy, r * squash * 0.45 * canopy, r * 0.7),
                (front - 0.02 * canopy, r * squash * 0.62, 0), "cockpit", subdivisions=1)

    # wings
    y_wing = {"low": -0.6, "mid": 0.0, "high": 0.75, "parasol": 1.0}[mount] * r * squash
    thick = rng.uniform(0.01, 0.025)
    if mount == "parasol":  # the wing on struts above the fuselage
        y_wing += rng.uniform(0.04, 0.1)
        for side in (-1, 1):
            for dx in (0.0, -0.6):
                x = wing_x + root * dx / 2 + root * 0.15
                b.segment((x, r * squash * 0.6, side * r * 0.6), (x, y_wing, side * r * 2.5),
                          0.01, "gear", 6)
    le_root = wing_x + root / 2
    tip = root * taper
    # swept tips end no further back than the tail
    offset = min(np.tan(np.radians(sweep)) * span / 2, le_root - tip + 0.5)
    for side in (-1, 1):
        outline = np.array([[le_root, 0], [le_root - root, 0],
                            [le_root - offset - tip, side * span / 2],
                            [le_root - offset, side * span / 2]])
        b.planform(outline, thick, "wing", _tf((0, y_wing, 0), _rot("x", -side * dihedral)))

    if family == "fighter":  # air intakes on the fuselage sides
        for side in (-1, 1):
            b.box((0.25, r * squash * 1.2, r * 0.6), (wing_x + root * 0.4, -r * squash * 0.1,
                                                       side * r * 1.1), "engine")
    boom_z, boom_r = 0.0, 0.0
    if family == "twin_boom":  # two booms from the wing to the tail
        boom_z = rng.uniform(0.12, 0.22) * span
        boom_r = rng.uniform(0.015, 0.025)
        for side in (-1, 1):
            b.segment((le_root + 0.06, y_wing, side * boom_z), (-0.5, y_wing, side * boom_z),
                      boom_r, "fuselage", 10)

    if family == "biplane":  # an upper wing on struts, slightly staggered forward
        gap = rng.uniform(0.12, 0.2)
        stagger = rng.uniform(0.0, 0.06)
        y_top = y_wing + gap
        for side in (-1, 1):
            outline = np.array([[le_root + stagger, 0], [le_root + stagger - root, 0],
                                [le_root + stagger - offset - tip, side * span / 2],
                                [le_root + stagger - offset, side * span / 2]])
            b.planform(outline, thick, "wing", _tf((0, y_top, 0)))
            for z in (0.12, 0.7):
                zz = side * z * span / 2
                b.segment((le_root - root * 0.5, y_wing, zz),
                          (le_root + stagger - root * 0.5, y_top, zz), 0.01, "gear", 6)

    # landing gear: retracted, floats, or a nose (tricycle) or tail wheel and two main wheels
    if gear == "floats":
        drop = r * squash + rng.uniform(0.06, 0.12)
        float_len = rng.uniform(0.45, 0.65)
        for side in (-1, 1):
            z = side * rng.uniform(0.1, 0.16)
            b.revolve(np.array([[0, float_len / 2], [0.025, float_len / 2 - 0.06],
                                [0.03, -float_len / 2 + 0.1], [0.012, -float_len / 2],
                                [0, -float_len / 2]]), "gear",
                      _tf((wing_x + 0.05, -drop, z), to_x), sections=10, axis=0)
            for x in (wing_x + 0.12, wing_x - 0.08):
                b.segment((x, -drop + 0.02, z), (x, y_wing if mount == "low" else 0, z * 0.5),
                          0.01, "gear", 6)
    elif gear != "none":
        long_legs = family in ("light", "biplane", "twin_boom")
        leg = r * squash + (rng.uniform(0.06, 0.14) if long_legs else rng.uniform(0.03, 0.09))
        wheel = rng.uniform(0.018, 0.035)
        main_x = wing_x - 0.03 if gear == "tricycle" else wing_x + 0.06
        for x, z, length in ((0.3 if gear == "tricycle" else -0.45, 0.0,
                              leg if gear == "tricycle" else r * squash + 0.02),
                             (main_x, r * 1.1, leg), (main_x, -r * 1.1, leg)):
            top = (x, -r * squash * 0.5, z)
            bottom = (x, -length, z * 1.4)
            b.segment(top, bottom, 0.01, "gear", 6)
            b.cylinder(wheel, wheel * 0.8, bottom, "gear", sections=12)

    # tail surfaces: fins sweep back from a root ending at the tail
    tail_y = r * squash * 0.3 + upsweep
    stab_span = rng.uniform(0.25, 0.45) * (0.7 if family == "fighter" else 1.0)
    if family == "twin_boom":  # fins on the booms, the stabiliser between them
        tail_y, stab_span = y_wing + boom_r, 2 * boom_z
    stab_root = rng.uniform(0.07, 0.14)
    fin_root = rng.uniform(0.1, 0.2)
    fin_sweep = np.tan(np.radians(rng.uniform(20, 50)))
    x_end = -0.5 + 0.01

    def fin(height: float, chord: float, transform: np.ndarray) -> float:
        """A fin whose root ends at the tail; returns the x of its top's trailing edge."""
        # swept back, its top overhangs the tail by at most 6 % of the length
        top_le = x_end + chord - min(fin_sweep * height, 0.4 * chord + 0.06)
        outline = np.array([[x_end + chord, 0], [x_end, 0], [top_le - chord * 0.6, height],
                            [top_le, height]])
        b.prism(outline, max(thick * 0.8, 0.008), "tail", transform)
        return top_le - chord * 0.6

    def stabiliser(x: float, y: float, half_span: float) -> None:
        """Swept tail planes whose root's trailing edge is at ``x``; tips end by x_end - 0.06."""
        off = np.tan(np.radians(min(sweep, 35) * 0.8 + 5)) * half_span
        x = max(x, x_end - 0.06 + off - stab_root * 0.4)
        for side in (-1, 1):
            outline = np.array([[x + stab_root, 0], [x, 0],
                                [x - off + stab_root * 0.4, side * half_span],
                                [x - off + stab_root, side * half_span]])
            b.planform(outline, max(thick * 0.7, 0.007), "tail", _tf((0, y, 0)))

    if tail == "tailless":  # a delta: one fin, no stabiliser
        fin(fin_h * 1.2, fin_root * 1.3, _tf((0, tail_y, 0)))
    elif tail == "conventional":
        fin(fin_h, fin_root, _tf((0, tail_y, 0)))
        stabiliser(x_end + 0.01, tail_y - 0.3 * r, stab_span / 2)
    elif tail == "t_tail":
        top_te = fin(fin_h, fin_root, _tf((0, tail_y, 0)))
        stabiliser(top_te, tail_y + fin_h, stab_span / 2)
    elif tail == "twin_fin":
        stabiliser(x_end + 0.01, tail_y - 0.3 * r, stab_span / 2)
        fin_z = boom_z if family == "twin_boom" else rng.uniform(r, stab_span / 2)
        cant = rng.uniform(0, 20) if family == "fighter" else 0.0
        for side in (-1, 1):
            fin(fin_h * 0.8, fin_root * 0.8,
                _tf((0, tail_y - 0.3 * r, side * fin_z), _rot("x", -side * cant)))
    else:  # v_tail: two slanted fins, no horizontal stabiliser
        cant = rng.uniform(30, 55)
        for side in (-1, 1):
            fin(fin_h * 1.1, fin_root, _tf((0, tail_y, 0), _rot("x", -side * cant)))

    # engines
    er = rng.uniform(0.022, 0.04)
    el = rng.uniform(0.08, 0.16)
    if engines == "propeller":  # a two-blade propeller on the nose (a pusher on a pod)
        blade = rng.uniform(0.08, 0.14)
        x_prop = pod_end - 0.005 if family == "twin_boom" else 0.5 + 0.005
        b.box((0.012, 2 * blade, 0.025), (x_prop, 0, 0), "engine",
              rotation=_rot("x", rng.uniform(0, 180)), axis=1)
    elif engines == "tail_2":
        for side in (-1, 1):
            x = tail_start + el * 0.4
            b.cylinder(er, el, (x, tail_y * 0.8, side * (r + er * 1.4)), "engine",
                       axis_dir=(1, 0, 0))
            b.box((el * 0.5, er * 0.5, er * 1.6), (x, tail_y * 0.8, side * (r + er * 0.5)),
                  "engine")
    elif engines in ("wing_2", "wing_4"):
        fractions = (0.35,) if engines == "wing_2" else (0.28, 0.58)
        for frac in fractions:
            for side in (-1, 1):
                z = side * frac * span / 2
                le = le_root - offset * frac
                y = y_wing - thick / 2 - er * 1.3 + np.tan(np.radians(dihedral)) * abs(z)
                if mount in ("high", "parasol"):  # props on a high wing sit in front of it
                    y += er * 1.3
                b.cylinder(er, el, (le + el * 0.1, y, z), "engine", axis_dir=(1, 0, 0))
                b.box((el * 0.5, er * 1.2, er * 0.4), (le - el * 0.1, y + er * 0.9, z),
                      "engine")
    if gear == "taildragger":  # sits nose-up on its tail wheel
        b.transform(_tf(rotation=_rot("z", rng.uniform(8, 14))))
