"""Watercraft: boats and ships (front +X: the bow, the stern at -X; up +Y: the hull at the
bottom with the keel below it, masts, cabins and cargo above; hull length 1)."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ss3d.data.procedural.builder import _Builder, _choice
from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.procedural.primitives import _align_z, _prism, _rot
from ss3d.data.procedural.registry import register

PALETTE: dict[str, _PartStyle] = {
    "hull": _PartStyle((0.62, 0.75, 0.45)),
    "deck": _PartStyle((0.08, 0.60, 0.62), "stripes"),
    "keel": _PartStyle((0.99, 0.80, 0.65)),
    "cabin": _PartStyle((0.00, 0.00, 0.93)),
    "window": _PartStyle((0.52, 0.60, 0.70)),
    "mast": _PartStyle((0.75, 0.25, 0.70)),
    "sail": _PartStyle((0.13, 0.45, 0.98)),
    "rudder": _PartStyle((0.07, 0.85, 0.95)),
    "funnel": _PartStyle((0.00, 0.00, 0.12), "two_tone", (0.0, 0.85, 0.8)),
    "cargo": _PartStyle((0.35, 0.65, 0.55), "stripes"),
    "engine": _PartStyle((0.83, 0.50, 0.45)),
    "oar": _PartStyle((0.30, 0.55, 0.85)),
    "seat": _PartStyle((0.95, 0.60, 0.75)),
    "rail": _PartStyle((0.15, 0.50, 0.75)),
}

# hull shapes per kind (length 1), ranges of: beam, depth (keel to deck at midships), transom
# width (of the beam), bow fullness (exponent; < 1 bluff), bottom width (of the deck width;
# small = deep V), bow and stern overhang, sheer (rise of the deck towards the ends)
_HULL_KEYS = ("beam", "depth", "transom", "fullness", "narrow", "bow", "stern", "sheer")
_HULLS: dict[str, tuple[tuple[float, float], ...]] = {
    "sailboat": ((0.24, 0.36), (0.07, 0.12), (0.55, 0.9), (0.6, 1.0), (0.2, 0.5), (0.08, 0.2),
                 (0.03, 0.12), (0.1, 0.5)),
    "motorboat": ((0.3, 0.42), (0.1, 0.17), (0.75, 0.95), (0.5, 0.9), (0.15, 0.4),
                  (0.12, 0.3), (0.0, 0.03), (0.3, 0.9)),
    "ship": ((0.11, 0.18), (0.07, 0.13), (0.6, 0.9), (0.35, 0.8), (0.85, 0.95), (0.03, 0.1),
             (0.01, 0.05), (0.05, 0.3)),
    "rowboat": ((0.26, 0.56), (0.09, 0.22), (0.3, 0.9), (0.6, 1.2), (0.35, 0.95), (0.05, 0.18),
                (0.02, 0.1), (0.2, 1.2)),
}


class _Hull(NamedTuple):  # beam, depth, keel ends (stern, bow), deck height, half-breadth
    beam: float
    depth: float
    x0: float
    x1: float
    deck: Callable[[float], float]
    half: Callable[[float], float]


def _slab(outline: np.ndarray, y0: float, y1: float) -> tuple[np.ndarray, np.ndarray]:
    """A prism of the ``(x, z)`` polygon ``outline`` from height ``y0`` up to ``y1``."""
    v, f = _prism(outline, 1.0)
    # local (x, y, z) -> (x, z, y): a mirror, so the faces flip
    return np.c_[v[:, 0], np.where(v[:, 2] > 0, y1, y0), v[:, 1]], f[:, ::-1].copy()


@register("watercraft", PALETTE, core={"deck", "hull", "keel"}, back=("rudder",),
          bottom=("keel",))
def _watercraft(b: _Builder, rng: np.random.Generator) -> None:
    """Boats and ships: ``sailboat`` (sloop, cat, ketch or furled rig; fin, bulb or long
    keel; spade rudder; cabin; lifelines on some), ``motorboat`` (``speedboat`` with console,
    windscreen and seat, ``cruiser`` with a cabin, ``yacht`` with two or three decks; outboard,
    or inboard with a rudder; skeg), ``ship`` (``container`` ship or ``tanker`` with the
    bridge aft, ``cruise`` ship with stepped decks; funnels, bulbous bow) and ``rowboat``
    (open ``rowboat`` with thwarts and oars out or shipped, open ``canoe`` with paddles,
    decked ``kayak`` with a cockpit and a double paddle).

    Hull length 1; beam 0.1–0.44, depth 0.05–0.17, transom 0–0.95 of the beam, V to boxy
    sections, bow overhang 0.03–0.3, sheer; masts 0.7–1.5 high. Colours: navy hull, teak deck,
    red keel, white cabins, teal windows, slate masts, pale-yellow sails, orange rudder, black
    funnels (red band), green containers, plum engine, lime oars, pink seats, brass rails.
    """
    kind = _choice(rng, list(_HULLS), [0.3, 0.25, 0.28, 0.17])  # ships and yachts most
    h = {k: rng.uniform(*r) for k, r in zip(_HULL_KEYS, _HULLS[kind])}
    style = {"sailboat": _choice(rng, ["sloop", "cat", "ketch", "furled"]),
             "motorboat": _choice(rng, ["speedboat", "cruiser", "yacht"]),
             "ship": _choice(rng, ["container", "tanker", "cruise"]),
             "rowboat": _choice(rng, ["rowboat", "canoe", "kayak"], [0.5, 0.25, 0.25])}[kind]
    if style in ("canoe", "kayak"):
        h.update(beam=rng.uniform(0.13, 0.2) * (0.75 if style == "kayak" else 1.0),
                 transom=0.0, depth=rng.uniform(0.07, 0.1) * (0.7 if style == "kayak" else 1.0))
    beam, depth = h["beam"], h["depth"]
    b.variant.update(kind=kind, style=style, beam=beam, depth=depth)
    # planform: half-breadth from the transom (u = 0) to the pointed bow (u = 1)
    u = np.linspace(0, 1, 11)
    m = 0.5 if h["transom"] == 0 else rng.uniform(0.35, 0.55)
    hb = np.where(u < m, h["transom"] + (1 - h["transom"]) * np.sin(np.pi / 2 * u / m),
                  np.cos(np.pi / 2 * np.clip((u - m) / (1 - m), 0, 1)) ** h["fullness"])
    hb, x = hb * beam / 2, u - 0.5
    outline = np.r_[np.c_[x[:-1], hb[:-1]], [[0.5, 0.0]], np.c_[x[-2::-1], -hb[-2::-1]]]
    outline = outline[:-1] if hb[0] == 0 else outline  # a pointed stern: no double point

    def deck_y(xx: float | np.ndarray) -> float | np.ndarray:  # sheer: higher at the bow
        return depth + h["sheer"] * depth * (2 * xx) ** 2 * np.where(xx > 0, 1.0, 0.4)

    # hull: the deck outline on top, a narrower, shorter bottom (V sections, overhangs)
    open_hull = style in ("rowboat", "canoe")
    floor = depth * rng.uniform(0.3, 0.45) if open_hull else 0.0
    v, f = _slab(outline, 0.0, 1.0)
    top, bot = v[:, 1] > 0.5, v[:, 1] < 0.5
    v[top, 1] = floor if open_hull else deck_y(v[top, 0])
    v[bot, 2] *= h["narrow"]
    v[bot, 0] = -0.5 + h["stern"] + (v[bot, 0] + 0.5) * (1 - h["bow"] - h["stern"])
    b.add((v, f), "hull")
    if open_hull:  # the sides up to the gunwale, the floorboards inside
        for p, q in zip(outline, np.roll(outline, -1, 0)):
            (cx, cz), d = (p + q) / 2, q - p
            yt = float(deck_y(cx))
            b.box((np.hypot(*d) + 0.012, yt - floor + 0.01, 0.012), (cx, (yt + floor) / 2, cz),
                  "hull", rotation=_rot("y", -np.degrees(np.arctan2(d[1], d[0]))))
        b.add(_slab(outline * [0.9, 0.85], floor - 0.005, floor + 0.006), "deck")
    else:
        dv, df = _slab(outline * [0.97, 0.92], 0.0, 0.01)
        dv[:, 1] += deck_y(dv[:, 0]) - 0.003
        b.add((dv, df), "deck")
    hull = _Hull(beam, depth, -0.5 + h["stern"], 0.5 - h["bow"], lambda xx: float(deck_y(xx)),
                 lambda xx: float(np.interp(xx, x, hb)))
    {"sailboat": _sailboat, "motorboat": _motorboat, "ship": _ship,
     "rowboat": _rowboat}[kind](b, rng, style, hull)


def _outboard(b: _Builder, hl: _Hull) -> None:
    """An outboard motor on the transom, its leg down below the hull."""
    top = hl.deck(-0.5)
    b.box((0.07, 0.09, 0.06), (-0.535, top + 0.03, 0), "engine")
    b.box((0.025, top + 0.02, 0.02), (-0.53, top / 2 - 0.03, 0), "engine")


def _sailboat(b: _Builder, rng: np.random.Generator, rig: str, hl: _Hull) -> None:
    """Keel, rudder, cabin, mast(s), boom and sails, lifelines."""
    x0, x1 = hl.x0, hl.x1
    keel = b.variant["keel"] = _choice(rng, ["fin", "bulb", "long"])  # long: most of the hull
    kd = rng.uniform(0.05, 0.1) if keel == "long" else rng.uniform(0.12, 0.3)
    xk, c0, c1 = rng.uniform(-0.05, 0.12), rng.uniform(0.16, 0.28), rng.uniform(0.08, 0.16)
    xk, c0, c1, sweep = (-0.1, 0.6, 0.4, 0.0) if keel == "long" else (xk, c0, c1, c1 / 2)
    b.prism(np.array([(xk + c0 / 2, 0.01), (xk - c0 / 2, 0.01), (xk - c1 / 2 - sweep, -kd),
                      (xk + c1 / 2 - sweep, -kd)]), 0.025, "keel")
    if keel == "bulb":
        b.ellipsoid((c1 * 0.8, 0.025, 0.025), (xk - sweep, -kd, 0), "keel")
    xr, rd = x0 + 0.05, rng.uniform(0.08, 0.16)
    b.prism(np.array([(xr + 0.035, 0.01), (xr - 0.03, 0.01), (xr - 0.025, -rd),
                      (xr + 0.015, -rd)]), 0.014, "rudder")
    # a low cabin with a sloped front
    ca, cf = rng.uniform(-0.3, -0.15), rng.uniform(0.05, 0.2)
    ch, cw, y0 = rng.uniform(0.03, 0.07), hl.beam * rng.uniform(0.45, 0.65), hl.deck(0.0)
    b.prism(np.array([(ca, y0 - 0.01), (cf, y0 - 0.01), (cf - ch, y0 + ch), (ca, y0 + ch)]),
            cw, "cabin")
    # masts, booms and sails
    xm, mh = rng.uniform(0.02, 0.2), rng.uniform(0.7, 1.5)
    masts = [(xm, mh, rng.uniform(-0.42, -0.3) if rig != "ketch" else -0.18)]
    if rig == "ketch":
        masts.append((rng.uniform(-0.32, -0.25), mh * rng.uniform(0.5, 0.7), -0.46))
    for mx, height, boom_end in masts:
        base = hl.deck(mx)
        b.segment([mx, base - 0.02, 0], [mx, base + height, 0], 0.008, "mast", 8)
        boom = base + rng.uniform(0.06, 0.12)
        b.segment([mx, boom, 0], [boom_end, boom, 0], 0.006, "mast", 6)
        if rig == "furled":
            b.cylinder(0.02, mx - boom_end - 0.05, ((mx + boom_end) / 2, boom + 0.022, 0),
                       "sail", (1, 0, 0), 10)
        else:
            b.prism(np.array([(mx - 0.012, boom + 0.008), (boom_end + 0.02, boom + 0.008),
                              (mx - 0.012, base + height * 0.97)]), 0.006, "sail")
    if rig in ("sloop", "ketch"):  # the jib, from the bow to high on the forestay
        b.prism(np.array([(x1 + 0.02, hl.deck(x1) + 0.02), (xm + 0.015, hl.deck(xm) + 0.08),
                          (xm + 0.015, hl.deck(xm) + mh * rng.uniform(0.65, 0.9))]), 0.006,
                "sail")
    if rng.uniform() < 0.5:
        b.variant["rail"] = "lifelines"
        for s in (-1, 1):  # lifelines on stanchions along both sides
            pts = [np.array([xx, hl.deck(xx) + 0.05, s * hl.half(xx) * 0.9])
                   for xx in np.linspace(-0.4, 0.35, 6)]
            for p, q in zip(pts[:-1], pts[1:]):
                b.segment(p, q, 0.003, "rail", 4)
                b.segment(p - [0, 0.05, 0], p, 0.003, "rail", 4)


def _motorboat(b: _Builder, rng: np.random.Generator, style: str, hl: _Hull) -> None:
    """Skeg, console or decked superstructure, outboard engine or rudder."""
    x0, x1, beam = hl.x0, hl.x1, hl.beam
    sk = rng.uniform(0.015, 0.035)
    b.box((x1 - x0 - 0.15, sk + 0.01, 0.015), ((x0 + x1) / 2 - 0.05, 0.005 - sk / 2, 0), "keel")
    y0, cw = hl.deck(0.0), beam * rng.uniform(0.6, 0.8)
    if style == "speedboat":  # a console and a raked windscreen across the cockpit, seats
        xc, ch, wh = rng.uniform(-0.1, 0.1), rng.uniform(0.04, 0.07), rng.uniform(0.04, 0.08)
        b.box((0.08, ch, beam * 0.3), (xc, y0 + ch / 2, -beam * 0.15), "cabin")
        b.box((0.008, wh, cw), (xc + 0.06, y0 + wh * 0.45, 0), "window", rotation=_rot("z", 30))
        b.box((0.07, 0.045, beam * 0.6), (xc - 0.12, y0 + 0.02, 0), "seat")
    else:  # one deck (cruiser) or two or three (yacht), each set back and narrower
        ca, cf, yb = rng.uniform(-0.42, -0.2), rng.uniform(0.05, 0.25), y0
        for k in range(1 if style == "cruiser" else int(rng.integers(2, 4))):
            lh, w = rng.uniform(0.04, 0.08), cw * (1 - 0.12 * k)
            rake = lh * rng.uniform(0.8, 2.0)
            b.prism(np.array([(ca, yb - 0.01), (cf, yb - 0.01), (cf - rake, yb + lh),
                              (ca + 0.02, yb + lh)]), w, "cabin")
            b.box(((cf - ca) * 0.65, lh * 0.4, w + 0.006),
                  ((ca + cf) / 2 - rake / 2, yb + lh * 0.55, 0), "window")
            yb += lh
            ca, cf = ca + (cf - ca) * rng.uniform(0.05, 0.2), cf - rake - rng.uniform(0.02, 0.1)
        if style == "yacht":  # a radar mast on the top deck
            b.segment([ca + 0.05, yb - 0.01, 0], [ca + 0.05, yb + 0.08, 0], 0.006, "mast", 6)
    outboard = style == "speedboat" or rng.uniform() < 0.2
    b.variant["engine"] = "outboard" if outboard else "inboard"
    if outboard:
        _outboard(b, hl)
    else:
        b.prism(np.array([(x0 + 0.06, 0.01), (x0 + 0.01, 0.01), (x0 + 0.015, -0.06),
                          (x0 + 0.05, -0.06)]), 0.012, "rudder")


def _ship(b: _Builder, rng: np.random.Generator, style: str, hl: _Hull) -> None:
    """Keel bar and bulbous bow, rudder, superstructure, funnels, containers or pipes."""
    x0, x1, beam, deck = hl.x0, hl.x1, hl.beam, hl.deck
    b.box((x1 - x0 - 0.1, 0.012, 0.02), ((x0 + x1) / 2, -0.004, 0), "keel")
    b.ellipsoid((rng.uniform(0.05, 0.09), hl.depth * 0.16, beam * 0.14), (x1, hl.depth * 0.2, 0),
                "keel")
    b.prism(np.array([(x0 + 0.03, hl.depth * 0.45), (x0 - 0.02, hl.depth * 0.45),
                      (x0 - 0.02, 0.005), (x0 + 0.03, 0.005)]), 0.012, "rudder")
    if style == "cruise":  # a long superstructure of stepped decks, window bands, funnels
        ca, cf, yb = rng.uniform(-0.46, -0.36), rng.uniform(0.1, 0.3), deck(0.0)
        for k in range(int(rng.integers(3, 7))):
            lh, w = rng.uniform(0.02, 0.03), beam * (0.95 - 0.04 * k)
            b.box((cf - ca, lh, w), ((ca + cf) / 2, yb + lh / 2, 0), "cabin")
            b.box(((cf - ca) * 0.9, lh * 0.35, w + 0.006), ((ca + cf) / 2, yb + lh * 0.55, 0),
                  "window")  # window bands along both sides
            yb += lh
            ca, cf = ca + rng.uniform(0.0, 0.03), cf - rng.uniform(0.02, 0.06)
        funnels = np.linspace(ca + 0.06, ca + 0.18, int(rng.integers(1, 3)))
    else:  # the bridge aft, window bands on its front, a radar mast
        xs, bl, bh = rng.uniform(-0.42, -0.32), rng.uniform(0.06, 0.12), rng.uniform(0.08, 0.2)
        y0, front = deck(xs), xs + bl / 2 + 0.02
        b.box((bl, bh, beam * 0.85), (xs, y0 + bh / 2, 0), "cabin")
        b.box((bl * 0.6, 0.02, beam * 1.05), (xs + bl * 0.2, y0 + bh - 0.01, 0), "cabin")
        for k in range(int(bh / 0.025)):
            b.box((0.004, 0.008, beam * 0.7), (xs + bl / 2, y0 + 0.02 + k * 0.025, 0), "window")
        b.segment([xs, y0 + bh, 0], [xs, y0 + bh + rng.uniform(0.04, 0.08), 0], 0.004, "mast")
        yb, funnels = y0 + bh * 0.6, np.array([xs - bl / 2 - 0.02])
        if style == "container":  # bays of stacks, two across, 1 to 6 tiers high
            tiers = int(rng.integers(2, 7))
            for bx in np.arange(front + 0.025, x1 - 0.08, 0.048):
                for s in (-1, 1):
                    t = int(rng.integers(1, tiers + 1)) * 0.022
                    b.box((0.044, t, beam * 0.43), (bx, deck(bx) + t / 2, s * beam * 0.225),
                          "cargo")
        else:  # tanker: pipes along the deck
            for z in (-0.1 * beam, 0.0, 0.1 * beam):
                b.segment([front, deck(0.0) + 0.012, z], [x1 - 0.1, deck(0.0) + 0.012, z], 0.004,
                          "rail", 6)
    fh = rng.uniform(0.04, 0.1)
    for fx in funnels:
        b.prism(np.array([(fx + 0.025, yb - 0.02), (fx - 0.025, yb - 0.02), (fx - 0.04, yb + fh),
                          (fx, yb + fh)]), beam * 0.3, "funnel")


def _rowboat(b: _Builder, rng: np.random.Generator, style: str, hl: _Hull) -> None:
    """Keel strip; thwarts, oars (out or shipped) or paddles; a kayak's cockpit; a rudder."""
    x0, x1, depth = hl.x0, hl.x1, hl.depth
    b.box((x1 - x0, 0.015, 0.015), ((x0 + x1) / 2, -0.003, 0), "keel")
    if style == "kayak":  # a cockpit, a double paddle across the deck
        xc = rng.uniform(-0.1, 0.05)
        b.ellipsoid((0.1, 0.012, hl.half(xc) * 0.7), (xc, hl.deck(xc) + 0.006, 0), "seat")
        pl, xp = rng.uniform(0.1, 0.15), xc + rng.uniform(0.1, 0.16)
        b.segment([xp, hl.deck(xp) + 0.01, -pl], [xp, hl.deck(xp) + 0.01, pl], 0.004, "oar", 6)
        for z in (-pl, pl):
            b.box((0.035, 0.004, 0.06), (xp, hl.deck(xp) + 0.01, z), "oar")
        return
    seats = [-0.3, 0.3] if style == "canoe" else list(np.linspace(-0.3, 0.25, rng.integers(2, 4)))
    for xt in seats:
        b.box((0.05, 0.012, 2 * hl.half(xt) - 0.01), (xt, hl.deck(xt) - depth * 0.3, 0), "seat")
    oar_len = rng.uniform(0.4, 0.6) if style == "rowboat" else rng.uniform(0.25, 0.35)
    state = (_choice(rng, ["out", "shipped", "outboard"], [0.45, 0.3, 0.25])
             if style == "rowboat" else "shipped")
    b.variant["oars"] = state
    for s in ((-1, 1) if style == "rowboat" or rng.uniform() < 0.5 else (1,)):
        if state == "out":  # through the oarlocks, blades out at the water
            xo = seats[len(seats) // 2] + 0.08
            lock = np.array([xo, hl.deck(xo) + 0.01, s * hl.half(xo)])
            d = np.array([rng.uniform(-0.4, 0.5), -rng.uniform(0.1, 0.5), s * 1.0])
            d /= np.linalg.norm(d)
            p0, p1 = lock - d * oar_len * 0.3, lock + d * oar_len * 0.7
        else:  # lying inside along the boat
            p0 = np.array([-oar_len / 2, hl.deck(0.0) - depth * 0.25, s * hl.beam * 0.12])
            p1, d = p0 + [oar_len, 0, 0], np.array([1.0, 0.0, 0.0])
        b.segment(p0, p1, 0.006, "oar", 6)
        b.box((0.05, 0.006, oar_len * 0.25), p1 - d * oar_len * 0.1, "oar", rotation=_align_z(d))
    if state == "outboard":  # a skiff: the oars stay inside
        _outboard(b, hl)
    elif style == "rowboat" and rng.uniform() < 0.7:  # a rudder hung on the transom
        top = hl.deck(-0.5)
        b.prism(np.array([(-0.5, top), (-0.52, top), (-0.56, -0.03), (-0.5, -0.03)]), 0.01,
                "rudder")
        b.segment([-0.51, top + 0.01, 0], [-0.35, top + 0.03, 0], 0.005, "rudder", 6)  # tiller
