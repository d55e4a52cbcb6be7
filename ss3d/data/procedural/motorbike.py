"""Motorbikes (front +X: the front wheel, fork and headlight, the rear wheel and taillight at
-X; up +Y: the wheels at the bottom, the handlebar on top; length 1 from tyre to tyre)."""

from __future__ import annotations

from functools import cache

import numpy as np

from ss3d.data.procedural.builder import _Builder, _choice
from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.procedural.primitives import Mesh, _outward, _rot, _tf
from ss3d.data.procedural.registry import register

PALETTE: dict[str, _PartStyle] = {
    "tyre": _PartStyle((0.00, 0.00, 0.10), "stripes", (0.0, 0.0, 0.22)),
    "rim": _PartStyle((0.00, 0.00, 0.75)),
    "frame": _PartStyle((0.79, 0.80, 0.70)),
    "tank": _PartStyle((0.33, 0.80, 0.65)),
    "seat": _PartStyle((0.08, 0.55, 0.50), "patches"),
    "engine": _PartStyle((0.54, 0.80, 0.50)),
    "exhaust": _PartStyle((0.96, 0.55, 0.90)),
    "fork": _PartStyle((0.15, 0.85, 0.95)),
    "handlebar": _PartStyle((0.29, 0.55, 0.90)),
    "headlight": _PartStyle((0.15, 0.25, 1.00)),
    "taillight": _PartStyle((0.99, 0.90, 0.90)),
    "fairing": _PartStyle((0.07, 0.90, 0.95)),
    "window": _PartStyle((0.50, 0.60, 0.75)),
    "fender": _PartStyle((0.67, 0.80, 0.90)),
    "luggage": _PartStyle((0.83, 0.80, 0.90)),
    "sidecar": _PartStyle((0.38, 0.80, 0.90)),
}

# per style: front and rear wheel radius, tyre section radius, seat height, handlebar height
# above the seat, fork length, rake (degrees); length 1 (front tyre to rear tyre)
_STYLES: dict[str, dict[str, tuple[float, float]]] = {
    "sport": {"rf": (0.14, 0.16), "rr": (0.14, 0.16), "tyre": (0.03, 0.045),
              "seat": (0.36, 0.42), "bar": (0.02, 0.08), "fork": (0.28, 0.34), "rake": (22, 27)},
    "cruiser": {"rf": (0.14, 0.17), "rr": (0.13, 0.16), "tyre": (0.04, 0.06),
                "seat": (0.27, 0.33), "bar": (0.15, 0.32), "fork": (0.36, 0.46),
                "rake": (30, 40)},
    "scooter": {"rf": (0.1, 0.13), "rr": (0.1, 0.13), "tyre": (0.03, 0.045),
                "seat": (0.33, 0.4), "bar": (0.12, 0.2), "fork": (0.2, 0.26), "rake": (20, 28)},
    "dirt": {"rf": (0.19, 0.22), "rr": (0.17, 0.2), "tyre": (0.025, 0.035),
             "seat": (0.46, 0.54), "bar": (0.06, 0.12), "fork": (0.42, 0.5), "rake": (24, 29)},
    "touring": {"rf": (0.14, 0.16), "rr": (0.14, 0.16), "tyre": (0.035, 0.05),
                "seat": (0.34, 0.4), "bar": (0.08, 0.16), "fork": (0.32, 0.38), "rake": (25, 30)},
}


@cache
def _torus(ratio: float, n: int = 20, m: int = 8) -> Mesh:
    """A torus about +Z, major radius 1, tube radius ``ratio`` (cached per ratio)."""
    u = np.repeat(np.linspace(0, 2 * np.pi, n, endpoint=False), m)
    v = np.tile(np.linspace(0, 2 * np.pi, m, endpoint=False), n)
    verts = np.c_[(1 + ratio * np.cos(v)) * np.cos(u), (1 + ratio * np.cos(v)) * np.sin(u),
                  ratio * np.sin(v)]
    i, j = np.divmod(np.arange(n * m), m)
    a, b = i * m + j, ((i + 1) % n) * m + j
    c, d = ((i + 1) % n) * m + (j + 1) % m, i * m + (j + 1) % m
    return _outward(verts, np.r_[np.c_[a, b, c], np.c_[a, c, d]])


