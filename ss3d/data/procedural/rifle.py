"""Long guns (front +X: the muzzle; the butt stock at -X; up +Y: the sights on top, grip and
magazine below; metre-like units, the bore along y = 0)."""

from __future__ import annotations

import numpy as np

from ss3d.data.procedural.builder import _Builder, _choice
from ss3d.data.procedural.materials import _PartStyle
from ss3d.data.procedural.primitives import _rot, _tf
from ss3d.data.procedural.registry import register

PALETTE: dict[str, _PartStyle] = {
    "stock": _PartStyle((0.07, 0.70, 0.52), "stripes"),
    "receiver": _PartStyle((0.00, 0.00, 0.16)),
    "barrel": _PartStyle((0.60, 0.15, 0.62)),
    "muzzle": _PartStyle((0.13, 0.85, 0.88)),
    "handguard": _PartStyle((0.28, 0.60, 0.60), "patches"),
    "grip": _PartStyle((0.99, 0.85, 0.72)),
    "magazine": _PartStyle((0.63, 0.65, 0.55)),
    "sight": _PartStyle((0.47, 0.80, 0.62)),
    "bolt": _PartStyle((0.57, 0.35, 0.90)),
    "trigger": _PartStyle((0.90, 0.70, 0.95)),
    "mount": _PartStyle((0.82, 0.45, 0.78)),
    "bayonet": _PartStyle((0.00, 0.00, 0.95)),
    "launcher": _PartStyle((0.16, 0.45, 0.70)),
}

# per kind (metres-like units; the normalisation removes the scale): stock, receiver and
# barrel lengths, bore radius, receiver height
_KINDS: dict[str, dict[str, tuple[float, float]]] = {
    "hunting": {"stock": (0.3, 0.4), "receiver": (0.17, 0.24), "barrel": (0.3, 0.85),
                "bore": (0.008, 0.012), "rec_h": (0.045, 0.06)},
    "assault": {"stock": (0.2, 0.3), "receiver": (0.2, 0.27), "barrel": (0.18, 0.5),
                "bore": (0.008, 0.011), "rec_h": (0.055, 0.08)},
    "sniper": {"stock": (0.28, 0.36), "receiver": (0.22, 0.28), "barrel": (0.45, 0.95),
               "bore": (0.011, 0.017), "rec_h": (0.05, 0.07)},
    "shotgun": {"stock": (0.3, 0.4), "receiver": (0.18, 0.25), "barrel": (0.25, 0.8),
                "bore": (0.011, 0.016), "rec_h": (0.05, 0.065)},
    "smg": {"stock": (0.15, 0.28), "receiver": (0.2, 0.3), "barrel": (0.06, 0.2),
            "bore": (0.007, 0.01), "rec_h": (0.06, 0.09)},
    "machine_gun": {"stock": (0.2, 0.3), "receiver": (0.28, 0.4), "barrel": (0.4, 0.65),
                    "bore": (0.012, 0.016), "rec_h": (0.08, 0.11)},
    "bullpup": {"stock": (0.02, 0.03), "receiver": (0.42, 0.55), "barrel": (0.15, 0.32),
                "bore": (0.008, 0.011), "rec_h": (0.09, 0.13)},
}


@register("rifle", PALETTE, core={"barrel", "muzzle", "receiver", "sight", "stock", "trigger"},
          front=("muzzle",), back=("stock",), top=("sight",))
