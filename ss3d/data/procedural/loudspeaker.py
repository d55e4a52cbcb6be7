"""Loudspeakers (front +X: the baffle with its drivers and port; the terminal plate at -X;
up +Y, the feet, plinth or stand at the bottom; cabinet width 1)."""

from __future__ import annotations

import numpy as np

from ss3d.data.procedural.builder import _Builder, _choice, _weighted
from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.procedural.primitives import _rot, _tf
from ss3d.data.procedural.registry import register

PALETTE: dict[str, _PartStyle] = {
    "cabinet": _PartStyle((0.07, 0.65, 0.50), "stripes"),
    "baffle": _PartStyle((0.62, 0.45, 0.30)),
    "woofer": _PartStyle((0.00, 0.00, 0.78)),
    "tweeter": _PartStyle((0.13, 0.70, 0.85)),
    "port": _PartStyle((0.00, 0.00, 0.04)),
    "foot": _PartStyle((0.50, 0.35, 0.60)),
    "terminal": _PartStyle((0.00, 0.80, 0.80)),
}

# cabinet styles: height, depth (width 1), number of woofers, woofer radius, foot types
_STYLES: dict[str, dict] = {
    "bookshelf": {"height": (1.2, 1.9), "depth": (0.8, 1.4), "woofers": (1, 1),
                  "woofer": (0.3, 0.4), "feet": ["bun", "pads", "none"]},
    "tower": {"height": (3.0, 5.0), "depth": (1.0, 1.6), "woofers": (2, 4),
              "woofer": (0.28, 0.38), "feet": ["plinth", "spikes"]},
    "center": {"height": (0.3, 0.45), "depth": (0.3, 0.5), "woofers": (2, 2),
               "woofer": (0.1, 0.15), "feet": ["pads", "bun"]},
    "subwoofer": {"height": (0.85, 1.2), "depth": (0.85, 1.2), "woofers": (1, 1),
                  "woofer": (0.36, 0.44), "feet": ["spikes", "bun", "pads"]},
    "on_stand": {"height": (1.2, 1.6), "depth": (0.8, 1.2), "woofers": (1, 1),
                 "woofer": (0.3, 0.4), "feet": ["stand"]},
}


def _woofer(b: _Builder, radius: float, centre: np.ndarray) -> None:
    """A cone driver (dust cap, cone, surround) facing +X, its back at ``centre``."""
    d = radius * 0.35
    profile = np.array([[0, 0.32 * d], [0.22 * radius, 0.2 * d], [0.28 * radius, 0.08 * d],
                        [0.82 * radius, 0.55 * d], [0.92 * radius, 0.75 * d],
                        [radius, 0.6 * d], [radius, 0.0], [0, 0.0]])
    b.revolve(profile, "woofer", _tf(centre, _rot("z", -90)), sections=20)


@register("loudspeaker", PALETTE,
          core={"baffle", "cabinet", "foot", "terminal", "woofer"},
          front=("baffle", "woofer", "tweeter"), back=("terminal",), bottom=("foot",))
def _loudspeaker(b: _Builder, rng: np.random.Generator) -> None:
    """Loudspeakers: ``bookshelf`` (one woofer under a tweeter), ``tower`` (two to four
    woofers, on a plinth or spikes), ``center`` (wide and low, the tweeter between two
    woofers), ``subwoofer`` (near-cubic, one big woofer) and ``on_stand`` (a bookshelf box on
    a pillar stand); cabinets ``box``, ``tapered`` (the top narrower in depth) or ``lute``
    (rounded back); the port (one or two) below or above the drivers or absent; feet ``bun``,
    ``pads``, ``spikes``, ``plinth`` or none.

    Width 1, height 0.3–5 (style ranges), depth 0.3–1.6, woofer radius 0.1–0.44 of the
    width. Colours: walnut cabinet, dark-blue baffle, light-grey woofers, gold tweeter, black
    port, steel-blue feet and stand, red terminal plate with binding posts at the back.
    """
    style = _weighted(rng, {"bookshelf": 1.2, "tower": 1.0, "center": 0.7, "subwoofer": 0.7,
                            "on_stand": 0.7})
    s = _STYLES[style]
    width = 1.0
    height, depth = rng.uniform(*s["height"]), rng.uniform(*s["depth"])
    shape = _choice(rng, ["box", "box", "tapered", "lute"])
    feet = _choice(rng, s["feet"])
    n_woofers = int(rng.integers(s["woofers"][0], s["woofers"][1] + 1))
    b.variant.update(style=style, shape=shape, feet=feet, height=height, depth=depth)

    # the support under the cabinet; y0 is the cabinet's bottom
    y0 = _feet(b, rng, feet, width, depth)
    # the cabinet: a side profile (x, y) extruded across, or a planform with a rounded back
    x0, x1 = -depth / 2, depth / 2
    if shape == "lute":
        a = np.linspace(-np.pi / 2, np.pi / 2, 11)
        back = np.c_[x0 + depth * 0.45 * (1 - np.cos(a)), width / 2 * np.sin(a)]
        outline = np.r_[[[x1, -width / 2]], back, [[x1, width / 2]]]
        b.planform(outline, height, "cabinet", _tf((0, y0 + height / 2, 0)))
    else:
        top_back = x0 + (depth * rng.uniform(0.25, 0.6) if shape == "tapered" else 0.0)
        profile = np.array([[x0, y0], [x1, y0], [x1, y0 + height], [top_back, y0 + height],
                            [x0, y0 + height * 0.45]])
        b.prism(profile, width, "cabinet", axis=1)
    bt = 0.02
    b.box((bt, height * 0.97, width * 0.97), (x1 + bt / 2, y0 + height / 2, 0), "baffle",
          axis=2)
    face = x1 + bt

    # drivers and ports on the baffle
    port = _choice(rng, ["below", "above", "none"], [0.5, 0.25, 0.25])
    n_ports = 2 if rng.uniform() < 0.3 else 1
    rw = rng.uniform(*s["woofer"]) if style != "center" else height * rng.uniform(0.33, 0.42)
    rt = min(rw * rng.uniform(0.25, 0.4), 0.12)
    rp = rw * rng.uniform(0.25, 0.4)
    b.variant["port"] = port
    if style == "center":  # woofers left and right of the tweeter
        yc = y0 + height / 2
        span = width / 2 - rw * 1.2
        for z in (-span, span):
            _woofer(b, rw, np.array([face, yc, z]))
        _tweeter(b, rt, np.array([face, yc, 0]))
        if port != "none":
            b.cylinder(rp * 0.7, 0.01, (face, yc, -span + rw * 1.05 + rp), "port", (1, 0, 0))
        _terminal(b, rng, x0, y0 + height * 0.3, 0.3)
        return
    items = [("tweeter", rt)] + [("woofer", rw * (0.85 if k else 1.0))
                                 for k in range(n_woofers)]
    if style == "subwoofer":
        items = items[1:]
    if port == "below":
        items.append(("port", rp))
    elif port == "above":
        items.insert(0, ("port", rp))
    gap = rng.uniform(0.05, 0.15)
    total = sum(2 * r for _, r in items) + gap * (len(items) - 1)
    room = height * 0.9 - 0.1
    k = min(1.0, room / total)
    y = y0 + height - (height - total * k) / 2 if style != "tower" else y0 + height - 0.15
    for kind, r in items:
        r *= k
        y -= r
        p = np.array([face, y, 0])
        if kind == "woofer":
            _woofer(b, r, p)
        elif kind == "tweeter":
            _tweeter(b, r, p)
        else:
            for z in ((0.0,) if n_ports == 1 else (-1.4 * r, 1.4 * r)):
                b.cylinder(r, 0.012, p + [0.004, 0, z], "port", (1, 0, 0), 16)
        y -= r + gap * k
    _terminal(b, rng, x0 if shape != "lute" else x0 + 0.02, y0 + height * 0.25,
              min(0.35, height * 0.3))


