"""Bookshelves (the open shelves face +X, the back panel is at -X; up +Y; metres, the width
along Z)."""

from __future__ import annotations

import numpy as np

from ss3d.data.procedural.builder import _Builder, _choice
from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.procedural.registry import register

PALETTE: dict[str, _PartStyle] = {
    "frame": _PartStyle((0.07, 0.50, 0.50), "stripes"),
    "shelf": _PartStyle((0.11, 0.25, 0.88)),
    "back_panel": _PartStyle((0.58, 0.25, 0.45)),
    "book": _PartStyle((0.98, 0.70, 0.80), "stripes", (0.12, 0.25, 0.95)),
    "base": _PartStyle((0.00, 0.00, 0.16)),
}


def _books(b: _Builder, rng: np.random.Generator, y: float, gap: float, z0: float, z1: float,
           front: float, depth: float, keep: bool = False) -> None:
    """A run or two of books standing on a shelf at height ``y`` (``gap`` of space above it),
    their spines flush with the shelf's front edge ``front``; some shelves stay empty (not
    with ``keep``)."""
    if (rng.uniform() < 0.2 and not keep) or gap < 0.08:
        return
    span = z1 - z0
    z = z0 + rng.uniform(0.0, 0.3) * span
    end = z + span * rng.uniform(0.3, 0.7)
    while z < min(end, z1 - 0.02):
        t = min(rng.uniform(0.025, 0.06), z1 - z)
        h = gap * rng.uniform(0.55, 0.9)
        d = depth * rng.uniform(0.55, 0.85)
        b.box((d, h, t - 0.002), (front - 0.01 - d / 2, y + h / 2, z + t / 2), "book", axis=1)
        z += t
    if rng.uniform() < 0.3 and z1 - end > 0.25:  # a stack lying flat
        w = rng.uniform(0.15, 0.22)
        d = depth * rng.uniform(0.5, 0.8)
        for k in range(int(rng.integers(2, 5))):
            bt = rng.uniform(0.02, 0.04)
            if (k + 1) * 0.04 > gap * 0.8:
                break
            b.box((d, bt - 0.002, w),
                  (front - 0.01 - d / 2, y + bt / 2 + k * 0.04, z1 - 0.03 - w / 2), "book", axis=2)


@register("bookshelf", PALETTE, core={"base", "book", "shelf"}, front=("book",),
          back=("back_panel",), bottom=("base",))
