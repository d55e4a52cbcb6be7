"""Guitars, standing up (up +Y: the body at the bottom, the neck and headstock above it; front
+X: the face with the strings, soundhole or pickups; length 1 from the body's end to the
headstock's top)."""

from __future__ import annotations

import numpy as np

from ss3d.data.procedural.builder import _Builder, _choice
from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.procedural.primitives import Mesh, _prism, _rot, _tf, _unit_box, _unit_cylinder
from ss3d.data.procedural.registry import register

PALETTE: dict[str, _PartStyle] = {
    "body": _PartStyle((0.06, 0.85, 0.75), "two_tone"),
    "face": _PartStyle((0.11, 0.45, 0.92)),
    "neck": _PartStyle((0.08, 0.55, 0.75)),
    "fretboard": _PartStyle((0.07, 0.50, 0.35)),
    "fret": _PartStyle((0.00, 0.00, 0.70)),
    "string": _PartStyle((0.58, 0.45, 1.00)),
    "headstock": _PartStyle((0.62, 0.70, 0.45)),
    "tuner": _PartStyle((0.58, 0.55, 0.75)),
    "soundhole": _PartStyle((0.00, 0.00, 0.03)),
    "pickup": _PartStyle((0.00, 0.00, 0.95)),
    "bridge": _PartStyle((0.83, 0.60, 0.55)),
    "pickguard": _PartStyle((0.35, 0.50, 0.85)),
    "knob": _PartStyle((0.13, 0.95, 0.90)),
    "stand": _PartStyle((0.00, 0.00, 0.45)),
}

# ZY plane (local x: across the body = world -z; local y: up) -> world; thickness along world x
_FACE = _rot("y", 90)


