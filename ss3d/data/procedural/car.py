"""Cars, the formula car among them (front +X: hood and headlights; up +Y; length 1)."""

from __future__ import annotations

import numpy as np

from ss3d.data.procedural.builder import _Builder, _weighted
from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.procedural.primitives import _prism, _rot, _tf
from ss3d.data.procedural.registry import register

PALETTE: dict[str, _PartStyle] = {
    "body": _PartStyle((0.09, 0.85, 0.92)),
    "window": _PartStyle((0.56, 0.45, 0.40), "stripes"),
    "tyre": _PartStyle((0.00, 0.00, 0.10), "stripes", (0.0, 0.0, 0.22)),
    "rim": _PartStyle((0.60, 0.03, 0.82)),
    "headlight": _PartStyle((0.15, 0.25, 1.00)),
    "taillight": _PartStyle((0.99, 0.90, 0.80)),
    "bumper": _PartStyle((0.00, 0.00, 0.50)),
    "interior": _PartStyle((0.07, 0.55, 0.45), "patches"),
}


# car styles, as fractions of the length: width, height (roof; a roadster's windscreen top),
# belt line, hood, trunk (the cabin's rear bottom from the tail; for a pickup the cab's
# length), windscreen run, rear-window run, wheel radius, ground clearance
_CAR_STYLES: dict[str, dict[str, tuple[float, float]]] = {
    "sedan": {"width": (0.32, 0.42), "height": (0.22, 0.32), "belt": (0.13, 0.19),
              "hood": (0.2, 0.3), "trunk": (0.14, 0.24), "screen": (0.1, 0.2),
              "rear": (0.07, 0.16), "wheel": (0.05, 0.075), "clearance": (0.02, 0.04)},
    "limousine": {"width": (0.22, 0.28), "height": (0.15, 0.21), "belt": (0.09, 0.13),
                  "hood": (0.14, 0.2), "trunk": (0.1, 0.16), "screen": (0.06, 0.1),
                  "rear": (0.05, 0.09), "wheel": (0.035, 0.05), "clearance": (0.012, 0.025)},
    "coupe": {"width": (0.44, 0.58), "height": (0.18, 0.25), "belt": (0.11, 0.15),
              "hood": (0.28, 0.4), "trunk": (0.1, 0.2), "screen": (0.14, 0.24),
              "rear": (0.14, 0.26), "wheel": (0.06, 0.085), "clearance": (0.015, 0.03)},
    "roadster": {"width": (0.42, 0.56), "height": (0.2, 0.27), "belt": (0.12, 0.17),
                 "hood": (0.3, 0.42), "trunk": (0.15, 0.25), "screen": (0.05, 0.1),
                 "rear": (0.0, 0.0), "wheel": (0.06, 0.085), "clearance": (0.015, 0.03)},
    "hatchback": {"width": (0.44, 0.66), "height": (0.36, 0.64), "belt": (0.17, 0.3),
                  "hood": (0.1, 0.24), "trunk": (0.01, 0.03), "screen": (0.1, 0.2),
                  "rear": (0.03, 0.12), "wheel": (0.06, 0.09), "clearance": (0.02, 0.05)},
    "suv": {"width": (0.38, 0.58), "height": (0.38, 0.6), "belt": (0.22, 0.3),
            "hood": (0.16, 0.27), "trunk": (0.01, 0.03), "screen": (0.05, 0.12),
            "rear": (0.005, 0.05), "wheel": (0.08, 0.15), "clearance": (0.05, 0.14)},
    "pickup": {"width": (0.3, 0.4), "height": (0.33, 0.46), "belt": (0.2, 0.27),
               "hood": (0.03, 0.3), "trunk": (0.2, 0.42), "screen": (0.04, 0.11),
               "rear": (0.005, 0.015), "wheel": (0.07, 0.13), "clearance": (0.04, 0.12)},
    "van": {"width": (0.34, 0.56), "height": (0.45, 0.7), "belt": (0.18, 0.3),
            "hood": (0.04, 0.18), "trunk": (0.005, 0.015), "screen": (0.04, 0.14),
            "rear": (0.005, 0.02), "wheel": (0.06, 0.09), "clearance": (0.03, 0.06)},
}


