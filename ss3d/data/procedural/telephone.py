"""Telephones: mobile phones standing upright and desk phones (front +X: the screen, keypad
or dial; a mobile's camera is on its back at -X; up +Y: the earpiece at the top, a desk
phone's handset lying on top)."""

from __future__ import annotations

import numpy as np

from ss3d.data.procedural.builder import _Builder, _choice, _weighted
from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.procedural.primitives import _rot, _rounded_rect, _tf
from ss3d.data.procedural.registry import register

PALETTE: dict[str, _PartStyle] = {
    "shell": _PartStyle((0.08, 0.30, 0.62)),
    "screen": _PartStyle((0.58, 0.80, 0.50), "stripes", (0.55, 0.55, 0.70)),
    "keypad": _PartStyle((0.00, 0.00, 0.92)),
    "earpiece": _PartStyle((0.00, 0.00, 0.03)),
    "camera": _PartStyle((0.78, 0.55, 0.55)),
    "lens": _PartStyle((0.50, 0.60, 0.75)),
    "button": _PartStyle((0.03, 0.80, 0.85)),
    "antenna": _PartStyle((0.00, 0.00, 0.25)),
    "handset": _PartStyle((0.97, 0.70, 0.50)),
    "cord": _PartStyle((0.15, 0.70, 0.90)),
}

_FACE_X = _rot("y", 90)  # a polygon in local (x, y), extruded along local z → along world X


def _slab(b: _Builder, w: float, h: float, t: float, r: float, centre: np.ndarray,
          part: str) -> None:
    """A rounded slab, ``w`` along Z, ``h`` along Y, ``t`` thick along X."""
    b.prism(_rounded_rect(w, h, r), t, part, _tf(centre, _FACE_X), axis=1)


def _keys(b: _Builder, rows: int, cols: int, y0: float, y1: float, w: float,
          x: float) -> None:
    """A grid of keys on a face at ``x`` facing +X, between heights ``y0`` and ``y1``."""
    kh, kw = (y1 - y0) / rows * 0.7, w / cols * 0.7
    for i in range(rows):
        for j in range(cols):
            b.box((0.012, kh, kw), (x, y0 + (i + 0.5) * (y1 - y0) / rows,
                                    (j + 0.5) * w / cols - w / 2), "keypad")


@register("telephone", PALETTE, core={"earpiece", "shell"}, front=("screen",),
          back=("camera",), top=("earpiece",))
def _telephone(b: _Builder, rng: np.random.Generator) -> None:
    """Telephones: ``smartphone`` (a rounded slab, the screen almost the whole front, a
    ``square``, ``round`` or ``strip`` camera module at the back), ``bar`` (a feature phone:
    small screen over a key grid, a stub antenna on some), ``flip`` (open clamshell: keypad
    below, screen above, tilted back 10–35°), ``desk`` (a wedge base, keys and display on the
    slope, the handset lying on top, a coiled cord) and ``rotary`` (a domed body, a dial on
    the slope, the handset on a cradle).

    Mobiles: height 1, width 0.36–0.62, thickness 0.035–0.16; desk phones: width 1, depth
    0.6–1, height 0.18–0.4. Colours: beige shell, blue screen, light-grey keys, black
    earpiece, purple camera module with cyan lenses, red buttons, dark-grey antenna, dark-red
    handset, yellow cord.
    """
    style = _weighted(rng, {"smartphone": 1.5, "bar": 0.7, "flip": 0.7, "desk": 0.8,
                            "rotary": 0.5})
    b.variant["style"] = style
    {"smartphone": _smartphone, "bar": _bar, "flip": _flip, "desk": _desk,
     "rotary": _desk}[style](b, rng)


def _camera(b: _Builder, rng: np.random.Generator, x: float, top: float, w: float,
            t: float) -> None:
    """A camera module on the back face at ``x`` (facing -X) near the top ``top``."""
    kind = _choice(rng, ["square", "round", "strip"])
    b.variant["camera"] = kind
    size = w * rng.uniform(0.25, 0.45)
    m = w * 0.06
    if kind == "strip":  # a bar across the whole back
        h = size * 0.45
        b.box((t, h, w * 0.96), (x - t / 2, top - m - h / 2, 0), "camera", axis=2)
        lenses = [(top - m - h / 2, -w * 0.2), (top - m - h / 2, -w * 0.05)]
        r = h * 0.3
    else:
        zc, yc = w / 2 - m - size / 2, top - m - size / 2
        if kind == "square":
            _slab(b, size, size, t, size * 0.2, np.array([x - t / 2, yc, zc]), "camera")
        else:
            b.cylinder(size / 2, t, (x - t / 2, yc, zc), "camera", (1, 0, 0), 16)
        n = int(rng.integers(1, 4))
        r = size * (0.18 if n > 1 else 0.3)
        lenses = [(yc + size * 0.22 * np.cos(2.1 * k + 0.5) * (n > 1),
                   zc + size * 0.22 * np.sin(2.1 * k + 0.5) * (n > 1)) for k in range(n)]
    for y, z in lenses:
        b.cylinder(r, 0.01, (x - t, y, z), "lens", (1, 0, 0), 12)