def _arc(cx: float, cy: float, r0: float, r1: float, a0: float, a1: float,
         n: int = 10) -> np.ndarray:
    """An annular sector (radii ``r0`` < ``r1``, angles ``a0`` → ``a1`` degrees) as an
    ``(x, y)`` polygon: a fender over a wheel."""
    t = np.radians(np.linspace(a0, a1, n))
    ring = np.c_[np.cos(t), np.sin(t)]
    return np.r_[[cx, cy] + r1 * ring, [cx, cy] + r0 * ring[::-1]]


@register("motorbike", PALETTE, core={"exhaust", "fork", "frame", "handlebar", "headlight",
                                      "rim", "seat", "taillight", "tyre"},
          front=("headlight", "fork"), back=("taillight",), top=("handlebar",),
          bottom=("tyre",))
def _motorbike(b: _Builder, rng: np.random.Generator) -> None:
    """Motorbikes: ``sport`` (full fairing with a small windscreen, clip-on bars, raised
    tail, under-tail or side exhaust), ``cruiser`` (long and low, raked fork, high pulled-back
    bars, teardrop tank, V-twin, wire wheels, big fenders, twin low pipes), ``scooter`` (small
    wheels, step-through body with a leg shield and floorboard, seat over the rear body),
    ``dirt`` bike (big thin spoked wheels, long fork, high fender, number plate, tall seat,
    high pipe) and ``touring`` (fairing with a tall windscreen, panniers and a top case);
    cruisers, tourers and scooters with a sidecar on some; solo bikes ``upright`` or
    ``parked`` on the side stand (bars turned 15–35°, leaning 6–14°).

    Length 1; per style: wheel radius 0.1–0.22, tyre section 0.025–0.06, seat height
    0.27–0.54, bars up to 0.32 above the seat, fork 0.2–0.5 long raked 20–40°. Colours:
    black tyres, silver rims, purple frame, green tank, brown seat, petrol-blue engine, pink
    exhaust, gold fork, lime bars, pale-yellow headlight, red taillight, orange fairing, cyan
    windscreen, blue fenders, magenta luggage, bright-green sidecar.
    """
    style = _choice(rng, list(_STYLES), [0.25, 0.22, 0.18, 0.2, 0.15])
    p = {k: rng.uniform(*r) for k, r in _STYLES[style].items()}
    rf, rr, tr = p["rf"], p["rr"], p["tyre"]
    width = rng.uniform(0.22, 0.32) if style != "dirt" else rng.uniform(0.24, 0.3)
    b.variant.update(style=style, wheel=rf, seat_height=p["seat"], rake=p["rake"])
    xf, xr = 0.5 - rf, -0.5 + rr  # axles

    # wheels: tyre, rim (a disc for cast wheels, spokes and a hub for wire wheels)
    wheels = "spoked" if style in ("dirt", "cruiser") else "cast"
    b.variant["wheels"] = wheels
    steer = []  # the parts that turn with the bars: front wheel, fork, bars, fender, light
    for x, r in ((xf, rf), (xr, rr)):
        n0 = len(b.parts)
        b.add(_torus(round(tr / (r - tr), 2)), "tyre", _tf((x, r, 0)) @ np.diag(
            [r - tr, r - tr, r - tr, 1.0]), axis=0)
        if wheels == "cast":
            b.cylinder(r - tr * 1.6, tr * 0.8, (x, r, 0), "rim", (0, 0, 1), 16)
        else:
            b.cylinder(r * 0.16, tr * 1.6, (x, r, 0), "rim", (0, 0, 1), 10)
            b.add(_torus(0.06), "rim", _tf((x, r, 0)) @ np.diag([r - tr * 1.7] * 3 + [1]))
            for k in range(12):
                a = np.pi * k / 6
                b.segment([x, r, (k % 2 - 0.5) * tr], [x + (r - tr * 1.8) * np.cos(a),
                                                      r + (r - tr * 1.8) * np.sin(a), 0],
                          0.003, "rim", 4)
        steer += range(n0, len(b.parts)) if x == xf else []

    # fork up from the front axle to the steering head, raked back
    rake = np.radians(p["rake"])
    up = np.array([-np.sin(rake), np.cos(rake)])
    head = np.array([xf, rf]) + up * p["fork"]
    n0 = len(b.parts)
    for s in (-1, 1):
        b.segment([xf, rf, s * (tr + 0.02)], [*head, s * (tr + 0.02)], 0.014, "fork", 8)
    b.box((0.04, 0.03, 2 * tr + 0.08), (*(head - up * 0.01), 0), "fork")  # the yoke
    steer += range(n0, len(b.parts))

    # frame: pivot of the swingarm behind the engine, backbone to the seat, swingarm
    seat_y = p["seat"]
    pivot = np.array([xr + (xf - xr) * rng.uniform(0.3, 0.38), rr + rng.uniform(0.0, 0.06)])
    seat_front = head[0] - rng.uniform(0.18, 0.26)
    seat_rear = max(xr + rng.uniform(-0.04, 0.08), -0.46)
    b.segment([*head, 0], [*pivot + [0.05, 0.08], 0], 0.018, "frame", 8)
    b.segment([*head, 0], [seat_front, seat_y - 0.04, 0], 0.018, "frame", 8)
    b.segment([seat_front, seat_y - 0.04, 0], [seat_rear + 0.06, seat_y - 0.02, 0], 0.013,
              "frame", 6)
    for s in (-1, 1):
        b.segment([*pivot, s * 0.05], [xr, rr, s * (tr + 0.015)], 0.014, "frame", 6)
        b.segment([*pivot + [0, 0.1], s * 0.04], [seat_rear + 0.1, seat_y - 0.03, s * 0.04],
                  0.008, "frame", 6)

    # engine between the frame rails; a V-twin on cruisers
    ex0, ex1 = pivot[0] + 0.02, head[0] - 0.06
    ey0 = max(rf, rr) * (0.55 if style != "dirt" else 0.85)
    ey1 = min(seat_y - 0.08, ey0 + rng.uniform(0.12, 0.2))
    b.box((ex1 - ex0, ey1 - ey0, width * 0.38), ((ex0 + ex1) / 2, (ey0 + ey1) / 2, 0),
          "engine")
    if style == "cruiser":
        for a in (-30, 30):
            b.cylinder(0.045, 0.14, ((ex0 + ex1) / 2 + 0.05 * np.sign(a), ey1 + 0.05, 0),
                       "engine", (np.sin(np.radians(a)), np.cos(np.radians(a)), 0), 12)

    # tank and seat
    tank_l = seat_front - head[0] + 0.02
    tank_h = rng.uniform(0.07, 0.12) * (0.7 if style == "dirt" else 1.0)
    if style != "scooter":
        b.ellipsoid((abs(tank_l) / 2 + 0.04, tank_h, width * 0.3),
                    ((seat_front + head[0]) / 2 + 0.01, seat_y + tank_h * 0.25, 0), "tank",
                    rotation=_rot("z", -8 if style == "cruiser" else 5))
        b.variant["tank"] = "yes"
    seat_t = rng.uniform(0.04, 0.07)
    b.box((seat_front - seat_rear, seat_t, width * rng.uniform(0.4, 0.55)),
          ((seat_front + seat_rear) / 2, seat_y + seat_t / 2 - 0.02, 0), "seat")

    # handlebar above the steering head: clip-ons (sport) to pulled-back high bars (cruiser)
    bar_y = seat_y + p["bar"]
    pull = rng.uniform(0.0, 0.05) if style != "cruiser" else rng.uniform(0.06, 0.14)
    half, n0 = width / 2, len(b.parts)
    b.segment([*head, 0], [head[0], bar_y, 0], 0.012, "handlebar", 6)  # the riser
    for s in (-1, 1):
        grip = [head[0] - pull, bar_y + 0.01, s * half]
        b.segment([head[0], bar_y, 0], grip, 0.009, "handlebar", 6)
        b.segment(grip, [grip[0] - 0.02, grip[1], s * (half + 0.06)], 0.014, "handlebar", 6)
    if style in ("sport", "touring", "scooter"):  # mirrors
        for s in (-1, 1):
            m = np.array([head[0] - 0.03, bar_y + 0.07, s * (half - 0.02)])
            b.segment([head[0], bar_y, s * half * 0.6], m, 0.004, "handlebar", 4)
            b.ellipsoid((0.01, 0.02, 0.03), m, "handlebar", subdivisions=1)
    steer += range(n0, len(b.parts))

    # headlight in front of the steering head, taillight at the tail
    hl = head + [rng.uniform(0.04, 0.08), -rng.uniform(0.03, 0.08)]
    tail = np.array([seat_rear - 0.02, seat_y + 0.01])
    _bodywork(b, rng, style, xf, xr, rf, rr, tr, width, head, hl, pivot, seat_front, seat_rear,
              seat_y, bar_y, tail, steer)

    # exhaust: a pipe from the engine front back to a silencer
    start = [ex1 - 0.02, ey0 + 0.02, width * 0.12]
    if style == "dirt":
        can = [(xr + 0.1, seat_y - 0.06), (xr + 0.32, seat_y - 0.12)]
    elif style == "sport" and rng.uniform() < 0.5:
        can = [(seat_rear + 0.02, seat_y + 0.01), (seat_rear + 0.2, seat_y - 0.08)]
    else:
        can = [(xr - 0.05, rr * 0.7), (xr + rng.uniform(0.22, 0.34), rr * 0.55)]
    b.variant["exhaust"] = "high" if can[0][1] > seat_y - 0.1 else "low"
    sides = (1, -1) if style == "cruiser" else (1,)
    for s in sides:
        z = s * (width * 0.22 + tr)
        b.segment([start[0], start[1], s * start[2]], [ex0 + 0.02, ey0 - 0.02, z], 0.014,
                  "exhaust", 6)
        b.segment([ex0 + 0.02, ey0 - 0.02, z], [*can[1], z], 0.014, "exhaust", 6)
        b.segment([*can[1], z], [*can[0], z], rng.uniform(0.03, 0.045), "exhaust", 12)

    if style in ("cruiser", "touring", "scooter") and rng.uniform() < 0.4:
        # a sidecar: a tub on the right (+z) on its own wheel, braced to the frame
        zs, ls, hs = rng.uniform(0.3, 0.42), rng.uniform(0.45, 0.7), rng.uniform(0.14, 0.22)
        xs, r3, ws = (xf + xr) / 2 + rng.uniform(-0.05, 0.05), rr * 0.9, rng.uniform(0.1, 0.14)
        b.variant["sidecar"] = "yes"
        b.ellipsoid((ls / 2, hs / 2, ws), (xs, r3 + hs * 0.3, zs), "sidecar")
        b.add(_torus(round(tr / (r3 - tr), 2)), "tyre", _tf((xs - 0.05, r3, zs + ws)) @ np.diag(
            [r3 - tr, r3 - tr, r3 - tr, 1.0]), axis=0)
        b.cylinder(r3 - tr * 1.6, tr * 0.8, (xs - 0.05, r3, zs + ws), "rim", (0, 0, 1), 16)
        b.box((0.005, 0.07, ws * 1.2), (xs + ls * 0.28, r3 + hs * 0.75, zs), "window",
              rotation=_rot("z", 30))
        for x in (pivot[0], seat_front):
            b.segment([x, pivot[1] + 0.05, 0.04], [x, r3 + 0.02, zs - ws * 0.8], 0.01, "frame", 6)

    # parked on the side stand (bars turned, leaning onto the stand) or upright
    if "sidecar" not in b.variant and rng.uniform() < 0.6:
        turn, lean = rng.uniform(15, 35), rng.uniform(6, 14)
        b.variant.update(pose="parked", steer=turn, lean=lean)
        r = _rot("z", p["rake"]) @ _rot("y", turn) @ _rot("z", -p["rake"])  # about the fork
        m = _tf(np.r_[head, 0] - r @ np.r_[head, 0], r)
        for k in steer:
            v, f, uv = b.parts[k]
            b.parts[k] = (v @ m[:3, :3].T + m[:3, 3], f, uv)
        zf = rng.uniform(0.18, 0.26)
        b.segment([pivot[0] + 0.04, pivot[1] + 0.02, 0.06],
                  [pivot[0] - 0.06, zf * np.tan(np.radians(lean)), zf], 0.008, "frame", 6)
        b.transform(_tf(rotation=_rot("x", lean)))  # onto the stand (+z)
    else:
        b.variant["pose"] = "upright"