def _rifle(b: _Builder, rng: np.random.Generator) -> None:
    """Long guns: ``hunting`` rifle (wooden stock with a pistol or straight wrist, half or
    full-length wooden forend, bolt handle, scope or iron sights, a box magazine or none),
    ``assault`` rifle (solid, tube, skeleton or side-folded stock, pistol grip, straight,
    curved or drum magazine, round or railed handguard, carry handle, red dot or scope; a
    grenade launcher on some), ``sniper`` rifle (skeleton or solid stock, long heavy barrel,
    big scope, box magazine), ``shotgun`` (``pump`` with a magazine tube and slide, or
    side-by-side ``double`` barrels; rib and bead sight), ``smg`` (short shrouded barrel,
    long or drum magazine), ``machine_gun`` (heavy jacketed barrel, belt box or drum, carry
    handle, on a bipod or a tripod) and ``bullpup`` (a tall body with a butt pad, the
    magazine behind the grip). A suppressor, a fixed bayonet, a bipod (deployed or folded)
    on some; a slender to chunky build (heights and widths 0.65–1.55×).

    Per kind: stock 0.02–0.4, receiver 0.17–0.55, barrel 0.06–0.95, bore radius
    0.007–0.017, receiver height 0.045–0.13; magazines 0.02–0.28 long, butt 0.1–0.22 high,
    scope 0.14–0.45 long, bipod legs 0.15–0.4, tripod legs 0.35–0.6. Colours: walnut
    stock, near-black receiver, steel-grey barrel, brass muzzle, green handguard, crimson
    grip, navy magazine, teal sights, steel-blue bolt, pink trigger, violet mount, white
    bayonet, khaki launcher.
    """
    kind = _choice(rng, list(_KINDS), [0.12, 0.17, 0.11, 0.08, 0.19, 0.17, 0.16])
    k = _KINDS[kind]
    stock_len, rec_len, barrel_len, bore, rec_h = (rng.uniform(*k[n]) for n in
                                                   ("stock", "receiver", "barrel", "bore",
                                                    "rec_h"))
    rec_w = rng.uniform(0.03, 0.045) * (1.4 if kind == "bullpup" else 1.0)
    x0, x1, tip, xb = 0.0, rec_len, rec_len + barrel_len, -stock_len
    y_t, y_b = rec_h * 0.55, -rec_h * 0.45
    b.variant.update(kind=kind, length=tip + stock_len, barrel_length=barrel_len, bore=bore)
    if kind == "bullpup":  # a tall body, the top line dropping at the front
        b.prism(np.array([(x0, y_t), (x1 * 0.75, y_t), (x1, y_t * 0.4), (x1, y_b),
                          (x0, y_b - 0.02)]), rec_w, "receiver")
    else:
        b.box((x1 - x0, rec_h, rec_w), ((x0 + x1) / 2, (y_t + y_b) / 2, 0), "receiver")

    # barrel(s) and muzzle
    suppressor = kind in ("assault", "sniper", "smg") and rng.uniform() < 0.3
    b.variant["muzzle"] = "suppressor" if suppressor else "brake"
    muzzle_len = rng.uniform(0.1, 0.22) if suppressor else rng.uniform(0.02, 0.07)
    tip += muzzle_len * suppressor
    double = kind == "shotgun" and rng.uniform() < 0.4
    zs = (-bore, bore) if double else (0.0,)
    for z in zs:
        b.segment([x1 - 0.01, 0, z], [tip - muzzle_len, 0, z], bore, "barrel", 12)
        r_mz = bore * (rng.uniform(1.1, 1.3) if kind == "shotgun" else rng.uniform(1.3, 2.2))
        r_mz = rng.uniform(0.018, 0.028) if suppressor else r_mz
        b.cylinder(r_mz, muzzle_len, (tip - muzzle_len / 2, 0, z), "muzzle", (1, 0, 0), 12)

    # stock at -X
    butt_h = rng.uniform(0.1, 0.22)
    gw, gl, slant = rng.uniform(0.03, 0.045), rng.uniform(0.08, 0.12), rng.uniform(0.015, 0.04)
    grip_x = x1 * rng.uniform(0.5, 0.6) if kind == "bullpup" else x0 + rng.uniform(0.0, 0.04)
    stock = {"hunting": "wood", "shotgun": "wood", "bullpup": "pad",
             "assault": _choice(rng, ["solid", "tube", "skeleton", "folded"]),
             "smg": _choice(rng, ["tube", "skeleton", "folded"]),
             "sniper": _choice(rng, ["skeleton", "solid"]), "machine_gun": "solid"}[kind]
    wrist = _choice(rng, ["pistol", "straight"]) if stock == "wood" else "grip"
    b.variant.update(stock=stock, wrist=wrist)
    drop = rng.uniform(0.0, 0.07) if stock == "wood" else rng.uniform(0.0, 0.015)
    sw = rec_w * rng.uniform(0.9, 1.2)
    heel, toe = y_t - drop, y_t - drop - butt_h
    if stock == "wood":
        pts = [(x0, y_t), (xb, heel), (xb, toe), (x0 - rng.uniform(0.08, 0.14),
                                                  y_b - rng.uniform(0.01, 0.03))]
        if wrist == "pistol":
            g = y_b - gl * 0.7
            pts += [(x0 - 0.02, g), (x0 + 0.01, g + 0.005), (x0 + 0.02, y_b)]
        else:
            pts += [(x0 + 0.02, y_b)]
        b.prism(np.array(pts), sw, "stock")
    elif stock == "solid":
        b.prism(np.array([(x0, y_t), (xb, heel), (xb, toe), (x0, y_b)]), sw, "stock")
    elif stock == "pad":
        b.box((stock_len, rec_h + 0.02, rec_w * 1.05), (xb / 2, (y_t + y_b - 0.02) / 2, 0),
              "stock")
    else:  # a buffer tube, or a skeleton (comb bar, lower strut); the butt plate
        n = len(b.parts)
        b.segment([x0 + 0.01, y_t * 0.3, 0], [xb + 0.02, y_t * 0.3, 0], rec_h * 0.25, "stock", 10)
        if stock in ("skeleton", "folded"):
            b.box((-xb, 0.015, sw), (xb / 2, heel - 0.0075, 0), "stock")
            b.segment([xb + 0.01, toe + 0.01, 0], [x0 - 0.01, y_b - gl * 0.6, 0], 0.008, "stock",
                      6)
        b.box((0.025, butt_h, sw * 1.1), (xb + 0.0125, (heel + toe) / 2, 0), "stock")
        if stock == "folded":  # swung forward about a hinge at the receiver's rear corner
            b.transform(_tf((x0, 0, rec_w / 2 + sw * 0.6), _rot("y", 180)), n)
    if wrist == "grip":  # a pistol grip, slanted back
        b.prism(np.array([(grip_x, y_b + 0.005), (grip_x + gw, y_b + 0.005),
                          (grip_x + gw - slant, y_b - gl), (grip_x - slant, y_b - gl)]),
                rec_w * 0.8, "grip")
    # trigger and its guard
    tx = grip_x + gw + 0.01 if wrist == "grip" else x0 + rng.uniform(0.03, 0.06)
    gy = y_b - rng.uniform(0.025, 0.035)
    guard = [(tx - 0.01, y_b), (tx - 0.006, gy), (tx + 0.04, gy), (tx + 0.05, y_b)]
    for p, q in zip(guard[:-1], guard[1:]):
        b.segment([*p, 0], [*q, 0], 0.003, "trigger", 6)
    b.box((0.006, y_b - gy - 0.004, 0.005), (tx + 0.01, (y_b + gy) / 2, 0), "trigger",
          rotation=_rot("z", 15))

    # magazine below the receiver: ahead of the trigger (behind the grip in a bullpup)
    mag = {"assault": _choice(rng, ["curved", "straight", "drum"], [0.45, 0.4, 0.15]),
           "hunting": _choice(rng, ["box", "none"]), "bullpup": "straight", "sniper": "box",
           "smg": _choice(rng, ["straight", "drum"], [0.7, 0.3]),
           "machine_gun": _choice(rng, ["belt_box", "drum"]),
           "shotgun": "none" if double else "tube"}[kind]
    b.variant["magazine"] = mag
    mx = x1 * rng.uniform(0.18, 0.3) if kind == "bullpup" else tx + 0.07
    if mag in ("curved", "straight", "box"):
        ml = rng.uniform(0.02, 0.09) if kind in ("hunting", "sniper") else rng.uniform(0.1, 0.28)
        mw = rng.uniform(0.035, 0.055)
        bend = rng.uniform(0.2, 0.6) * ml if mag == "curved" else 0.0
        t = np.linspace(0, 1, 7)
        cx, cy = mx + bend * t ** 2, y_b + 0.005 - ml * t
        b.prism(np.r_[np.c_[cx - mw / 2, cy], np.c_[cx + mw / 2, cy][::-1]], rec_w * 0.7,
                "magazine")
    elif mag == "drum":
        dr = rng.uniform(0.055, 0.09)
        b.cylinder(dr, rec_w * 1.3, (mx + dr * 0.3, y_b - dr * 0.9, 0), "magazine", sections=20)
    elif mag == "belt_box":  # an ammunition box hanging at the left
        bh = rng.uniform(0.08, 0.14)
        b.box((0.1, bh, 0.06), (mx, y_b - bh / 2 + 0.01, -rec_w / 2 - 0.02), "magazine")
    elif mag == "tube":
        b.segment([x1 - 0.01, -bore * 2.1, 0], [tip - muzzle_len - rng.uniform(0.0, 0.2),
                                               -bore * 2.1, 0], bore * 0.9, "magazine", 10)

    # forend / handguard around or under the barrel
    fl = rng.uniform(0.14, 0.32) * (0.5 if kind == "bullpup" else 1.0)
    if kind == "smg":  # a shroud over most of the short barrel
        fl = (tip - muzzle_len - x1) * rng.uniform(0.5, 1.0)
    if kind == "machine_gun":  # a cooling jacket over the heavy barrel
        fl = (tip - muzzle_len - x1) * rng.uniform(0.5, 0.85)
    if kind in ("assault", "bullpup", "smg", "machine_gun"):
        rail = "round" if kind == "machine_gun" else _choice(rng, ["rail", "round"])
        b.variant["handguard"] = rail
        hr = rng.uniform(0.018, 0.03) * (1.3 if kind == "machine_gun" else 1.0)
        b.cylinder(hr, fl, (x1 + fl / 2, 0, 0), "handguard", (1, 0, 0), 8 if rail == "rail" else 14)
        if kind == "assault" and rng.uniform() < 0.25:  # an under-barrel grenade launcher
            b.variant["launcher"] = "yes"
            lr, ll = rng.uniform(0.02, 0.026), min(fl, rng.uniform(0.18, 0.28))
            b.segment([x1 + 0.01, -hr - lr, 0], [x1 + 0.01 + ll, -hr - lr, 0], lr, "launcher", 12)
            b.box((0.05, 0.05, 0.02), (x1 + 0.03, -hr - lr * 2 - 0.02, 0), "launcher")
    elif kind == "shotgun" and not double:  # the pump slide
        slide = rng.uniform(0.1, 0.18)
        b.cylinder(bore * 2.2, slide, (x1 + rng.uniform(0.05, 0.15) + slide / 2, -bore, 0),
                   "handguard", (1, 0, 0), 12)
    else:
        forend = "full" if kind == "hunting" and rng.uniform() < 0.5 else "half"
        b.variant["forend"] = forend
        fl = {"full": tip - x1 - 0.06, "half": fl * (0.6 if kind == "shotgun" else 1.0)}[forend]
        b.prism(np.array([(x1 - 0.02, bore * 0.4), (x1 + fl, bore * 0.4), (x1 + fl, -bore * 1.5),
                          (x1 + fl * 0.8, y_b - 0.005), (x1 - 0.02, y_b - 0.005)]),
                rec_w * 0.9 * (1.5 if double else 1.0), "handguard")

    # sights on top
    sight = {"sniper": "scope", "shotgun": "bead",
             "hunting": "scope" if rng.uniform() < 0.65 else "iron",
             "assault": _choice(rng, ["carry_handle", "red_dot", "scope"]),
             "bullpup": _choice(rng, ["carry_handle", "scope"]),
             "smg": _choice(rng, ["red_dot", "iron"]),
             "machine_gun": _choice(rng, ["carry_handle", "scope"], [0.7, 0.3])}[kind]
    b.variant["sight"] = sight
    if sight == "scope":
        big = kind in ("sniper", "machine_gun")
        sl = rng.uniform(0.3, 0.45) if big else rng.uniform(0.14, 0.32)
        sr = rng.uniform(0.015, 0.02) if big else rng.uniform(0.011, 0.016)
        lift = rng.uniform(0.015, 0.04)
        ys = y_t + lift + sr
        xr = (x0 + x1) / 2 - sl / 2 + rng.uniform(-0.02, 0.05)
        r_obj, r_oc = sr * rng.uniform(1.3, 2.2), sr * 1.35
        prof = np.array([[0, 0], [r_oc, 0], [r_oc, 0.08 * sl], [sr, 0.22 * sl], [sr, 0.68 * sl],
                         [r_obj, 0.84 * sl], [r_obj, sl], [0, sl]])
        b.revolve(prof, "sight", _tf((xr, ys, 0), _rot("z", -90)), sections=14)
        b.cylinder(sr * 0.6, sr * 1.2, (xr + sl * 0.45, ys + sr * 1.3, 0), "sight", (0, 1, 0), 8)
        for f in (0.3, 0.62):  # mounts
            b.box((0.012, lift + sr, rec_w * 0.5), (xr + f * sl, y_t + (lift + sr) / 2, 0),
                  "sight")
    elif sight == "carry_handle":
        hl, hh = rng.uniform(0.1, 0.18), rng.uniform(0.03, 0.06)
        xc = (x0 + x1) / 2 + (x1 * 0.15 if kind == "bullpup" else 0.0)
        b.box((hl, 0.012, rec_w * 0.45), (xc, y_t + hh, 0), "sight")
        for s in (-1, 1):
            b.box((0.012, hh, rec_w * 0.45), (xc + s * (hl / 2 - 0.006), y_t + hh / 2, 0),
                  "sight")
    elif sight == "red_dot":
        rr = rng.uniform(0.012, 0.02)
        xc = (x0 + x1) / 2 + rng.uniform(-0.03, 0.03)
        b.box((0.03, 0.01, rec_w * 0.6), (xc, y_t + 0.005, 0), "sight")
        b.cylinder(rr, rng.uniform(0.03, 0.06), (xc, y_t + 0.01 + rr, 0), "sight", (1, 0, 0), 12)
    if sight in ("iron", "carry_handle", "red_dot") and kind != "bullpup":  # a front post
        fx = tip - muzzle_len - 0.03 if kind == "hunting" else min(x1 + fl, tip - muzzle_len)
        fh = rng.uniform(0.015, 0.035) + (0.0 if kind == "hunting" else y_t)
        b.prism(np.array([(fx - fh * 0.4, 0), (fx + fh * 0.4, 0), (fx + 0.003, fh),
                          (fx - 0.003, fh)]), 0.006, "sight")
    if sight == "iron":
        rear = (x1 + 0.04, bore + 0.006) if kind == "hunting" else (x0 + 0.03, y_t + 0.006)
        b.box((0.02, 0.012, rec_w * 0.6), (*rear, 0), "sight")
    if sight == "bead":  # a vent rib along the barrel(s), a bead at the muzzle
        top = bore * 1.05
        b.box((tip - x1, 0.005, 0.008), ((tip + x1) / 2, top + 0.0025, 0), "sight")
        b.ellipsoid((0.005, 0.005, 0.005), (tip - 0.008, top + 0.008, 0), "sight",
                    subdivisions=1)

    # bolt handle (bolt actions) or charging handle
    if kind in ("hunting", "sniper"):
        bx = x0 + rng.uniform(0.03, 0.06)
        knob = np.array([bx - 0.02, y_b, rec_w / 2 + rng.uniform(0.03, 0.05)])
        b.segment([bx, y_t * 0.5, rec_w / 2 - 0.003], knob, 0.004, "bolt", 6)
        b.ellipsoid((0.009, 0.009, 0.009), knob, "bolt", subdivisions=1)
    else:
        b.box((0.025, 0.008, rec_w * 1.3), (x1 * 0.8, y_t - 0.004, 0), "bolt")

    if kind in ("hunting", "assault") and rng.uniform() < 0.2:  # a fixed bayonet
        b.variant["bayonet"] = "yes"
        bl, by = rng.uniform(0.15, 0.3), -bore - 0.012
        b.box((0.05, 0.012, 0.012), (tip - 0.04, by + 0.004, 0), "bayonet")
        b.prism(np.array([(tip - 0.02, by - 0.01), (tip + bl * 0.8, by - 0.012),
                          (tip + bl, by + 0.006), (tip - 0.02, by + 0.01)]), 0.005, "bayonet")

    # a bipod under the forend (deployed or folded), or a tripod
    mount = {"sniper": _choice(rng, ["deployed", "folded", "none"], [0.7, 0.15, 0.15]),
             "hunting": _choice(rng, ["deployed", "folded", "none"], [0.25, 0.1, 0.65]),
             "assault": _choice(rng, ["deployed", "folded", "none"], [0.15, 0.05, 0.8]),
             "machine_gun": _choice(rng, ["tripod", "deployed"], [0.6, 0.4])}.get(kind, "none")
    b.variant["mount"] = mount
    bx, by = x1 + rng.uniform(0.1, 0.2), y_b
    leg = rng.uniform(0.15, 0.4)
    if mount == "tripod":
        leg = rng.uniform(0.35, 0.6)
        top = np.array([x1 * 0.7, y_b - 0.04, 0])
        b.box((0.06, 0.05, 0.05), top + [0, 0.02, 0], "mount")
        for end in ([leg * 0.55, -leg, 0], [-leg * 0.7, -leg, leg * 0.5],
                    [-leg * 0.7, -leg, -leg * 0.5]):
            b.segment(top, top + end, 0.009, "mount", 6)
    elif mount != "none":
        for s in (-1, 1):
            if mount == "folded":
                end = [min(bx + leg, tip - 0.05), by - 0.012, s * 0.012]
            else:
                end = [bx + leg * 0.15, by - leg, s * leg * rng.uniform(0.25, 0.4)]
            b.segment([bx, by, s * 0.006], end, 0.004, "mount", 6)
        b.box((0.02, 0.012, 0.03), (bx, by - 0.004, 0), "mount")
    heft = rng.uniform(0.65, 1.55)  # slender to chunky (the same as shorter or longer)
    b.transform(np.diag([1.0, heft, heft, 1.0]))