def _tweeter(b: _Builder, radius: float, centre: np.ndarray) -> None:
    """A dome tweeter on a round face plate, facing +X."""
    b.cylinder(radius * 1.5, 0.01, centre + [0.005, 0, 0], "tweeter", (1, 0, 0), 16)
    b.ellipsoid((radius, radius * 0.6, radius), centre + [0.01, 0, 0], "tweeter",
                _rot("z", -90), subdivisions=1, flat_bottom=True)


def _terminal(b: _Builder, rng: np.random.Generator, x: float, y: float, size: float) -> None:
    """The terminal plate on the back (-X) with two binding posts."""
    b.box((0.01, size * 0.8, size), (x - 0.005, y, 0), "terminal", axis=2)
    for z in (-size * 0.25, size * 0.25):
        b.segment([x - 0.01, y, z], [x - 0.01 - size * 0.25, y, z], size * 0.07, "terminal", 8)


def _feet(b: _Builder, rng: np.random.Generator, feet: str, width: float,
          depth: float) -> float:
    """The support: its parts, and the height of the cabinet's bottom."""
    inset = 0.12 * min(width, depth)
    corners = [(sx * (depth / 2 - inset), sz * (width / 2 - inset))
               for sx in (-1, 1) for sz in (-1, 1)]
    if feet in ("bun", "pads", "none"):
        h = {"bun": rng.uniform(0.04, 0.1), "pads": 0.015, "none": 0.01}[feet]
        r = {"bun": rng.uniform(0.05, 0.1), "pads": 0.05, "none": 0.04}[feet]
        if feet == "none":  # a recessed base rim
            b.box((depth * 0.9, h, width * 0.9), (0, h / 2, 0), "foot")
            return h
        for x, z in corners:
            b.cylinder(r, h, (x, h / 2, z), "foot", (0, 1, 0), 12)
        return h
    if feet == "spikes":
        h = rng.uniform(0.08, 0.16)
        for x, z in corners:
            b.revolve(np.array([[0, 0], [0.05, h], [0, h]]), "foot", _tf((x, 0, z)), 10)
        return h
    if feet == "plinth":  # a slab wider than the cabinet, on spikes
        h, t = rng.uniform(0.05, 0.1), rng.uniform(0.04, 0.08)
        grow = rng.uniform(1.1, 1.4)
        b.box((depth * grow, t, width * grow), (0, h + t / 2, 0), "foot")
        for x, z in corners:
            b.revolve(np.array([[0, 0], [0.05, h], [0, h]]), "foot",
                      _tf((x * grow, 0, z * grow)), 10)
        return h + t
    # a stand: base plate, one or two pillars, top plate
    tall = rng.uniform(1.5, 3.0)
    plate = 0.04
    base_d, base_w = depth * rng.uniform(1.1, 1.5), width * rng.uniform(1.1, 1.5)
    b.box((base_d, plate, base_w), (0, plate / 2, 0), "foot")
    b.box((depth * 0.8, plate, width * 0.8), (0, tall - plate / 2, 0), "foot")
    if rng.uniform() < 0.5:
        b.box((0.2, tall, 0.2), (0, tall / 2, 0), "foot", axis=1)
    else:
        for z in (-0.25, 0.25):
            b.segment([0, plate, z * width], [0, tall - plate, z * width], 0.05, "foot", 8)
    return tall
