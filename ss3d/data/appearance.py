"""Photo-like appearance: procedural textures and materials, coloured lights from any side, and
the nuisances of a camera (white balance, exposure, blur, noise, JPEG).

An :class:`AppearanceSet` is a distribution over those. Three are built in
(:data:`APPEARANCE_SETS`):

* ``plain``: the renders as they always were (part colours, a white headlight and a white key
  light from above, no camera nuisances). It draws nothing from the random stream, so data
  rendered with it is the same to the bit as before the sets existed.
* ``photo``: what training may see: textures from the families ``noise``, ``grain``,
  ``checker`` and ``stripes``; daylight to overcast light colour (4500–7500 K); the key light
  within 40° of the camera; matte to satin materials.
* ``heldout``: what training never sees, to measure transfer: other texture families
  (``marble``, ``dots``, ``cells``), tungsten-warm light (2600–3600 K), the key light low from
  the side (50–80° off the camera), glossier materials. Camera nuisances are drawn from the
  same ranges as ``photo``: they are not what the held-out set tests.

Where the draws happen, and so what stays constant:

* :func:`sample_material` once per *instance* (its texture and material are the same in every
  view, so multi-view colour supervision stays consistent);
* :func:`sample_lighting` and :func:`sample_camera` once per *image*.

Textures modulate the part colours (a pattern times the atlas, then a hue rotation); part
boundaries and front/back cues stay where the category put them. Meshes without a texture
(vertex colours, e.g. some real ShapeNet parts) keep their colours; lights, material and camera
nuisances still apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

__all__ = ["APPEARANCE_SETS", "AppearanceSet", "CameraNuisance", "Lighting", "Material",
           "TEXTURE_FAMILIES", "apply_camera", "appearance_set", "kelvin_to_rgb",
           "sample_camera", "sample_lighting", "sample_material", "texture_pattern",
           "textured_image"]


@dataclass(frozen=True)
class AppearanceSet:
    """A distribution over textures, materials, lights and camera nuisances.

    Ranges are ``(low, high)`` of a uniform draw. ``None`` / empty: that nuisance is off (the
    plain renders' behaviour).
    """

    name: str
    textures: tuple[str, ...] = ()  # families of :data:`TEXTURE_FAMILIES`; () = part colours
    texture_strength: tuple[float, float] = (0.0, 0.0)  # how deep the pattern darkens
    hue_shift: float = 0.0  # max |Δhue| (fraction of the colour wheel) per instance
    roughness: tuple[float, float] | None = None
    metallic: tuple[float, float] | None = None
    kelvin: tuple[float, float] | None = None  # key light colour temperature; None: white
    key_azimuth: tuple[float, float] | None = None  # |offset| from the camera (deg), either side
    key_elevation: tuple[float, float] = (0.0, 0.0)  # offset above the camera's axis (deg)
    intensity: tuple[float, float] | None = None  # None: the renderer's own intensity
    white_balance: float = 0.0  # max relative deviation of each channel's gain
    exposure: tuple[float, float] = (1.0, 1.0)  # gain on the whole image
    gamma: tuple[float, float] = (1.0, 1.0)
    blur_sigma: tuple[float, float] = (0.0, 0.0)  # Gaussian defocus, pixels
    noise_sigma: tuple[float, float] = (0.0, 0.0)  # sensor noise, in 0–255 units
    jpeg_quality: tuple[int, int] | None = None  # None: no JPEG round trip

    @property
    def is_plain(self) -> bool:
        return self == AppearanceSet(self.name)


_CAMERA_NUISANCES = dict(white_balance=0.12, exposure=(0.75, 1.25), gamma=(0.85, 1.15),
                         blur_sigma=(0.0, 0.9), noise_sigma=(0.0, 5.0), jpeg_quality=(55, 95))

APPEARANCE_SETS: dict[str, AppearanceSet] = {
    "plain": AppearanceSet("plain"),
    "photo": AppearanceSet(
        "photo", textures=("noise", "grain", "checker", "stripes"),
        texture_strength=(0.25, 0.6), hue_shift=0.08, roughness=(0.5, 1.0), metallic=(0.0, 0.3),
        kelvin=(4500.0, 7500.0), key_azimuth=(0.0, 40.0), key_elevation=(0.0, 40.0),
        intensity=(2.5, 6.0), **_CAMERA_NUISANCES),
    "heldout": AppearanceSet(
        "heldout", textures=("marble", "dots", "cells"), texture_strength=(0.25, 0.6),
        hue_shift=0.08, roughness=(0.2, 0.45), metallic=(0.3, 0.5), kelvin=(2600.0, 3600.0),
        key_azimuth=(50.0, 80.0), key_elevation=(-10.0, 20.0), intensity=(2.5, 6.0),
        **_CAMERA_NUISANCES),
}


def appearance_set(name: str) -> AppearanceSet:
    """The built-in set ``name``; a ``ValueError`` names the known ones."""
    try:
        return APPEARANCE_SETS[name]
    except KeyError:
        raise ValueError(f"unknown appearance set {name!r}; known: "
                         f"{', '.join(APPEARANCE_SETS)}") from None


# --- per instance: texture and material ------------------------------------------------------


@dataclass(frozen=True)
class Material:
    """One instance's look: a texture family (``None``: part colours), its strength and seed,
    a hue rotation, and PBR roughness / metallic (``None``: the mesh's own)."""

    texture: str | None = None
    strength: float = 0.0
    pattern_seed: int = 0
    hue_shift: float = 0.0
    roughness: float | None = None
    metallic: float | None = None


def _uniform(rng: np.random.Generator, bounds: Sequence[float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def sample_material(rng: np.random.Generator, s: AppearanceSet) -> Material:
    """One instance's :class:`Material`; ``plain`` draws nothing and returns the identity."""
    if s.is_plain:
        return Material()
    texture = str(s.textures[int(rng.integers(len(s.textures)))]) if s.textures else None
    return Material(
        texture=texture, strength=_uniform(rng, s.texture_strength),
        pattern_seed=int(rng.integers(2**31)), hue_shift=_uniform(rng, (-s.hue_shift,
                                                                       s.hue_shift)),
        roughness=_uniform(rng, s.roughness) if s.roughness else None,
        metallic=_uniform(rng, s.metallic) if s.metallic else None)


def _value_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise in [0, 1]: a ``cells``² random grid upsampled bicubically to ``size``²."""
    grid = rng.uniform(0, 1, (cells, cells)).astype(np.float32)
    return np.clip(cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC), 0, 1)


def _turbulence(rng: np.random.Generator, size: int) -> np.ndarray:
    """Fractal noise in [0, 1]: octaves of :func:`_value_noise`, halving in amplitude."""
    total = np.zeros((size, size), np.float32)
    weight = 0.0
    for octave in range(4):
        amplitude = 0.5 ** octave
        total += amplitude * _value_noise(rng, size, 3 * 2 ** octave)
        weight += amplitude
    return total / weight


def texture_pattern(family: str, size: int, seed: int) -> np.ndarray:
    """A ``(size, size)`` float32 pattern in [0, 1] of texture ``family`` (1 = untouched).

    Training families: ``noise`` (fractal blotches), ``grain`` (wood-like rings), ``checker``,
    ``stripes`` (at an angle). Held-out families: ``marble`` (turbulent veins), ``dots``,
    ``cells`` (the borders of random cells).
    """
    rng = np.random.default_rng(seed)
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float32) + 0.5) / size
    if family == "noise":
        pattern = _turbulence(rng, size)
    elif family == "grain":
        cx, cy = rng.uniform(-0.5, 1.5, 2)
        r = np.hypot(xx - cx, yy - cy) + 0.08 * _turbulence(rng, size)
        pattern = 0.5 + 0.5 * np.sin(2 * np.pi * r * rng.uniform(6, 14))
    elif family == "checker":
        cells = int(rng.integers(4, 12))
        pattern = ((np.floor(xx * cells) + np.floor(yy * cells)) % 2).astype(np.float32)
    elif family == "stripes":
        angle = rng.uniform(0, np.pi)
        t = xx * np.cos(angle) + yy * np.sin(angle)
        pattern = (np.sin(2 * np.pi * t * rng.uniform(5, 16)) > 0).astype(np.float32)
    elif family == "marble":
        angle = rng.uniform(0, np.pi)
        t = xx * np.cos(angle) + yy * np.sin(angle)
        veins = np.abs(np.sin(2 * np.pi * (t * rng.uniform(2, 5) + 1.5 * _turbulence(rng,
                                                                                 size))))
        pattern = veins ** 0.35
    elif family == "dots":
        cells = int(rng.integers(5, 12))
        fx, fy = (xx * cells) % 1 - 0.5, (yy * cells) % 1 - 0.5
        pattern = (np.hypot(fx, fy) > rng.uniform(0.2, 0.35)).astype(np.float32)
    elif family == "cells":
        seeds = rng.uniform(0, 1, (int(rng.integers(12, 30)), 2)).astype(np.float32)
        d = np.sort(np.hypot(xx[..., None] - seeds[:, 0], yy[..., None] - seeds[:, 1]), axis=-1)
        pattern = np.clip((d[..., 1] - d[..., 0]) * size / 3.0, 0, 1)  # dark near borders
    else:
        raise ValueError(f"unknown texture family {family!r}; known: "
                         f"{', '.join(TEXTURE_FAMILIES)}")
    return np.clip(pattern, 0, 1).astype(np.float32)


TEXTURE_FAMILIES = ("noise", "grain", "checker", "stripes", "marble", "dots", "cells")


def textured_image(image: np.ndarray, material: Material) -> np.ndarray:
    """``image (H, W, 3) uint8`` (a texture atlas) with ``material``'s pattern and hue.

    The pattern darkens by up to ``strength``: ``rgb × (1 − strength × (1 − pattern))``.
    """
    out = image
    if material.hue_shift:
        hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL)
        hsv[..., 0] = (hsv[..., 0].astype(np.int32) + round(material.hue_shift * 256)) % 256
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)
    if material.texture is not None:
        h, w = out.shape[:2]
        pattern = texture_pattern(material.texture, max(h, w), material.pattern_seed)[:h, :w]
        gain = 1.0 - material.strength * (1.0 - pattern)
        out = np.clip(out.astype(np.float32) * gain[..., None], 0, 255).round().astype(np.uint8)
    return out


# --- per image: light and camera -------------------------------------------------------------


def kelvin_to_rgb(kelvin: float) -> np.ndarray:
    """``(3,)`` RGB in [0, 1] of a black body at ``kelvin`` (1000–40000 K), normalised so its
    brightest channel is 1.

    Tanner Helland's fit to the CIE black-body colours: close enough for light tints, and no
    colour-science library in the stack provides it.
    """
    t = float(np.clip(kelvin, 1000.0, 40000.0)) / 100.0
    if t <= 66:
        r = 255.0
        g = 99.4708025861 * np.log(t) - 161.1195681661
        b = 0.0 if t <= 19 else 138.5177312231 * np.log(t - 10) - 305.0447927307
    else:
        r = 329.698727446 * (t - 60) ** -0.1332047592
        g = 288.1221695283 * (t - 60) ** -0.0755148492
        b = 255.0
    rgb = np.clip(np.array([r, g, b]), 0, 255) / 255.0
    return rgb / rgb.max()


@dataclass(frozen=True)
class Lighting:
    """One image's key light: a rotation of the headlight (camera frame, ``(3, 3)``), its colour
    ``(3,)`` in [0, 1] and intensity (``None``: the renderer's)."""

    rotation: np.ndarray | None = None
    color: np.ndarray | None = None
    intensity: float | None = None


def _rotation_x(degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def _rotation_y(degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def sample_lighting(rng: np.random.Generator, s: AppearanceSet) -> Lighting:
    """One image's :class:`Lighting`; ``plain`` draws nothing and returns the identity.

    The key light is the headlight turned by an azimuth offset (either side) and an elevation
    offset, both in the camera's frame (a light behind the camera's shoulder, not behind the
    object).
    """
    if s.is_plain:
        return Lighting()
    rotation = None
    if s.key_azimuth is not None:
        azimuth = _uniform(rng, s.key_azimuth) * (1.0 if rng.uniform() < 0.5 else -1.0)
        # OpenGL camera frame (+Y up, looking down −Z), and a light shines down its own −Z:
        # turning it by −elevation about x points its direction downward, so a positive
        # elevation offset lights from above
        rotation = _rotation_y(azimuth) @ _rotation_x(-_uniform(rng, s.key_elevation))
    color = kelvin_to_rgb(_uniform(rng, s.kelvin)) if s.kelvin else None
    intensity = _uniform(rng, s.intensity) if s.intensity else None
    return Lighting(rotation, color, intensity)


@dataclass(frozen=True)
class CameraNuisance:
    """One image's camera: per-channel gains, exposure, gamma, blur, noise, JPEG quality."""

    gains: np.ndarray = field(default_factory=lambda: np.ones(3))
    exposure: float = 1.0
    gamma: float = 1.0
    blur_sigma: float = 0.0
    noise_sigma: float = 0.0
    noise_seed: int = 0
    jpeg_quality: int | None = None

    @property
    def is_identity(self) -> bool:
        return (bool(np.all(self.gains == 1.0)) and self.exposure == 1.0 and self.gamma == 1.0
                and self.blur_sigma == 0.0 and self.noise_sigma == 0.0
                and self.jpeg_quality is None)


def sample_camera(rng: np.random.Generator, s: AppearanceSet) -> CameraNuisance:
    """One image's :class:`CameraNuisance`; ``plain`` draws nothing and returns the identity."""
    if s.is_plain:
        return CameraNuisance()
    return CameraNuisance(
        gains=rng.uniform(1 - s.white_balance, 1 + s.white_balance, 3),
        exposure=_uniform(rng, s.exposure), gamma=_uniform(rng, s.gamma),
        blur_sigma=_uniform(rng, s.blur_sigma), noise_sigma=_uniform(rng, s.noise_sigma),
        noise_seed=int(rng.integers(2**31)),
        jpeg_quality=int(rng.integers(s.jpeg_quality[0], s.jpeg_quality[1] + 1))
        if s.jpeg_quality else None)


def apply_camera(rgb: np.ndarray, camera: CameraNuisance) -> np.ndarray:
    """``rgb (H, W, 3) uint8`` as ``camera`` would record it: white balance and exposure, gamma,
    defocus blur, sensor noise, then a JPEG round trip. The identity returns ``rgb`` itself."""
    if camera.is_identity:
        return rgb
    x = rgb.astype(np.float32) / 255.0 * (camera.gains * camera.exposure)[None, None]
    x = np.clip(x, 0, 1) ** camera.gamma
    if camera.blur_sigma > 0:
        x = cv2.GaussianBlur(x, (0, 0), camera.blur_sigma)
    x = x * 255.0
    if camera.noise_sigma > 0:
        x = x + np.random.default_rng(camera.noise_seed).normal(0, camera.noise_sigma, x.shape)
    out = np.clip(x, 0, 255).round().astype(np.uint8)
    if camera.jpeg_quality is not None:
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR),
                                [cv2.IMWRITE_JPEG_QUALITY, camera.jpeg_quality])
        if not ok:  # cv2 only fails on invalid input, which out is not
            raise RuntimeError("JPEG encoding failed")
        out = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return out
