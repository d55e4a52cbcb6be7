"""Fish (front +X: the head and eyes; the tail fin at -X; up +Y: the dorsal fin on top, the
ventral fins below; body length 1)."""

from __future__ import annotations

import numpy as np

from ss3d.data.procedural.builder import _Builder, _choice
from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.procedural.primitives import (
    _PLANFORM,
    Mesh,
    _align_z,
    _prism,
    _revolve,
    _rot,
    _tf,
    _unit_cylinder,
    _unit_sphere,
)
from ss3d.data.procedural.registry import register

PALETTE: dict[str, _PartStyle] = {
    "body": _PartStyle((0.58, 0.45, 0.75), "stripes"),
    "eye": _PartStyle((0.00, 0.00, 0.08)),
    "tail": _PartStyle((0.14, 0.85, 0.95), "stripes"),
    "dorsal": _PartStyle((0.02, 0.80, 0.85)),
    "ventral": _PartStyle((0.32, 0.65, 0.70)),
    "pectoral": _PartStyle((0.80, 0.35, 0.80)),
    "spine": _PartStyle((0.00, 0.00, 0.95)),
}

# body shapes (length 1): half-height and half-width of the body, the position of its
# thickest point (0 tail, 1 nose), the tail stalk's radius (× the thickest), tail length
_SHAPES: dict[str, dict[str, tuple[float, float]]] = {
    "tuna": {"height": (0.07, 0.12), "width": (0.06, 0.1), "peak": (0.45, 0.6),
             "stalk": (0.06, 0.12), "tail": (0.22, 0.38)},
    "angel": {"height": (0.3, 0.45), "width": (0.05, 0.08), "peak": (0.55, 0.7),
              "stalk": (0.2, 0.3), "tail": (0.12, 0.22)},
    "eel": {"height": (0.025, 0.05), "width": (0.02, 0.04), "peak": (0.6, 0.8),
            "stalk": (0.25, 0.4), "tail": (0.04, 0.08)},
    "puffer": {"height": (0.3, 0.42), "width": (0.28, 0.4), "peak": (0.45, 0.55),
               "stalk": (0.2, 0.3), "tail": (0.1, 0.18)},
    "carp": {"height": (0.22, 0.32), "width": (0.12, 0.18), "peak": (0.55, 0.65),
             "stalk": (0.25, 0.35), "tail": (0.35, 0.7)},
}


@register("fish", PALETTE, core={"body", "dorsal", "eye", "tail", "ventral"}, front=("eye",),
          back=("tail",), top=("dorsal",), bottom=("ventral",))