def _bodywork(b: _Builder, rng: np.random.Generator, style: str, xf: float, xr: float,
              rf: float, rr: float, tr: float, width: float, head: np.ndarray,
              hl: np.ndarray, pivot: np.ndarray, seat_front: float, seat_rear: float,
              seat_y: float, bar_y: float, tail: np.ndarray, steer: list[int]) -> None:
    """Headlight, taillight, fenders, fairings, windscreens, scooter body, number plate,
    luggage."""
    # fenders: hugging arcs over the wheels; a dirt bike's front one high under the bars
    steer.append(len(b.parts))
    if style == "dirt":
        b.prism(np.array([(head[0] + 0.12, head[1] - 0.03), (head[0] - 0.06, head[1] - 0.03),
                          (head[0] - 0.02, head[1] - 0.06), (head[0] + 0.1, head[1] - 0.055)]),
                0.09, "fender")
    else:
        span = (10, 150) if style == "cruiser" else (30, 130)
        b.prism(_arc(xf, rf, rf + 0.01, rf + 0.025, *span), 2 * tr + 0.03, "fender")
    b.prism(_arc(xr, rr, rr + 0.01, rr + 0.025, 40 if style != "cruiser" else 20, 160),
            2 * tr + 0.03, "fender")

    if style == "sport":  # a full fairing round the front and the engine, a raised tail
        nose = np.array([xf + rf * 0.3, head[1] - 0.04])
        b.prism(np.array([nose, head + [-0.02, 0.05], head + [-0.14, 0.0],
                          (pivot[0] + 0.06, rr * 0.7), (xf - rf * 0.6, rr * 0.55),
                          (xf + rf * 0.1, head[1] - 0.15)]), width * 0.5, "fairing")
        b.box((0.005, 0.08, width * 0.4), (*(head + [0.0, 0.09]), 0), "window",
              rotation=_rot("z", 35))
        b.prism(np.array([(seat_rear + 0.12, seat_y - 0.06), (seat_rear + 0.12, seat_y + 0.02),
                          (seat_rear - 0.06, seat_y + 0.07), (seat_rear - 0.08, seat_y + 0.04)]),
                width * 0.3, "fairing")
        tail = np.array([seat_rear - 0.08, seat_y + 0.055])
        hl = np.array([nose[0] - 0.01, nose[1] - 0.01])
    elif style == "touring":  # a fairing with a tall windscreen, panniers and a top case
        b.prism(np.array([(head[0] + 0.14, head[1] - 0.12), (head[0] + 0.1, head[1] + 0.08),
                          (head[0] - 0.06, head[1] + 0.1), (head[0] - 0.1, head[1] - 0.1)]),
                width * 0.8, "fairing")
        wh = rng.uniform(0.12, 0.22)
        b.box((0.006, wh, width * 0.55), (head[0] + 0.07, head[1] + 0.08 + wh / 2 * 0.8, 0),
              "window", rotation=_rot("z", 25))
        for s in (-1, 1):
            b.box((0.2, 0.14, 0.1), (xr + 0.05, rr + 0.12, s * (width * 0.35 + 0.05)),
                  "luggage")
        b.box((0.14, 0.12, width * 0.6), (seat_rear - 0.02, seat_y + 0.08, 0), "luggage")
        hl = np.array([head[0] + 0.14, head[1] - 0.04])
        tail = np.array([seat_rear - 0.09, seat_y + 0.06])
    elif style == "scooter":  # a leg shield behind the front wheel, floorboard, rear body
        b.prism(np.array([(xf - rf * 1.1, rr * 0.5), (xf - rf * 0.4, rr * 0.5), head + [0.02, 0],
                          head + [-0.06, 0.0]]), width * 0.7, "fairing")
        b.box((pivot[0] + 0.12 - (xf - rf * 1.1), 0.04, width * 0.55),
              ((pivot[0] + 0.12 + xf - rf * 1.1) / 2, rr * 0.5, 0), "fairing")
        b.ellipsoid(((seat_front - xr) / 2 + 0.05, (seat_y - rr * 0.5) / 2 + 0.03, width * 0.3),
                    ((seat_front + xr) / 2 - 0.02, (seat_y + rr * 0.5) / 2, 0), "fairing")
        tail = np.array([xr - 0.03, (seat_y + rr) / 2])
    elif style == "dirt":  # a number plate over the headlight
        steer.append(len(b.parts))
        b.box((0.01, 0.12, width * 0.45), (*(head + [0.05, -0.02]), 0), "fairing",
              rotation=_rot("z", 15))
        hl = head + [0.058, -0.05]
    if style not in ("sport", "touring"):  # on the fork, not on a fairing
        steer.append(len(b.parts))
    b.cylinder(0.035 if style != "cruiser" else 0.06, 0.03, (*hl, 0), "headlight", (1, 0, 0), 14)
    b.box((0.02, 0.025, width * 0.3), (*tail, 0), "taillight")