def _bookshelf(b: _Builder, rng: np.random.Generator) -> None:
    """Bookshelves: layout ``standard`` (one bay, or two with a divider), ``cubby`` (a grid of
    near-square cells), ``stepped`` (bays of falling heights, a staircase) or ``open_frame``
    (thin corner posts, no sides, cross braces at the back or not); a back panel on most of the
    boarded ones; base ``plinth`` or ``feet``; books standing (and some lying) on most shelves,
    flush with the front.

    In metres (the normalisation removes the scale): width 0.4–2, height 0.5–2.2, depth
    0.22–0.45, boards 0.015–0.035 thick, shelves 0.22–0.42 apart. Colours: wooden frame, pale
    shelves, grey-blue back panel, red books with cream bands, black base.
    """
    layout = _choice(rng, ["standard", "cubby", "stepped", "open_frame"], [0.35, 0.25, 0.2, 0.2])
    base = _choice(rng, ["plinth", "feet"], [0.6, 0.4])
    width = rng.uniform(0.4, 2.0) if layout != "stepped" else rng.uniform(0.9, 2.0)
    height = rng.uniform(0.5, 2.2)
    depth = rng.uniform(0.22, 0.45)
    t = rng.uniform(0.015, 0.035)
    base_h = rng.uniform(0.03, 0.1)
    backed = layout != "open_frame" and rng.uniform() < 0.8
    b.variant.update(layout=layout, base=base, back="panel" if backed else "open", width=width,
                     height=height, depth=depth)
    front = depth / 2
    back_x = -depth / 2 + (0.01 if backed else 0.0)

    if layout == "open_frame":
        b.variant["base"] = "feet"
        shelves = int(np.clip(round(height / rng.uniform(0.25, 0.45)), 2, 7))
        r = rng.uniform(0.008, 0.018)
        xs, zs = depth / 2 - r, width / 2 - r
        for sx in (-1, 1):
            for sz in (-1, 1):
                b.segment((sx * xs, base_h, sz * zs), (sx * xs, height, sz * zs), r, "frame", 8)
                b.ellipsoid((r * 1.6, base_h / 2 + 0.003, r * 1.6), (sx * xs, base_h / 2, sz * zs),
                            "base", subdivisions=1)
        ys = np.linspace(base_h + 0.03, height - t / 2, shelves)
        for k, y in enumerate(ys):
            b.box((depth, t, width), (0, y, 0), "shelf", axis=2)
            if k + 1 < len(ys):
                _books(b, rng, y + t / 2, ys[k + 1] - y - t, -zs + r, zs - r, front, depth, k == 0)
        if rng.uniform() < 0.6:  # cross braces at the back, one X per gap
            b.variant["braces"] = "yes"
            for y0, y1 in zip(ys[:-1], ys[1:], strict=True):
                for s in (-1, 1):
                    b.segment((-xs, y0, s * zs), (-xs, y1, -s * zs), r * 0.4, "back_panel", 4)
        return

    # bays along Z: (z0, z1, height of the bay's top)
    if layout == "standard":
        n = 2 if width > 1.1 and rng.uniform() < 0.6 else 1
        heights = [height] * n
    elif layout == "cubby":
        cell = rng.uniform(0.28, 0.42)
        n = max(2, int(round(width / cell)))
        heights = [height] * n
    else:
        n = int(rng.integers(2, 5))
        low = height * rng.uniform(0.25, 0.5)
        heights = list(np.linspace(height, low, n))
        if rng.uniform() < 0.5:
            heights = heights[::-1]
    zs = np.linspace(-width / 2, width / 2, n + 1)
    gap = rng.uniform(0.22, 0.42) if layout != "cubby" else (zs[1] - zs[0])
    bottom = base_h + t / 2
    tallest = int(np.argmax(heights))
    for k in range(n + 1):  # the vertical boards: sides and dividers
        top = max(heights[max(k - 1, 0)], heights[min(k, n - 1)])
        zk = np.clip(zs[k], -width / 2 + t / 2, width / 2 - t / 2)
        b.box((depth, top - base_h, t), (0, (top + base_h) / 2, zk), "frame", axis=1)
    for k in range(n):
        z0, z1 = zs[k] + t / 2, zs[k + 1] - t / 2
        if k == 0:
            z0 += t / 2
        if k == n - 1:
            z1 -= t / 2
        top = heights[k] - t / 2
        b.box((depth, t, z1 - z0), (0, top, (z0 + z1) / 2), "frame", axis=2)
        b.box((depth - 0.01, t, z1 - z0), (0.005, bottom, (z0 + z1) / 2), "shelf", axis=2)
        count = max(int(round((top - bottom) / gap)), 1)
        ys = np.linspace(bottom, top, count + 1)
        for j, y in enumerate(ys[:-1]):
            if j > 0:
                b.box((front - back_x, t, z1 - z0), ((front + back_x) / 2, y, (z0 + z1) / 2),
                      "shelf", axis=2)
            _books(b, rng, y + t / 2, ys[j + 1] - y - t, z0, z1, front, front - back_x,
                   k == tallest and j == 0)
        if backed:
            b.box((0.01, heights[k] - base_h, zs[k + 1] - zs[k]),
                  (-depth / 2 + 0.005, (heights[k] + base_h) / 2, (zs[k] + zs[k + 1]) / 2),
                  "back_panel", axis=1)

    if base == "plinth":
        rec = rng.uniform(0.0, 0.03)
        b.box((depth - rec, base_h, width - 2 * rec), (-rec / 2, base_h / 2, 0), "base", axis=2)
    else:
        r = rng.uniform(0.02, 0.04)
        for sx in (-1, 1):
            for z in (zs[0] + r + t, zs[-1] - r - t):
                b.cylinder(r, base_h, (sx * (depth / 2 - r - 0.01), base_h / 2, z), "base",
                           (0, 1, 0), 10)