def _ellipse(cz: float, cy: float, rz: float, ry: float, angle: float = 0.0,
             n: int = 14) -> np.ndarray:
    """An ``(n, 2)`` ellipse polygon in the (z, y) plane, turned by ``angle`` degrees."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    a = np.radians(angle)
    z, y = rz * np.cos(t), ry * np.sin(t)
    return np.c_[cz + z * np.cos(a) - y * np.sin(a), cy + z * np.sin(a) + y * np.cos(a)]


def _merged(pieces: list[Mesh]) -> Mesh:
    """Many small closed pieces (frets, tuners) as one mesh: one part, one ``add``."""
    offsets = np.cumsum([0] + [len(v) for v, _ in pieces[:-1]])
    return (np.concatenate([v for v, _ in pieces]),
            np.concatenate([f + o for (_, f), o in zip(pieces, offsets)]))


def _bouts(lb: float, lower: float, upper: float, cut: float = 0.0, n: int = 18) -> np.ndarray:
    """The (z, y) outline of a body of length ``lb`` from two bouts of widths ``lower`` and
    ``upper`` (a waist between them); ``cut``: how much of the upper bout a cutaway removes
    on the +z side."""
    y = lb * (1 - np.cos(np.linspace(0, np.pi, n))) / 2

    def bout(c: float, r: float, w: float) -> np.ndarray:
        return w / 2 * np.sqrt(np.clip(1 - ((y - c) / r) ** 2, 0, 1))

    w = np.maximum(bout(lb * 0.32, lb * 0.34, lower), bout(lb * 0.74, lb * 0.27, upper))
    right = np.where(y > lb * 0.55, w * (1 - cut * np.clip((y / lb - 0.55) * 4, 0, 1)), w)
    right = np.maximum(right, 0.02 * (y < lb))
    return np.r_[np.c_[right, y], np.c_[-w[-2:0:-1], y[-2:0:-1]]]


# acoustic styles: body length, width (lower bout), thickness
_ACOUSTIC: dict[str, tuple[tuple[float, float], ...]] = {
    "steel": ((0.46, 0.54), (0.34, 0.44), (0.09, 0.13)),
    "classical": ((0.42, 0.48), (0.3, 0.38), (0.08, 0.11)),
    "jumbo": ((0.52, 0.62), (0.45, 0.56), (0.13, 0.2)),
}


@register("guitar", PALETTE, core={"body", "bridge", "face", "fretboard", "headstock", "neck",
                                   "string", "tuner"},
          front=("bridge", "face"), top=("headstock",), bottom=("body",))
def _guitar(b: _Builder, rng: np.random.Generator) -> None:
    """Guitars standing on the body's end: ``acoustic`` (``steel``-string, ``classical`` with
    a slotted headstock, deep wide ``jumbo``; a cutaway or not; soundhole, bridge, a
    pickguard on some), ``electric`` (``double_cut`` with two horns, ``single_cut``,
    ``offset``, ``v``, ``double_neck``, ``hollow`` body with f-holes, or a small ``headless``
    one with the tuners on the body's end; one to three pickups per neck, knobs, a pickguard
    on some; six-in-line or 3+3 headstock) and ``bass`` (four strings, long neck, offset or
    headless body, one or two pickups, four-in-line or 2+2 headstock). Displayed on a
    ``tripod`` stand (leaning back 3–12°) or an ``a_frame`` stand (12–28°), the neck in the
    yoke of the stand's post, or without one (upright to leaning back 32° against a wall).

    Length 1 (before the lean); body 0.2–0.62 long, 0.12–0.56 wide, 0.03–0.2 thick;
    headstock 0.13–0.2 long, tilted back 0–15°; 12–22 frets at the equal-tempered positions
    of the scale (bridge to nut). Colours: orange-brown body (two-tone: the edge binding),
    spruce face, tan neck, rosewood fretboard, silver frets, light-blue strings, navy
    headstock, steel-blue tuners, black soundhole, white pickups, purple bridge, mint
    pickguard, amber knobs, grey stand.
    """
    stand = _choice(rng, ["none", "tripod", "a_frame"], [0.4, 0.3, 0.3])
    lean = rng.uniform(*{"none": (0, 32), "tripod": (3, 12), "a_frame": (12, 28)}[stand])
    kind = _choice(rng, ["acoustic", "electric", "bass"], [0.4, 0.4, 0.2])
    if kind == "acoustic":
        style = _choice(rng, list(_ACOUSTIC), [0.35, 0.25, 0.4])
        lb, width, thick = (rng.uniform(*r) for r in _ACOUSTIC[style])
        head = "slotted" if style == "classical" else "3+3"
    elif kind == "bass":
        style = _choice(rng, ["offset", "headless"], [0.8, 0.2])
    else:
        style = _choice(rng, ["double_cut", "single_cut", "offset", "v", "double_neck", "hollow",
                              "headless"], [0.18, 0.16, 0.1, 0.1, 0.13, 0.18, 0.15])
    if kind != "acoustic":
        lb = rng.uniform(0.26, 0.36) if kind == "bass" else rng.uniform(0.32, 0.5)
        width = {"double_neck": (0.42, 0.52), "hollow": (0.36, 0.44),
                 "headless": (0.12, 0.18)}.get(style, (0.22, 0.42))
        width = rng.uniform(*width)
        thick = rng.uniform(0.07, 0.1) if style == "hollow" else rng.uniform(0.03, 0.06)
        head = _choice(rng, ["inline", "2+2" if kind == "bass" else "3+3"])
        head = "headless" if style == "headless" else head
        lb *= 0.75 if style == "headless" else 1.0
    b.variant.update(kind=kind, style=style, headstock=head, body_length=lb, width=width,
                     thickness=thick)
    xf = thick / 2 + 0.006  # the neck's front, the fretboard's back
    necks = (-width * 0.2, width * 0.2) if style == "double_neck" else (0.0,)

    # body: the outline extruded across x, the face a thin slab on its +X side
    cut = rng.uniform(0.5, 0.8) if kind == "acoustic" and rng.uniform() < 0.3 else 0.0
    if style == "single_cut":
        cut = rng.uniform(0.5, 0.9)
    b.variant["cutaway"] = "yes" if cut else "no"
    if style == "v":
        a, tip, notch = rng.uniform(0.03, 0.05), rng.uniform(0.05, 0.08), rng.uniform(0.45, 0.7)
        parts = [np.array([(-a, lb), (a, lb), (width / 2, 0), (width / 2 - tip, 0),
                           (0, lb * notch), (-width / 2 + tip, 0), (-width / 2, 0)])]
    else:
        upper = width * (rng.uniform(0.72, 0.86) if kind == "acoustic" or style in (
            "hollow", "headless") else rng.uniform(0.5, 0.8))
        parts = [_bouts(lb, width, upper, cut)]
        for s in (1, -1) if style in ("double_cut", "offset", "double_neck", "hollow") else ():
            # horns up beside the neck(s), the upper (+z) one longer on offset bodies
            hl = lb * rng.uniform(0.3, 0.45) * (1.35 if style == "offset" and s > 0 else 1.0)
            hw = width * rng.uniform(0.08, 0.12)
            parts.append(_ellipse(s * (0.03 + hw + abs(necks[0])), lb * 0.68 + hl / 2, hw,
                                  hl / 2, s * rng.uniform(3, 15)))
    for outline in parts:  # one triangulation for both
        v, f = _prism(outline, 1.0)
        b.add((v * [1, 1, thick], f), "body", _tf((0, 0, 0), _FACE), axis=1)
        b.add((v * [0.985, 0.985, 0.004] + [0, lb * 0.0075, 0], f), "face",
              _tf((thick / 2, 0, 0), _FACE), axis=1)

    # per neck: neck, fretboard and frets (the 12th halfway from the nut to the bridge),
    # bridge and strings, pickups, the headstock tilted back about the nut with its tuners
    head_len, nt = rng.uniform(0.13, 0.2), rng.uniform(0.02, 0.03)
    head_len = rng.uniform(0.025, 0.04) if head == "headless" else head_len
    y_nut = 1.0 - head_len
    y_bridge = lb * (rng.uniform(0.24, 0.32) if kind == "acoustic" else rng.uniform(0.18, 0.28))
    y_fb = lb * rng.uniform(0.62, 0.72) if kind == "acoustic" else lb * rng.uniform(0.7, 0.85)
    nw = (0.05 if kind == "acoustic" else 0.042) * (1.1 if style == "classical" else 1.0)
    n_str, n_frets = 4 if kind == "bass" else 6, int(rng.integers(12, 23))
    tilt = rng.uniform(8, 15) if kind == "acoustic" else rng.uniform(0, 8) * (head != "headless")
    ht, hw, bh = rng.uniform(0.014, 0.02), nw * rng.uniform(1.5, 1.9), rng.uniform(0.008, 0.014)
    n_pu = int(rng.integers(1, 3 if kind == "bass" else 4))
    b.variant["frets"] = float(n_frets)
    for dz in necks:
        with b.frame(_tf((0, 0, dz))):
            _neck(b, rng, kind, head, lb, thick, xf, nw, nt, y_fb, y_nut, y_bridge, n_str,
                  n_frets, tilt, ht, hw, bh, n_pu)

    # the face's furniture: soundhole and pickguard, or knobs and pickguard
    if style == "hollow":  # f-holes
        for s in (-1, 1):
            b.prism(_ellipse(s * width * 0.24, lb * 0.45, 0.008, lb * 0.14, s * 8), 0.006,
                    "soundhole", _tf((thick / 2, 0, 0), _FACE), axis=1)
    if kind == "acoustic":
        y_sh = lb * rng.uniform(0.6, 0.66)
        rs = width * rng.uniform(0.1, 0.14)
        b.cylinder(rs, 0.006, (thick / 2 + 0.002, y_sh, 0), "soundhole", (1, 0, 0), 20)
        if style != "classical" and rng.uniform() < 0.6:
            b.prism(_ellipse(-rs * 1.3, y_sh - rs * 0.6, rs * 0.7, rs * 1.1, -25), 0.003,
                    "pickguard", _tf((thick / 2 + 0.002, 0, 0), _FACE), axis=1)
    else:
        if rng.uniform() < 0.5 and style not in ("v", "double_neck", "headless"):
            b.variant["pickguard"] = "yes"
            b.prism(_ellipse(-width * 0.05, (y_bridge + y_fb) / 2, width * 0.32,
                             (y_fb - y_bridge) * 0.75, 10), 0.003, "pickguard",
                    _tf((thick / 2 + 0.002, 0, 0), _FACE), axis=1)
        n_k = int(rng.integers(1, 3) if style == "headless" else rng.integers(2, 5))
        for k, y in enumerate(np.linspace(lb * 0.12, y_bridge + 0.05, n_k)):
            b.cylinder(0.011, 0.012, (thick / 2 + 0.006, y, width * (0.3 - 0.06 * (k % 2))),
                       "knob", (1, 0, 0), 10)

    # on a tripod or an A-frame stand (leaning back against its post, the neck(s) in its
    # yoke), or without one: upright to leaning back against a wall
    b.variant.update(stand=stand, lean=lean)
    if stand == "none":
        b.transform(_tf(rotation=_rot("z", lean)))
    else:
        yy, xb = lb + rng.uniform(0.08, 0.2), -thick / 2 - 0.03
        xy, zc, xc = xf - nt - 0.008, width * 0.3, thick / 2 + 0.015
        span = nw + 2 * abs(necks[0]) + 0.024
        b.segment([xb, 0.02, 0], [xb, yy, 0], 0.008, "stand", 8)
        b.segment([xb, yy, 0], [xy, yy, 0], 0.006, "stand", 6)
        b.box((0.01, 0.01, span), (xy, yy, 0), "stand")
        for s in (-1, 1):
            b.segment([xy, yy, s * span / 2], [xf + 0.012, yy, s * span / 2], 0.004, "stand", 6)
            b.segment([xc, 0.0, s * zc], [xc, 0.04, s * zc], 0.006, "stand", 6)
            b.segment([xc, 0.0, s * zc], [xb, 0.02, 0], 0.006, "stand", 6)
        b.segment([xc, 0.0, -zc], [xc, 0.0, zc], 0.008, "stand", 6)
        b.transform(_tf(rotation=_rot("z", lean)))  # everything so far leans back
        foot = _rot("z", lean) @ np.array([xb, 0.02, 0])
        # the feet: short ones in front, long ones behind (one for a tripod)
        front, back = rng.uniform(0.05, 0.12), rng.uniform(0.12, 0.32)
        spread = rng.uniform(0.08, 0.16)
        ends = [(front, s * spread) for s in (-1, 1)] + (
            [(-back, 0.0)] if stand == "tripod" else [(-back, s * spread * 0.8) for s in (-1, 1)])
        for ex, ez in ends:
            b.segment(foot, [ex, -0.05, ez], 0.007, "stand", 6)


def _neck(b: _Builder, rng: np.random.Generator, kind: str, head: str, lb: float,
          thick: float, xf: float, nw: float, nt: float, y_fb: float, y_nut: float,
          y_bridge: float, n_str: int, n_frets: int, tilt: float, ht: float, hw: float,
          bh: float, n_pu: int) -> None:
    """One neck (centred on z = 0) with its fretboard, frets, nut, bridge, strings, pickups
    (electric and bass) and the headstock with its tuners."""
    neck = np.array([(-nw * 0.62, lb - 0.05), (nw * 0.62, lb - 0.05), (nw / 2, y_nut),
                     (-nw / 2, y_nut)])
    b.prism(neck, nt, "neck", _tf((xf - nt / 2, 0, 0), _FACE), axis=1)
    board = np.array([(-nw * 0.62, y_fb), (nw * 0.62, y_fb), (nw / 2, y_nut), (-nw / 2, y_nut)])
    b.prism(board, 0.007, "fretboard", _tf((xf + 0.0035, 0, 0), _FACE), axis=1)
    ys = y_nut - (y_nut - y_bridge) * (1 - 2 ** (-np.arange(1, n_frets + 1) / 12))
    ub, uf = _unit_box()
    frets = [(ub * [0.003, 0.003, nw * (1 + 0.24 * (y_nut - y) / (y_nut - y_fb))]
              + [xf + 0.0085, y, 0], uf) for y in ys[ys > y_fb + 0.005]]
    frets.append((ub * [0.006, 0.005, nw] + [xf + 0.009, y_nut, 0], uf))  # the nut
    b.add(_merged(frets), "fret", axis=2)
    if kind == "acoustic":
        b.box((0.006, 0.03, nw * 2.8), (thick / 2 + 0.003, y_bridge, 0), "bridge", axis=2)
    else:
        b.box((bh, 0.035, nw * 1.6), (thick / 2 + bh / 2, y_bridge, 0), "bridge", axis=2)
        ys = (np.linspace(y_bridge + 0.04, y_fb - 0.03, n_pu + 1)[:n_pu] if n_pu > 1
              else [(y_bridge + y_fb) / 2])
        for y in ys:
            b.box((0.01, 0.022, nw * (2.0 if kind == "bass" else 1.7)),
                  (thick / 2 + 0.004, y, 0), "pickup", axis=2)
    gauge = 0.0015 if kind != "bass" else 0.0025
    for i in range(n_str):
        f = i / (n_str - 1) - 0.5
        b.segment([thick / 2 + bh, y_bridge, f * nw * 1.25],
                  [xf + 0.011, y_nut, f * nw * 0.8], gauge * (1 + 0.5 * (f + 0.5)), "string", 4)
    hl = 1.0 - y_nut
    with b.frame(_tf((xf - ht / 2, y_nut, 0), _rot("z", tilt))):
        if head == "headless":  # a small string clamp; the tuners sit on the body's end
            shape, pegs = [(-nw / 2, 0), (nw / 2, 0), (nw / 2, hl), (-nw / 2, hl)], []
        elif head == "inline":
            shape = [(-nw / 2, 0), (nw / 2, 0), (nw / 2 + 0.005, hl * 0.9), (nw / 2 - 0.01, hl),
                     (-hw / 2, hl * 0.85), (-hw / 2 - 0.005, hl * 0.3)]
            pegs = [(-hw / 2 - 0.003, y, -1) for y in np.linspace(0.2, 0.8, n_str) * hl]
        else:
            shape = [(-nw / 2, 0), (nw / 2, 0), (hw / 2, hl * 0.25), (hw / 2, hl),
                     (-hw / 2, hl), (-hw / 2, hl * 0.25)]
            pegs = [(s * hw / 2, y, s) for s in (-1, 1)
                    for y in np.linspace(0.35, 0.85, n_str // 2) * hl]
        b.prism(np.array(shape), ht, "headstock", _tf((0, 0, 0), _FACE), axis=1)
        cv, cf = _unit_cylinder(8)  # along z
        along_x = cv[:, [2, 1, 0]] * [1, 1, -1]  # turned a quarter about y: along x
        tuners = [(cv * [0.006, 0.006, 0.03] + [0, y, -(z + s * 0.015)], cf) for z, y, s in pegs]
        tuners += [(along_x * [ht + 0.014, 0.004, 0.004] + [0.005, y, -(z - s * 0.012)], cf)
                   for z, y, s in pegs]  # a peg out of the side, a post through the face
        if tuners:
            b.add(_merged(tuners), "tuner", axis=2)
    if head == "headless":  # the tuners at the body's end, pointing down
        along_y = cv[:, [0, 2, 1]] * [1, -1, 1]
        b.add(_merged([(along_y * [0.006, 0.025, 0.006] + [thick / 4, -0.004, z], cf)
                       for z in np.linspace(-0.5, 0.5, n_str) * nw * 1.2]), "tuner", axis=1)