# style frequencies: low cars (sedan … pickup) and tall ones (hatchback, suv, van) about even
_CAR_WEIGHTS = {"sedan": 1.0, "limousine": 0.5, "coupe": 0.5, "roadster": 0.3, "formula": 0.8,
                "pickup": 1.0, "hatchback": 1.2, "suv": 1.2, "van": 1.2}


@register("car", PALETTE,
          core={"body", "bumper", "rim", "taillight", "tyre"}, front=("headlight",),
          back=("taillight",), bottom=("tyre",))
def _car(b: _Builder, rng: np.random.Generator) -> None:
    """Cars: ``sedan``, ``limousine``, ``coupe`` (with a rear spoiler or not),
    ``roadster`` (open top: windscreen and seats), ``hatchback`` (down to tall city cars),
    ``suv`` (big wheels, a spare wheel on the back or not), ``pickup`` (cab and open bed) and
    ``van``; roof racks or roof boxes on some.

    Length 1; each style has its own ranges of width (0.27–0.65), height (0.2–0.68), belt
    line, hood, trunk, windscreen and rear-window slopes, wheel radius (0.05–0.13) and ground
    clearance. Colours: orange body, tinted windows, pale-yellow headlights at the front, red
    tail lights at the back, grey bumpers, black tyres with silver rims, brown interior.
    """
    style = _weighted(rng, _CAR_WEIGHTS)
    if style == "formula":
        _formula_car(b, rng)
        return
    ranges = _CAR_STYLES[style]
    width, height, belt, hood, trunk, screen_run, rear_run, wheel_r, clearance = (
        rng.uniform(*ranges[k]) for k in ("width", "height", "belt", "hood", "trunk", "screen",
                                          "rear", "wheel", "clearance"))
    belt = max(belt, clearance + 0.08)
    height = max(height, belt + 0.08)
    nose = rng.uniform(0.01, 0.08)
    half = 0.5
    y0, y1, y2 = clearance, belt, height
    body_h = y1 - y0
    b.variant.update(style=style, width=width, height=height, belt=belt, wheel=wheel_r)

    # the body: one side profile (sloped nose, hood, greenhouse, trunk or bed, bevelled tail)
    # extruded across, the greenhouse drawn in (tumblehome)
    x_front = half - hood
    x_rear = x_front - trunk if style == "pickup" else -half + trunk
    cab_w = width * rng.uniform(0.7, 0.95)
    top_len = x_front - x_rear - screen_run - rear_run
    if top_len < 0.08:  # keep a roof
        k = (x_front - x_rear - 0.08) / (screen_run + rear_run)
        screen_run, rear_run = screen_run * k, rear_run * k
    cabin = np.array([[x_rear, y1], [x_front, y1], [x_front - screen_run, y2],
                      [x_rear + rear_run, y2]])
    profile = [[-half, y0 + 0.15 * body_h], [-half + 0.02, y0], [half - 0.025, y0],
               [half, y0 + 0.2 * body_h], [half, y0 + 0.6 * body_h], [half - nose, y1]]
    bed_floor = y0 + body_h * rng.uniform(0.3, 0.5)
    if style != "roadster":
        profile += [[x_front, y1], [x_front - screen_run, y2], [x_rear + rear_run, y2]]
        if style == "pickup":  # a sunken bed behind the cab, closed by the tailgate
            profile += [[x_rear, bed_floor], [-half + 0.015, bed_floor], [-half + 0.015, y1]]
        elif x_rear > -half + 0.03:
            profile += [[x_rear, y1 + 1e-4]]
    if style == "roadster" or (style != "pickup" and x_rear > -half + 0.03):
        profile += [[-half + 0.01, y1]]
    profile += [[-half, y1 - 0.15 * body_h]]
    v, f = _prism(np.array(profile), width)

    def tumblehome(v: np.ndarray, side: float = 0.0) -> None:
        """Draw the greenhouse in: the width goes from ``width`` at the belt to ``cab_w``."""
        w = width + (cab_w - width) * np.clip((v[:, 1] - y1) / (y2 - y1), 0, 1)
        v[:, 2] = v[:, 2] * w / width if side == 0 else v[:, 2] + side * w / 2

    tumblehome(v)
    b.add((v, f), "body", axis=0)

    if style == "roadster":  # open top: a raked windscreen, two seats behind it
        rake = np.radians(rng.uniform(20, 45))
        screen_h = (y2 - y1) / np.cos(rake)
        b.box((0.012, screen_h, cab_w), (x_front - np.tan(rake) * (y2 - y1) / 2,
                                          (y1 + y2) / 2, 0), "window",
              rotation=_rot("z", np.degrees(rake)), axis=2)
        seat_h = (y2 - y1) * rng.uniform(0.6, 1.0)
        for s in (-1, 1):
            b.box((0.04, seat_h, cab_w * 0.38), (x_front - 0.22, y1 + seat_h / 2,
                                                 s * cab_w * 0.23), "interior",
                  rotation=_rot("z", 12), axis=1)
    else:
        # windows: windscreen, rear window and side windows, slightly proud of the cabin
        for (xa, ya), (xb, yb) in (((x_front, y1), (x_front - screen_run, y2)),
                                   ((x_rear, y1), (x_rear + rear_run, y2))):
            run = np.hypot(xb - xa, yb - ya)
            angle = np.degrees(np.arctan2(yb - ya, xb - xa))
            b.box((run * 0.82, 0.008, cab_w * 0.88), ((xa + xb) / 2, (ya + yb) / 2, 0),
                  "window", rotation=_rot("z", angle))
        centroid = cabin.mean(0)
        side = centroid + (cabin - centroid) * np.array([0.88, 0.72]) + [0, 0.01]
        for s in (-1, 1):
            v, f = _prism(side, 0.008)
            tumblehome(v, s)
            b.add((v, f), "window")
        roof = (x_front - screen_run) - (x_rear + rear_run)
        roof_x = (x_front - screen_run + x_rear + rear_run) / 2
        if style in ("suv", "van", "hatchback", "sedan") and rng.uniform() < 0.4:
            b.variant["roof"] = "rack" if rng.uniform() < 0.5 else "box"
            for s in (-1, 1):  # rails
                b.box((roof * 0.9, 0.025, 0.02), (roof_x, y2 + 0.0125, s * cab_w * 0.4),
                      "bumper")
            if b.variant["roof"] == "box":  # a cargo box on the rails
                box_h = rng.uniform(0.04, 0.08)
                b.box((roof * rng.uniform(0.5, 0.85), box_h, cab_w * 0.7),
                      (roof_x, y2 + 0.025 + box_h / 2, 0), "bumper")
    if style == "pickup":  # the bed's side walls
        bed = x_rear + half
        for s in (-1, 1):
            b.box((bed, y1 - bed_floor, 0.015), ((x_rear - half) / 2, (y1 + bed_floor) / 2,
                                                 s * (width / 2 - 0.0075)), "body")
    if style in ("coupe", "sedan") and rng.uniform() < 0.4:  # a rear spoiler
        b.variant["spoiler"] = "yes"
        lift = rng.uniform(0.03, 0.07)
        for s in (-1, 1):
            b.box((0.02, lift, 0.02), (-half + 0.05, y1 + lift / 2, s * width * 0.35), "bumper")
        b.box((0.07, 0.012, width * 0.95), (-half + 0.045, y1 + lift, 0), "body")
    if style == "suv" and rng.uniform() < 0.5:  # a spare wheel on the tailgate
        b.variant["spare_wheel"] = "yes"
        b.cylinder(wheel_r, 0.05, (-half - 0.025, y0 + body_h * 0.6, 0), "tyre",
                   axis_dir=(1, 0, 0), sections=16)

    # lights and bumpers: headlights at the front (+X), tail lights at the back
    for s in (-1, 1):
        b.box((0.015, 0.25 * body_h, 0.2 * width), (half, y0 + 0.5 * body_h, s * 0.32 * width),
              "headlight")
        b.box((0.015, 0.2 * body_h, 0.16 * width),
              (-half, y0 + 0.65 * body_h, s * 0.36 * width), "taillight")
    for x in (half, -half):
        b.box((0.03, 0.2 * body_h, width * 1.02), (x, y0 + 0.1 * body_h, 0), "bumper")

    # wheels
    tyre_w = rng.uniform(0.04, 0.07)
    front_axle = half - rng.uniform(0.13, 0.22)
    rear_axle = -half + rng.uniform(0.12, 0.25)
    for x in (front_axle, rear_axle):
        for s in (-1, 1):
            z = s * (width / 2 - tyre_w * 0.3)
            b.cylinder(wheel_r, tyre_w, (x, wheel_r, z), "tyre", sections=16)
            b.cylinder(wheel_r * 0.55, tyre_w + 0.008, (x, wheel_r, z), "rim", sections=10)