def _smartphone(b: _Builder, rng: np.random.Generator) -> None:
    w, t = rng.uniform(0.42, 0.62), rng.uniform(0.035, 0.09)
    r = w * rng.uniform(0.05, 0.3)
    bez = rng.uniform(0.01, 0.05)
    chin = rng.uniform(0.01, 0.12)  # the bezel above and below the screen
    b.variant.update(width=w, thickness=t)
    _slab(b, w, 1.0, t, r, np.array([0, 0.5, 0]), "shell")
    _slab(b, w - 2 * bez, 1 - 2 * chin, 0.004, max(r - bez, 0.005),
          np.array([t / 2 + 0.002, 0.5, 0]), "screen")
    b.box((0.004, 0.01, w * 0.2), (t / 2 + 0.003, 1 - max(chin / 2, 0.02), 0), "earpiece",
          axis=2)
    _camera(b, rng, -t / 2, 1.0, w, rng.uniform(0.008, 0.03))
    for k in range(int(rng.integers(1, 4))):  # side buttons on +Z
        h = rng.uniform(0.05, 0.12)
        b.box((t * 0.4, h, 0.012), (0, 0.75 - k * 0.14, w / 2), "button")


def _bar(b: _Builder, rng: np.random.Generator) -> None:
    w, t = rng.uniform(0.36, 0.5), rng.uniform(0.08, 0.16)
    split = rng.uniform(0.45, 0.6)  # the screen's bottom edge
    b.variant.update(width=w, thickness=t)
    _slab(b, w, 1.0, t, w * rng.uniform(0.1, 0.4), np.array([0, 0.5, 0]), "shell")
    sh = (0.88 - split) * rng.uniform(0.6, 0.9)
    b.box((0.006, sh, w * 0.75), (t / 2, split + 0.02 + sh / 2, 0), "screen", axis=2)
    b.box((0.004, 0.015, w * 0.25), (t / 2 + 0.001, 0.94, 0), "earpiece", axis=2)
    b.cylinder(w * 0.12, 0.012, (t / 2, split - 0.07, 0), "button", (1, 0, 0), 12)
    _keys(b, 4, 3, 0.06, split - 0.16, w * 0.8, t / 2)
    _camera(b, rng, -t / 2, 1.0, w, 0.008)
    if rng.uniform() < 0.5:
        b.variant["antenna"] = "yes"
        b.cylinder(0.025, 0.15, (-t * 0.2, 1.05, w * 0.3), "antenna", (0, 1, 0), 10)


def _flip(b: _Builder, rng: np.random.Generator) -> None:
    w, t = rng.uniform(0.38, 0.5), rng.uniform(0.05, 0.08)
    lower, upper = rng.uniform(0.42, 0.52), rng.uniform(0.42, 0.52)
    tilt = rng.uniform(10, 35)
    b.variant.update(width=w, thickness=t, tilt=tilt)
    r = w * rng.uniform(0.05, 0.25)
    _slab(b, w, lower, t, r, np.array([0, lower / 2, 0]), "shell")
    b.cylinder(t * 0.55, w * 0.9, (0, lower, 0), "shell", (0, 0, 1), 12)
    _keys(b, 4, 3, 0.05, lower - 0.12, w * 0.75, t / 2)
    b.box((0.01, 0.06, w * 0.4), (t / 2, lower - 0.07, 0), "button", axis=2)
    with b.frame(_tf((0, lower, 0), _rot("z", tilt))):  # the lid, tilted back
        _slab(b, w, upper, t, r, np.array([0, upper / 2, 0]), "shell")
        b.box((0.006, upper * 0.62, w * 0.8), (t / 2, upper * 0.5, 0), "screen", axis=2)
        b.box((0.004, 0.015, w * 0.25), (t / 2 + 0.001, upper - 0.05, 0), "earpiece", axis=2)
        _camera(b, rng, -t / 2, upper, w, 0.01)


