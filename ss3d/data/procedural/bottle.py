"""Bottles (front +X: the label; up +Y: the cap on top; height 1).

Also holds two helpers the other vessels (``mug``, ``bowl``) use: :func:`_wrapped_patch`, a
label or decoration that follows a surface of revolution on its +X side, and
:func:`_loop_handle`, a bent round bar.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ss3d.data.procedural.builder import _Builder, _choice
from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.procedural.primitives import Mesh, _outward
from ss3d.data.procedural.registry import register

PALETTE: dict[str, _PartStyle] = {
    "body": _PartStyle((0.40, 0.55, 0.45)),
    "label": _PartStyle((0.13, 0.20, 0.95), "stripes", (0.0, 0.75, 0.60)),
    "cap": _PartStyle((0.98, 0.80, 0.75)),
    "handle": _PartStyle((0.62, 0.45, 0.70)),
}


def _sheet(outer: np.ndarray, inner: np.ndarray) -> Mesh:
    """A closed thick sheet between two ``(rows, cols, 3)`` grids of points."""
    m, n = outer.shape[:2]
    v = np.concatenate([outer.reshape(-1, 3), inner.reshape(-1, 3)])
    idx = np.arange(m * n).reshape(m, n)
    a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
    quads = np.stack([a, b, c, d], -1).reshape(-1, 4)
    faces = [quads[:, [0, 1, 2]], quads[:, [0, 2, 3]],
             m * n + quads[:, [0, 2, 1]], m * n + quads[:, [0, 3, 2]]]
    # the boundary loop in the direction of the outer faces' boundary edges
    loop = np.concatenate([idx[:, 0], idx[-1, 1:], idx[-2::-1, -1], idx[0, -2:0:-1]])
    p, q = loop, np.roll(loop, -1)
    faces += [np.c_[q, p, m * n + p], np.c_[q, m * n + p, m * n + q]]
    return _outward(v, np.concatenate(faces))


def _wrapped_patch(b: _Builder, part: str, radius_at: Callable[[np.ndarray], np.ndarray],
                   y0: float, y1: float, half_angle: float, thickness: float,
                   transform: np.ndarray | None = None, rows: int = 4, cols: int = 10) -> None:
    """A patch on the +X side of the surface of revolution ``r = radius_at(y)`` (about +Y)
    over ``y0..y1`` and ``±half_angle`` (radians), standing ``thickness`` proud of it."""
    y = np.linspace(y0, y1, rows)
    a = np.linspace(-half_angle, half_angle, cols)
    r = np.asarray(radius_at(y), float)[:, None]

    def grid(rr: np.ndarray) -> np.ndarray:
        return np.stack([rr * np.cos(a), np.broadcast_to(y[:, None], rr.shape),
                         rr * np.sin(a)], -1)

    ones = np.ones((rows, cols))
    b.add(_sheet(grid(ones * (r + thickness)), grid(ones * (r - thickness))), part, transform,
          axis=2)


def _loop_handle(b: _Builder, part: str, p_top: Sequence[float], p_bottom: Sequence[float],
                 outward: Sequence[float], reach: float, radius: float, squareness: float = 0.0,
                 count: int = 9) -> None:
    """A bent bar from ``p_top`` to ``p_bottom`` bulging ``reach`` along ``outward``
    (``squareness`` 0: a round arc, 1: nearly a rectangle)."""
    p0, p1, out = (np.asarray(p, float) for p in (p_top, p_bottom, outward))
    s = np.linspace(0, 1, count)[:, None]
    bulge = np.sin(np.pi * s) ** (1.0 - 0.8 * squareness)
    points = p0 + (p1 - p0) * s + out * reach * bulge
    for q0, q1 in zip(points[:-1], points[1:], strict=True):
        d = (q1 - q0) / max(np.linalg.norm(q1 - q0), 1e-9) * radius * 0.6
        b.segment(q0 - d, q1 + d, radius, part, 8)


# bottle styles (height 1): body radius, body height (to the shoulder), shoulder length,
# neck radius (× body radius), cap height
_STYLES: dict[str, dict[str, tuple[float, float]]] = {
    "wine": {"radius": (0.09, 0.2), "body": (0.35, 0.65), "shoulder": (0.05, 0.28),
             "neck": (0.27, 0.36), "cap": (0.08, 0.16)},
    "water": {"radius": (0.12, 0.27), "body": (0.5, 0.78), "shoulder": (0.08, 0.16),
              "neck": (0.3, 0.45), "cap": (0.04, 0.07)},
    "milk": {"radius": (0.22, 0.34), "body": (0.4, 0.6), "shoulder": (0.15, 0.3),
             "neck": (0.45, 0.7), "cap": (0.04, 0.08)},
    "flask": {"radius": (0.25, 0.42), "body": (0.02, 0.08), "shoulder": (0.45, 0.65),
              "neck": (0.2, 0.32), "cap": (0.08, 0.14)},
    "hip": {"radius": (0.28, 0.4), "body": (0.55, 0.7), "shoulder": (0.06, 0.12),
            "neck": (0.16, 0.24), "cap": (0.06, 0.1)},
}


@register("bottle", PALETTE, core={"body", "cap", "label"}, front=("label",), top=("cap",))
def _bottle(b: _Builder, rng: np.random.Generator) -> None:
    """Bottles: ``wine`` (long neck, a foil capsule; sharp or sloping shoulders), ``water``
    (plastic, often waisted, a short screw cap), ``milk`` (wide glass body, broad neck,
    a jug handle at the back on some), ``flask`` (conical Erlenmeyer flask with a stopper)
    and ``hip`` (a hip flask flattened front to back).

    Height 1; body radius 0.09–0.42, body height 0.02–0.78 (the rest shoulder and neck), neck
    radius 0.16–0.7 × the body's. A label wraps ±35–80° around the +X side. Colours: green
    glass, a cream label, a red cap, a blue handle.
    """
    style = _choice(rng, list(_STYLES))
    ranges = _STYLES[style]
    radius, body_h, shoulder, neck_k, cap_h = (
        rng.uniform(*ranges[k]) for k in ("radius", "body", "shoulder", "neck", "cap"))
    neck_r = radius * neck_k
    waist = rng.uniform(0.04, 0.15) if style == "water" and rng.uniform() < 0.6 else 0.0
    sharp = rng.uniform(0, 1)  # shoulder shape: 0 sloping (cosine), 1 round (quarter ellipse)
    top = 1.0 - cap_h * 0.6
    b.variant.update(style=style, shoulder_shape="sharp" if sharp > 0.5 else "sloping",
                     radius=radius, body=body_h)

    # the outline (radius, y), bottom to top
    ys = np.linspace(0.02, body_h, 12)
    rs = radius * (1 - waist * np.sin(np.pi * ys / body_h) ** 2)
    if style == "flask":
        ys, rs = np.array([0.02, body_h]), np.array([radius, radius])
    s = np.linspace(0, 1, 9)[1:]
    if style == "flask":
        fall = 1 - s
    else:
        fall = sharp * np.sqrt(1 - s ** 2) + (1 - sharp) * (1 + np.cos(np.pi * s)) / 2
    shoulder_y = body_h + shoulder * s
    neck_top = max(top, shoulder_y[-1] + 0.03)
    outline = np.r_[[[0, 0], [radius * 0.9, 0]], np.c_[rs, ys],
                    np.c_[neck_r + (radius - neck_r) * fall, shoulder_y],
                    [[neck_r, neck_top - 0.025], [neck_r * 1.12, neck_top - 0.02],
                     [neck_r * 1.12, neck_top], [0, neck_top]]]
    flat = np.eye(4)
    if style == "hip":  # flattened front to back
        flat[0, 0] = rng.uniform(0.3, 0.45)
    b.revolve(outline, "body", flat, sections=24)

    # the label on the +X side: on the body, or on the cone of a flask
    if style == "flask":
        y0 = rng.uniform(0.05, 0.12)
        y1 = y0 + rng.uniform(0.15, 0.3)
        cone_y, cone_r = shoulder_y, neck_r + (radius - neck_r) * fall
        cone_y, cone_r = np.r_[body_h, cone_y], np.r_[radius, cone_r]

        def radius_at(y: np.ndarray) -> np.ndarray:
            return np.interp(y, cone_y, cone_r)
    else:
        y0 = body_h * rng.uniform(0.12, 0.35)
        y1 = body_h * rng.uniform(0.7, 0.95)

        def radius_at(y: np.ndarray) -> np.ndarray:
            return np.interp(y, ys, rs)
    half = np.radians(rng.uniform(35, 80))
    _wrapped_patch(b, "label", radius_at, y0, y1, half, 0.006, flat, rows=6)

    # the cap: a foil capsule, a screw cap, a stopper
    if style == "flask":  # a tapered stopper
        cap = np.array([[0, neck_top - cap_h], [neck_r * 0.9, neck_top - cap_h],
                        [neck_r * 1.3, neck_top + cap_h * 0.5], [0, neck_top + cap_h * 0.5]])
        b.revolve(cap, "cap", flat, sections=16)
    else:
        cap_r = neck_r * (1.16 if style == "wine" else rng.uniform(1.2, 1.45))
        b.cylinder(cap_r, cap_h, (0, neck_top - cap_h * 0.4, 0), "cap", (0, 1, 0), 16)
        if style == "water" and rng.uniform() < 0.5:  # a sports cap
            b.variant["sports_cap"] = "yes"
            b.cylinder(cap_r * 0.5, cap_h * 0.8, (0, neck_top + cap_h * 0.5, 0), "cap",
                       (0, 1, 0), 12)
    if style == "milk" and rng.uniform() < 0.55:  # a jug handle at the back
        b.variant["handle"] = "yes"
        y_top = body_h + shoulder * 0.6
        y_bot = body_h * rng.uniform(0.2, 0.5)
        r_top = np.interp(0.6, s, neck_r + (radius - neck_r) * fall)
        with b.frame(flat):
            _loop_handle(b, "handle", (-r_top * 0.95, y_top, 0),
                         (-radius * 0.95, y_bot, 0), (-1, 0, 0), rng.uniform(0.1, 0.2),
                         rng.uniform(0.02, 0.035), rng.uniform(0, 1))