def _formula_car(b: _Builder, rng: np.random.Generator) -> None:
    """An open-wheel race car: narrow tub with a pointed nose, sidepods, exposed wheels,
    a low front wing and a high rear wing (the driver's helmet in the cockpit)."""
    track = rng.uniform(0.36, 0.5)
    tub_w = rng.uniform(0.1, 0.18)
    tub_h = rng.uniform(0.05, 0.09)
    wheel_r = rng.uniform(0.06, 0.09)
    tyre_w = rng.uniform(0.06, 0.1)
    y0 = rng.uniform(0.015, 0.03)
    wing_y = rng.uniform(0.14, 0.26)
    b.variant.update(style="formula", width=track, height=wing_y, wheel=wheel_r)
    tub = np.array([[0.5, -0.02], [0.5, 0.02], [0.1, tub_w / 2], [-0.42, tub_w / 2],
                    [-0.42, -tub_w / 2], [0.1, -tub_w / 2]])
    b.planform(tub, tub_h, "body", _tf((0, y0 + tub_h / 2, 0)))
    pod_w = (track / 2 - tyre_w - tub_w / 2) * rng.uniform(0.5, 0.9)
    for s in (-1, 1):
        b.box((0.32, tub_h * 0.8, pod_w), (-0.12, y0 + tub_h * 0.4, s * (tub_w + pod_w) / 2),
              "body")
    # engine cover rising behind the cockpit, the driver's helmet
    cover = np.array([[-0.42, y0 + tub_h], [-0.08, y0 + tub_h], [-0.12, y0 + tub_h * 1.9],
                      [-0.3, y0 + tub_h * 1.6]])
    b.prism(cover, tub_w * 0.7, "body")
    b.ellipsoid((0.035, 0.03, 0.03), (-0.02, y0 + tub_h + 0.02, 0), "interior",
                subdivisions=1)
    # wings: a low one at the nose, a high one over the rear axle on two struts
    b.box((0.07, 0.01, track * 0.95), (0.45, y0 + 0.01, 0), "bumper", axis=2)
    rear_x = -0.45
    b.box((0.09, 0.014, track * 0.7), (rear_x, wing_y, 0), "bumper", axis=2)
    for s in (-1, 1):
        b.box((0.1, 0.06, 0.008), (rear_x, wing_y - 0.02, s * track * 0.35), "bumper")
        b.box((0.02, wing_y - y0 - tub_h, 0.01),
              (rear_x + 0.02, (wing_y + y0 + tub_h) / 2, s * 0.03), "bumper")
    b.box((0.012, 0.02, 0.04), (-0.5, y0 + tub_h * 0.6, 0), "taillight")
    for x in (0.5 - rng.uniform(0.15, 0.22), -0.5 + rng.uniform(0.12, 0.18)):
        for s in (-1, 1):
            z = s * (track / 2 - tyre_w / 2)
            b.cylinder(wheel_r, tyre_w, (x, wheel_r, z), "tyre", sections=16)
            b.cylinder(wheel_r * 0.55, tyre_w + 0.008, (x, wheel_r, z), "rim", sections=10)