def _desk(b: _Builder, rng: np.random.Generator) -> None:
    rotary = b.variant["style"] == "rotary"
    depth, width = rng.uniform(0.6, 1.0), 1.0
    hb, hf = rng.uniform(0.18, 0.4), rng.uniform(0.05, 0.12)
    xs = depth * rng.uniform(-0.1, 0.15)  # where the slope meets the top
    b.variant.update(depth=depth, height=hb)
    profile = [[-depth / 2, 0], [depth / 2, 0], [depth / 2, hf], [xs, hb]]
    if rotary:  # a domed back
        a = np.linspace(0, np.pi / 2, 7)[1:]
        profile += list(np.c_[xs - (xs + depth / 2) * np.sin(a), hb * (0.55 + 0.45 * np.cos(a))])
    else:
        profile += [[-depth / 2, hb]]
    b.prism(np.array(profile), width, "shell")
    # the slope's frame: n its outward normal, d up the slope
    a0, a1 = np.array([depth / 2, hf, 0]), np.array([xs, hb, 0])
    d = (a1 - a0) / np.linalg.norm(a1 - a0)
    n = np.array([d[1], -d[0], 0])
    rot = np.stack([n, d, [0, 0, 1]], axis=1)
    run = np.linalg.norm(a1 - a0)
    if rotary:
        b.variant["dial"] = "rotary"
        r = min(run * 0.42, 0.3)
        c = a0 + d * run * 0.5
        b.cylinder(r, 0.02, c + n * 0.01, "keypad", n, 20)
        for k in range(10):
            phi = np.radians(60 + 26 * k)
            b.cylinder(r * 0.1, 0.01, c + n * 0.022 + 0.72 * r * (np.cos(phi) * d
                                                                   + np.sin(phi) * rot[:, 2]),
                       "button", n, 8)
    else:
        rows, cols = 4, int(rng.integers(3, 5))
        kw, kh = width * 0.45 / cols, run * 0.5 / rows
        for i in range(rows):
            for j in range(cols):
                p = a0 + d * run * (0.1 + (i + 0.5) * 0.5 / rows) + n * 0.006
                p[2] = (j + 0.5) * width * 0.45 / cols - width * 0.3
                b.box((0.012, kh * 0.7, kw * 0.7), p, "keypad", rot)
        b.box((0.006, run * 0.22, width * 0.35), a0 + d * run * 0.72 + n * 0.004, "screen",
              rot, axis=2)
        b.box((0.014, run * 0.12, width * 0.08), a0 + d * run * 0.3 + n * 0.007
              + [0, 0, width * 0.3], "button", rot)
    # the handset across the top, on two cradle prongs
    hx = (xs - depth / 2) / 2 if not rotary else xs - 0.3 * (xs + depth / 2)
    length, hr = width * rng.uniform(0.75, 0.95), rng.uniform(0.03, 0.05)
    lift = rng.uniform(0.02, 0.06) if rotary else 0.0
    for z in (-length * 0.3, length * 0.3):
        b.box((hr * 1.5, lift + hr, hr * 1.2), (hx, hb + (lift + hr) / 2, z), "shell")
    y = hb + lift + hr * 1.5
    b.segment([hx, y, -length / 2 + hr * 1.5], [hx, y, length / 2 - hr * 1.5], hr, "handset",
              10)
    for z, part in ((length / 2 - hr * 1.5, "earpiece"), (-length / 2 + hr * 1.5, "handset")):
        b.ellipsoid((hr * 1.8, hr * 1.2, hr * 1.8), (hx, y - hr * 0.3, z), part,
                    subdivisions=1)
    # a coiled cord from the mouthpiece down to the base's side
    p0 = np.array([hx, y - hr, -length / 2 + hr])
    p1 = np.array([hx + depth * 0.15, hf * 0.5, -width / 2 - 0.02])
    ctrl = np.array([hx, y - hr, -width / 2 - rng.uniform(0.1, 0.2)])  # out, then down
    s = np.linspace(0, 1, 25)[:, None]
    path = (1 - s) ** 2 * p0 + 2 * s * (1 - s) * ctrl + s ** 2 * p1
    u = np.array([1.0, 0, 0])
    v = np.cross(p1 - p0, u)
    v /= np.linalg.norm(v)
    turn = 2 * np.pi * rng.uniform(5, 8) * s
    pts = path + 0.022 * (np.cos(turn) * u + np.sin(turn) * v)
    for q0, q1 in zip(pts[:-1], pts[1:]):
        b.segment(q0, q1, 0.006, "cord", 5)