def _fish(b: _Builder, rng: np.random.Generator) -> None:
    """Fish: ``tuna`` (fusiform, a forked or lunate tail, a small swept dorsal fin),
    ``angel`` (a tall flat disc with sail-like dorsal and anal fins and long pelvic streamers),
    ``eel`` (long and thin, swimming in waves, fins running along the back and belly to a
    pointed tail), ``puffer`` (spiny, small fins; inflated into a ball or deflated) and
    ``carp`` (goldfish-like, a fan or forked tail and a long rounded dorsal fin); the body
    straight or bent as in a stroke.

    Length 1; body half-height 0.025–0.45, half-width 0.02–0.4, tail fin 0.04–0.6 long; the
    body bent sideways up to 0.14 at the tail (an eel: 0.05–0.16 in one to two waves).
    Colours: steel-blue striped body, black eyes, a yellow tail, a red dorsal fin, green
    ventral (pelvic and anal) fins, violet pectoral fins, white spines.
    """
    shape = _choice(rng, list(_SHAPES), [0.25, 0.2, 0.15, 0.15, 0.25])
    f = _SHAPES[shape]
    h, w, peak, stalk, tail_len = (rng.uniform(*f[k]) for k in
                                   ("height", "width", "peak", "stalk", "tail"))
    blunt = rng.uniform(0.35, 0.7) if shape != "eel" else 0.3
    inflated = shape == "puffer" and rng.uniform() < 0.6
    if shape == "puffer" and not inflated:  # deflated: an ordinary, stubby fish
        h, w = h * rng.uniform(0.4, 0.55), w * rng.uniform(0.35, 0.5)
    tail = {"tuna": _choice(rng, ["forked", "lunate"]), "angel": "fan", "eel": "pointed",
            "puffer": "fan", "carp": _choice(rng, ["fan", "forked"])}[shape]
    if shape == "eel":
        amp, waves = rng.uniform(0.05, 0.16), rng.uniform(0.8, 2.2)
    else:
        amp, waves = rng.uniform(0.0, 0.14), rng.uniform(0.4, 0.8)
    b.variant.update(shape=shape, tail=tail, height=h, bend=amp)
    if shape == "puffer":
        b.variant["puffer"] = "inflated" if inflated else "deflated"

    def wave(x: np.ndarray) -> np.ndarray:
        """The lateral bend: zero at the head, growing towards the tail."""
        s = 0.5 - x
        return amp * np.sqrt(s) * np.sin(np.pi * waves * s)

    def add(mesh: Mesh, part: str, m: np.ndarray, axis: int = 0) -> None:
        v = mesh[0] @ m[:3, :3].T + m[:3, 3]
        v[:, 2] += wave(v[:, 0])
        b.add((v, mesh[1]), part, axis=axis)

    # the body: a solid of revolution along X, its section an ellipse h × w
    t = np.linspace(0, 1, 16)
    r = np.where(t < peak, stalk + (1 - stalk) * np.sin(np.pi / 2 * t / peak),
                 np.cos(np.pi / 2 * np.clip((t - peak) / (1 - peak), 0, 1)) ** blunt)

    def radius(x: np.ndarray | float) -> np.ndarray:
        return np.interp(np.asarray(x) + 0.5, t, r)

    profile = np.r_[[[0, -0.5]], np.c_[r[:-1], t[:-1] - 0.5], [[0, 0.5]]]
    body_tf = np.diag([1.0, h, w, 1.0]) @ _tf(rotation=_rot("z", -90))
    add(_revolve(profile, 16), "body", body_tf, axis=0)

    # eyes on both sides of the head
    xe = 0.5 - rng.uniform(0.08, 0.14) * (0.5 if shape == "eel" else 1.0)
    re = float(radius(xe))
    eye_r = float(np.clip(min(h, w) * rng.uniform(0.2, 0.35), 0.012, 0.04))
    for z in (-1, 1):
        add(_unit_sphere(1), "eye", _tf((xe, re * h * 0.4, z * re * w * 0.88)) @
            np.diag([eye_r, eye_r, eye_r * 0.6, 1]))

    def fin(xa: float, xb: float, height: float, sweep: float, style: str,
            sign: float) -> np.ndarray:
        """A fin outline (x, y) on the back (``sign`` 1) or belly (-1) from ``xa`` (front)
        back to ``xb``."""
        xs = np.linspace(xa, xb, 6)
        base = np.c_[xs, sign * radius(xs) * h * 0.8]
        if style == "long":  # a low strip running along the body
            s = np.linspace(0, 1, 6)
            top = base + np.c_[-sweep * s, sign * height * np.minimum(1, s * 4)]
            return np.r_[base, top[::-1]]
        if style == "round":
            s = np.linspace(0, 1, 6)
            top = base + np.c_[-sweep * s, sign * height * np.sin(np.pi * (0.15 + 0.75 * s))]
            return np.r_[base, top[::-1]]
        tip = np.array([[xb - sweep, sign * (radius(xb) * h + height)]])
        return np.r_[base, tip]

    fin_t = rng.uniform(0.01, 0.02)
    # the dorsal fin on top; ventral fins below: the anal fin and a pair of pelvic fins
    if shape == "eel":
        dorsal = fin(0.15, -0.5, h * rng.uniform(0.6, 1.2), 0.03, "long", 1)
        anal = fin(-0.05, -0.5, h * rng.uniform(0.5, 1.0), 0.03, "long", -1)
    elif shape == "angel":
        dorsal = fin(0.15, -0.2, rng.uniform(0.3, 0.6), rng.uniform(0.2, 0.4), "sail", 1)
        anal = fin(0.1, -0.2, rng.uniform(0.25, 0.5), rng.uniform(0.15, 0.35), "sail", -1)
    elif shape == "carp":
        dorsal = fin(0.15, -0.3, rng.uniform(0.1, 0.2), 0.05, "round", 1)
        anal = fin(-0.15, -0.35, rng.uniform(0.05, 0.1), 0.08, "tri", -1)
    else:
        big = 2.0 if shape == "tuna" else 0.6
        x0 = rng.uniform(0.0, 0.15)
        dorsal = fin(x0, x0 - rng.uniform(0.1, 0.2), rng.uniform(0.05, 0.1) * big,
                     rng.uniform(0.05, 0.15), "tri", 1)
        anal = fin(-0.2, -0.32, rng.uniform(0.04, 0.08) * big, 0.08, "tri", -1)
    add(_prism(dorsal, fin_t), "dorsal", np.eye(4))
    add(_prism(anal, fin_t), "ventral", np.eye(4))
    if shape != "eel":
        xp = rng.uniform(0.05, 0.2)
        long = rng.uniform(0.3, 0.5) if shape == "angel" else rng.uniform(0.05, 0.1)
        for z in (-1, 1):
            base_y = -radius(xp) * h * 0.8
            pelvic = np.array([[xp, base_y], [xp - 0.06, base_y], [xp - 0.06 - long * 0.5,
                                                                  base_y - long]])
            add(_prism(pelvic, fin_t), "ventral", _tf((0, 0, z * w * radius(xp) * 0.4),
                                                      _rot("x", -z * 10)))
        # pectoral fins behind the gills, angled back and down
        xq = xe - rng.uniform(0.1, 0.16)
        span = rng.uniform(0.06, 0.14) * {"puffer": 1.5, "tuna": 1.8}.get(shape, 1.0)
        for z in (-1, 1):
            outline = np.array([[0, 0], [0.05, z * 0.01], [-span * 0.6, z * span],
                                [-span * 0.9, z * span * 0.6]])
            m = _tf((xq, -radius(xq) * h * 0.2, z * radius(xq) * w * 0.85),
                    _rot("x", z * rng.uniform(20, 50)) @ _PLANFORM)
            add(_prism(outline, fin_t), "pectoral", m)

    # the tail fin behind the stalk
    stalk_h = stalk * h
    xt = -0.5 + 0.03
    spread = tail_len * (rng.uniform(0.8, 1.2) if shape == "tuna" else rng.uniform(0.5, 0.9))
    if tail in ("forked", "lunate"):
        notch = 0.45 if tail == "forked" else 0.75
        spread *= 1.0 if tail == "forked" else 1.25
        outline = [[xt, stalk_h], [-0.5 - tail_len, spread], [-0.5 - tail_len * notch, 0],
                   [-0.5 - tail_len, -spread], [xt, -stalk_h]]
    elif tail == "fan":
        a = np.linspace(-0.9, 0.9, 9)
        outline = np.r_[[[xt, -stalk_h]],
                        np.c_[-0.5 - tail_len * np.cos(a), spread * np.sin(a) + stalk_h *
                              np.sign(a) * 0.5], [[xt, stalk_h]]]
    else:  # pointed
        outline = [[xt, stalk_h * 1.5], [-0.5 - tail_len, 0], [xt, -stalk_h * 1.5]]
    add(_prism(np.array(outline, float), fin_t), "tail", np.eye(4))

    if shape == "puffer":  # spines all over the body
        count = int(rng.integers(30, 50))
        length = rng.uniform(0.03, 0.07) * (1.0 if inflated else 0.4)
        xs = rng.uniform(-0.35, 0.35, count)
        ang = rng.uniform(0, 2 * np.pi, count)
        cyl = _unit_cylinder(4)
        for x, a in zip(xs, ang, strict=True):
            rr = float(radius(x))
            p = np.array([x, rr * h * np.sin(a), rr * w * np.cos(a)])
            n = np.array([0.3 * (x > 0) - 0.15, np.sin(a) / h, np.cos(a) / w])
            n /= np.linalg.norm(n)
            m = _tf(p + n * length * 0.4, _align_z(n)) @ np.diag([0.008, 0.008, length, 1])
            add(cyl, "spine", m, axis=2)
