"""Cabinets (the doors and drawers face +X; up +Y; metres, the width along Z)."""

from __future__ import annotations

import numpy as np

from ss3d.data.procedural.builder import _Builder, _choice
from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.procedural.primitives import _tf
from ss3d.data.procedural.registry import register

PALETTE: dict[str, _PartStyle] = {
    "body": _PartStyle((0.08, 0.35, 0.62), "stripes"),
    "top": _PartStyle((0.02, 0.70, 0.55), "stripes"),
    "door": _PartStyle((0.55, 0.30, 0.85), "two_tone"),
    "drawer": _PartStyle((0.36, 0.45, 0.68)),
    "handle": _PartStyle((0.13, 0.75, 0.95)),
    "base": _PartStyle((0.00, 0.00, 0.15)),
}

_GAP = 0.006  # between two fronts
_FRONT_T = 0.02  # door and drawer front thickness


class _Front:
    """Adds door and drawer fronts (and their handles) onto the cabinet's front face."""

    def __init__(self, b: _Builder, x: float, handle: str, bar: float):
        self.b, self.x, self.handle, self.bar = b, x, handle, bar

    def _grip(self, y: float, z: float, horizontal: bool) -> None:
        b, x = self.b, self.x + _FRONT_T + 0.012
        if self.handle == "knob":
            b.ellipsoid((0.014, 0.014, 0.014), (x, y, z), "handle", subdivisions=1)
            return
        half = self.bar / 2
        p0, p1 = ((x, y, z - half), (x, y, z + half)) if horizontal else \
            ((x, y - half, z), (x, y + half, z))
        b.segment(p0, p1, 0.007, "handle", 6)
        if self.handle == "bar":  # standoffs at both ends
            for p in (p0, p1):
                b.segment((self.x + _FRONT_T, *p[1:]), p, 0.006, "handle", 4)

    def panel(self, y0: float, y1: float, z0: float, z1: float, part: str) -> None:
        h, w = y1 - y0 - _GAP, z1 - z0 - _GAP
        self.b.box((_FRONT_T, h, w), (self.x + _FRONT_T / 2, (y0 + y1) / 2, (z0 + z1) / 2), part,
                   axis=2 if w > h else 1)

    def drawers(self, y0: float, y1: float, z0: float, z1: float, rows: int, cols: int,
                graduated: bool) -> None:
        weights = np.linspace(1.4, 0.8, rows) if graduated else np.ones(rows)
        edges = y0 + np.r_[0, np.cumsum(weights)] / weights.sum() * (y1 - y0)
        zs = np.linspace(z0, z1, cols + 1)
        for r in range(rows):
            for c in range(cols):
                self.panel(edges[r], edges[r + 1], zs[c], zs[c + 1], "drawer")
                self._grip((edges[r] + edges[r + 1]) / 2, (zs[c] + zs[c + 1]) / 2, True)

    def doors(self, y0: float, y1: float, z0: float, z1: float, count: int) -> None:
        zs = np.linspace(z0, z1, count + 1)
        for k in range(count):
            self.panel(y0, y1, zs[k], zs[k + 1], "door")
            # the handle near the door's free edge: pairs meet in the middle
            edge = zs[k + 1] if k % 2 == 0 else zs[k]
            inward = -1 if k % 2 == 0 else 1
            if count == 1:
                edge, inward = zs[1], -1
            y = y0 + (y1 - y0) * (0.5 if y1 - y0 < 0.8 else 0.55)
            self._grip(y, edge + inward * 0.04, False)


@register("cabinet", PALETTE, core={"base", "body", "handle", "top"}, front=("handle",),
          top=("top",), bottom=("base",))
def _cabinet(b: _Builder, rng: np.random.Generator) -> None:
    """Cabinets: fronts ``doors`` (one to four, low sideboard to tall wardrobe), ``drawers``
    (a chest: two to six rows in one or two columns, equal or graduated), ``drawers_over_doors``
    (a row of drawers above doors) or ``doors_beside_drawers`` (a stack of drawers beside a
    door); base ``legs`` (thin, tapered, sometimes splayed), ``plinth`` (recessed) or ``feet``
    (four round feet); bar, rail or knob handles; the top overhangs or not.

    In metres (the normalisation removes the scale): width 0.4–2, height 0.4–2.1 (doors) or
    0.5–1.5, depth 0.3–0.65, base 0.04–0.3 high. Colours: light-wood body, mahogany top, pale
    blue doors, sage-green drawers, brass handles, black base.
    """
    fronts = _choice(rng, ["doors", "drawers", "drawers_over_doors", "doors_beside_drawers"])
    base = _choice(rng, ["legs", "plinth", "feet"], [0.4, 0.35, 0.25])
    handle = _choice(rng, ["bar", "rail", "knob"])
    width = rng.uniform(0.4, 2.0)
    height = rng.uniform(0.4, 2.1) if fronts == "doors" else rng.uniform(0.5, 1.5)
    depth = rng.uniform(0.3, 0.65)
    base_h = {"legs": rng.uniform(0.1, 0.3), "plinth": rng.uniform(0.04, 0.12),
              "feet": rng.uniform(0.04, 0.1)}[base]
    top_t = rng.uniform(0.02, 0.05)
    overhang = rng.uniform(0.0, 0.04) if rng.uniform() < 0.6 else 0.0
    b.variant.update(fronts=fronts, base=base, handle=handle, width=width, height=height,
                     depth=depth)
    body_h = height - base_h - top_t
    y0, y1 = base_h, base_h + body_h
    b.box((depth, body_h, width), (0, (y0 + y1) / 2, 0), "body", axis=2)
    b.box((depth + overhang, top_t, width + 2 * overhang), (overhang / 2, y1 + top_t / 2, 0),
          "top", axis=2)

    # fronts, inside a frame of the body's edges
    edge = rng.uniform(0.015, 0.04)
    fy0, fy1, fz0, fz1 = y0 + edge, y1 - edge, -width / 2 + edge, width / 2 - edge
    front = _Front(b, depth / 2, handle, min(rng.uniform(0.08, 0.3), 0.6 * (fz1 - fz0)))
    n_doors = max(1, min(4, int(round(width / rng.uniform(0.35, 0.6)))))
    cols = 2 if width > 1.0 and rng.uniform() < 0.6 else 1
    if fronts == "doors":
        front.doors(fy0, fy1, fz0, fz1, n_doors)
    elif fronts == "drawers":
        rows = int(np.clip(round(body_h / rng.uniform(0.15, 0.3)), 2, 6))
        front.drawers(fy0, fy1, fz0, fz1, rows, cols, rng.uniform() < 0.5)
    elif fronts == "drawers_over_doors":
        split = fy1 - min(rng.uniform(0.12, 0.22), (fy1 - fy0) * 0.4)
        front.drawers(split, fy1, fz0, fz1, 1, n_doors, False)
        front.doors(fy0, split, fz0, fz1, n_doors)
    else:
        frac = rng.uniform(0.3, 0.5)
        split = fz0 + (fz1 - fz0) * frac
        side = rng.uniform() < 0.5  # the drawers on the -Z or the +Z side
        dz = (fz0, split) if side else (fz1 - (split - fz0), fz1)
        oz = (split, fz1) if side else (fz0, fz1 - (split - fz0))
        rows = int(np.clip(round((fy1 - fy0) / rng.uniform(0.15, 0.3)), 2, 5))
        front.drawers(fy0, fy1, *dz, rows, 1, False)
        front.doors(fy0, fy1, *oz, 1 if oz[1] - oz[0] < 0.7 else 2)

    # base
    if base == "plinth":
        rec = rng.uniform(0.02, 0.06)
        b.box((depth - 2 * rec, base_h, width - 2 * rec), (-rec * 0.5, base_h / 2, 0), "base",
              axis=2)
    else:
        r = rng.uniform(0.012, 0.025) if base == "legs" else rng.uniform(0.03, 0.05)
        splay = rng.uniform(0.0, 0.05) if base == "legs" and rng.uniform() < 0.5 else 0.0
        inset = r * 2 + rng.uniform(0.0, 0.04)
        xs, zs = depth / 2 - inset, width / 2 - inset
        for sx in (-1, 1):
            for sz in (-1, 1):
                top_p = np.array([sx * xs, y0 + 0.005, sz * zs])
                if base == "legs":
                    foot = top_p * [1, 0, 1] + [sx * splay, 0, sz * splay]
                    b.segment(foot, top_p, r, "base", 8)
                else:
                    b.revolve(np.array([[0, 0], [r * 0.8, 0], [r, base_h * 0.5],
                                        [r * 0.85, base_h + 0.005], [0, base_h + 0.005]]),
                              "base", _tf(top_p * [1, 0, 1]), sections=12)

