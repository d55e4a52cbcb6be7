"""Reconstruction from photos: ``ss3d reconstruct IMAGE --mask MASK --model M -o out.obj``, or
many at once with the model loaded once (``ss3d reconstruct a.jpg b.jpg --mask a.png b.png -o
DIR``, or a folder of images and one of masks).

The image is cropped and padded exactly like the training collections (the box of the mask's
largest component, ``crop_margin`` per side, square, resized to ``crop_size``, background 0),
encoded, and the density field is turned into a vertex-coloured mesh (marching cubes) and,
optionally, a turntable GIF. Everything is read and checked before anything is written.

``MODEL`` is a checkpoint path, an MLflow run id (its ``checkpoints/last.pt``) or a registered
model: ``ss3d-unified`` (latest version) or ``ss3d-unified/3``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ss3d.config import ExperimentConfig
from ss3d.data.ingest import SkipImage, box_from_mask, read_image_and_mask, square_crop
from ss3d.engine import CheckpointError, select_device
from ss3d.eval.mesh import ExtractedMesh, extract_mesh, write_obj
from ss3d.model import ReconstructionNet, load_network

__all__ = ["Pairing", "Reconstructor", "ReconstructionError", "load_model_spec", "pair_inputs",
           "prepare_input", "reconstruct", "reconstruct_many"]

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


class ReconstructionError(ValueError):
    """Bad input to ``ss3d reconstruct`` (the message names the file and the problem)."""


@dataclass
class Reconstruction:
    mesh: ExtractedMesh
    obj: Path
    turntable: Path | None
    model: str
    input_crop: np.ndarray
    # how well the reconstruction explains its own input, from the camera the model's field
    # fits it best from (ss3d.eval.texture.input_view_fit): input_mask_iou, input_psnr
    fit: dict[str, float] = field(default_factory=dict)

    def fit_line(self) -> str:
        """``input-view fit: mask IoU 0.81, PSNR 17.2 dB`` (empty without a fit)."""
        if not self.fit:
            return ""
        return (f"input-view fit: mask IoU {self.fit['input_mask_iou']:.2f}, "
                f"PSNR {self.fit['input_psnr']:.1f} dB")


MIN_MASK_PIXELS = 64  # an 8 x 8 object: below this a crop is an upscaled blur
FULL_MASK = 0.995  # a "mask" this full has no background: a photo read as a mask, or inverted
#: A mask is black and white, soft at its edge: more than this share of pixels in between
#: (grey 32..223) is a photo, not a mask.
GREY_SHARE = 0.2
COLOUR_SHARE = 0.01  # pixels whose channels differ by more than 24 levels: a colour image


def check_mask_file(path: Path) -> None:
    """A :class:`ReconstructionError` when ``path`` is readable but no mask: a colour image
    (its channels differ), or a grey photo (many pixels neither near black nor near white)."""
    import cv2

    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    if raw is None:
        return  # unreadable: read_image_and_mask says so
    if raw.dtype != np.uint8:
        raw = (raw.astype(np.float64) * 255.0 / max(float(raw.max()), 1.0)).astype(np.uint8)
    if raw.ndim == 3 and raw.shape[2] >= 3:
        channels = raw[..., :3].astype(np.int16)
        spread = channels.max(axis=2) - channels.min(axis=2)
        if (spread > 24).mean() > COLOUR_SHARE:
            raise ReconstructionError(f"{path}: a colour image, not a mask (a mask is black "
                                      "background and white object, one channel)")
        raw = raw[..., 0]
    elif raw.ndim == 3:
        raw = raw[..., 0]
    grey = ((raw >= 32) & (raw <= 223)).mean()
    if grey > GREY_SHARE:
        raise ReconstructionError(f"{path}: {grey:.0%} of its pixels are grey (32..223): a "
                                  "photo, not a mask (black background, white object)")


def load_model_spec(spec: str, device: torch.device | str = "cpu"
                    ) -> tuple[ReconstructionNet, str, dict]:
    """``(network, description, checkpoint config or {})`` for a path, run id or model name."""
    path = Path(spec)
    if path.exists():
        if not path.is_file():
            raise ReconstructionError(f"--model {spec}: is a folder, not a checkpoint file")
        net, payload = load_network(path, device, skip_init=True)  # errors name the file
        return net, f"checkpoint {path}", payload.get("config", {})
    # MLflow takes seconds to import: only for models that live there
    from ss3d.stages.unified import REGISTERED_MODEL, load_unified

    if spec == REGISTERED_MODEL or spec.startswith(f"{REGISTERED_MODEL}/"):
        version = spec.split("/", 1)[1] if "/" in spec else "latest"
        try:
            net = load_unified(version)
        except Exception as err:  # MLflow raises its own exception types
            raise ReconstructionError(f"--model {spec}: no such registered model version "
                                      f"({type(err).__name__}: {err})") from None
        return net.to(device).eval(), f"registered model {spec}", {}
    if _RUN_ID.match(spec):
        from ss3d import tracking

        try:
            ckpt = tracking.artifact_path(spec, "checkpoints/last.pt")
        except Exception as err:
            raise ReconstructionError(f"--model {spec}: no MLflow run with a checkpoint "
                                      f"({type(err).__name__}: {err})") from None
        net, payload = load_network(ckpt, device, skip_init=True)
        return net, f"MLflow run {spec}", payload.get("config", {})
    raise ReconstructionError(f"--model {spec}: not an existing checkpoint file, an MLflow run "
                              f"id or '{REGISTERED_MODEL}[/VERSION]'")


def read_input(image_path: str | Path, mask_path: str | Path
               ) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    """Checked, upright ``rgb (H, W, 3)``, ``mask (H, W)`` {0, 1} and the object's box."""
    image_path, mask_path = Path(image_path), Path(mask_path)
    for label, p in (("image", image_path), ("mask", mask_path)):
        if not p.is_file():
            raise ReconstructionError(f"{label} not found: {p}")
    if image_path.resolve() == mask_path.resolve():
        raise ReconstructionError(f"{image_path} would be its own mask: give the mask file "
                                  "(folders: --mask-pattern, e.g. 'mask_{id}')")
    check_mask_file(mask_path)
    try:  # read exactly as ingest does: EXIF orientation applied to image and mask alike
        rgb_full, raw = read_image_and_mask(image_path, mask_path)
    except SkipImage as why:
        culprit = mask_path if "mask" in str(why) else image_path
        wording = {"unreadable image": "not a readable image",
                   "unreadable mask": "not a readable mask image"}
        raise ReconstructionError(f"{culprit}: {why.detail or wording.get(str(why), why)}"
                                  ) from None
    mask = (raw >= 128).astype(np.uint8)
    if mask.mean() > FULL_MASK:
        raise ReconstructionError(f"{mask_path}: the mask covers {mask.mean():.1%} of the image, "
                                  "no background: is it a mask (white object on black)?")
    if 0 < mask.sum() < MIN_MASK_PIXELS:
        raise ReconstructionError(f"{mask_path}: the mask covers {int(mask.sum())} pixel(s); "
                                  f"at least {MIN_MASK_PIXELS} are needed to see a shape")
    try:
        box = box_from_mask(mask)
    except SkipImage:
        raise ReconstructionError(f"{mask_path}: the mask is empty (no pixel >= 128)") from None
    return rgb_full, mask, box


def prepare_input(image_path: str | Path, mask_path: str | Path, crop_size: int,
                  margin: float, loaded: tuple | None = None
                  ) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    """The network input ``(3, S, S)``, the crop as uint8 ``(S, S, 3)`` and its mask
    ``(S, S)``; ``loaded``: what :func:`read_input` already returned for these files."""
    rgb_full, mask, box = loaded or read_input(image_path, mask_path)
    rgb, crop_mask, _ = square_crop(rgb_full, mask, box, crop_size, margin)
    if crop_mask.sum() == 0:
        raise ReconstructionError(f"{Path(mask_path)}: the mask vanishes at {crop_size} px")
    tensor = torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()
    return tensor, rgb, torch.from_numpy(crop_mask.astype(np.float32))


def _check_writable(path: Path, flag: str, suffix: str, what: str) -> None:
    """Fail before any work when ``path`` cannot be written as a ``suffix`` file."""
    if path.is_dir():
        raise ReconstructionError(f"{flag} {path}: is a folder; give a file name such as "
                                  f"{path / ('mesh' + suffix)}")
    if path.suffix.lower() != suffix:
        raise ReconstructionError(f"{flag} {path}: {what} (use a {suffix} name)")
    existing = next(p for p in [path.parent, *path.parent.parents] if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ReconstructionError(f"{flag} {path}: cannot write into {existing}")


class Reconstructor:
    """A model loaded once, for any number of inputs (``ss3d reconstruct a.jpg b.jpg ...``):
    the crop settings and field of view come from the checkpoint's config where it has them."""

    def __init__(self, model: str, cfg: ExperimentConfig | None = None, device: str = "auto"):
        self.cfg = cfg or ExperimentConfig()
        self.device = select_device(device)
        try:
            self.net, self.description, saved = load_model_spec(model, self.device)
        except CheckpointError as err:
            raise ReconstructionError(str(err)) from None
        saved = saved if isinstance(saved, dict) else {}
        data = saved.get("data", {})
        self.crop_size = int(data.get("crop_size", self.cfg.data.crop_size))
        self.margin = float(data.get("crop_margin", self.cfg.data.crop_margin))
        self.fov = float(saved.get("render", {}).get("fov_degrees", self.cfg.render.fov_degrees))

    @torch.no_grad()
    def mesh(self, image: str | Path, mask: str | Path, loaded: tuple | None = None
             ) -> tuple[ExtractedMesh, np.ndarray, dict[str, float]]:
        """The coloured mesh of one input, its crop ``(S, S, 3)`` and its input-view fit
        (``input_mask_iou``, ``input_psnr``: the field rendered from the camera it explains the
        crop best from, the camera the colours are painted through); an input the model sees
        no surface in is a :class:`ReconstructionError`."""
        net, dev, e = self.net, self.device, self.cfg.evaluate
        inputs, crop, crop_mask = prepare_input(image, mask, self.crop_size, self.margin, loaded)
        latent = net.encode(inputs[None].to(dev))
        mesh = extract_mesh(lambda p: net.query(p, latent), e.mesh_resolution,
                            e.density_threshold, peak_fraction=e.peak_fraction,
                            coarse_factor=e.coarse_factor, device=dev)
        if mesh.empty:
            raise ReconstructionError(f"{image}: the model predicts no surface above density "
                                      f"{mesh.level:g} (nothing written)")
        from ss3d.cameras import Intrinsics
        from ss3d.eval.texture import image_colours, input_view_camera, input_view_fit

        def field_for(n: int):
            return lambda p: net.query(p, latent.expand(n, -1))

        image_t, mask_t = inputs.to(dev), crop_mask.to(dev)
        camera = input_view_camera(field_for, image_t, mask_t, self.cfg, self.fov)
        fit = input_view_fit(field_for(1), image_t, mask_t, camera,
                             Intrinsics.from_fov(self.fov, inputs.shape[-1]), self.cfg)
        if e.mesh_colours == "image":
            mesh = image_colours(mesh, inputs, crop_mask, camera, self.fov)
        return mesh, crop, fit

    def write(self, mesh: ExtractedMesh, output: Path, turntable: Path | None) -> Path | None:
        """The OBJ and (optionally) the turntable GIF: the part that can fail (rendering)
        first, and no GIF left behind when the mesh cannot be written."""
        gif = None
        if turntable is not None:
            from ss3d.eval.views import to_trimesh, write_turntable

            e = self.cfg.evaluate
            gif = write_turntable(to_trimesh(mesh), turntable, frames=e.turntable_frames,
                                  size=max(e.figure_size, 128))
        try:
            write_obj(mesh, output)
        except BaseException:
            if gif is not None:
                gif.unlink(missing_ok=True)
            raise
        return gif


def reconstruct(image: str | Path, mask: str | Path, model: str, output: str | Path,
                turntable: str | Path | None = None, cfg: ExperimentConfig | None = None,
                device: str = "auto") -> Reconstruction:
    """Reconstruct one image; writes ``output`` (OBJ) and optionally a turntable GIF."""
    output = Path(output)
    # everything that can be checked is checked before the model loads and the mesh is made
    _check_writable(output, "-o", ".obj", "the mesh is written as OBJ")
    if turntable is not None:
        _check_writable(Path(turntable), "--turntable", ".gif", "the turntable is a GIF")
    loaded = read_input(image, mask)  # the files, read and checked once
    job = Reconstructor(model, cfg, device)
    mesh, crop, fit = job.mesh(image, mask, loaded)
    gif = job.write(mesh, output, Path(turntable) if turntable is not None else None)
    return Reconstruction(mesh, output, gif, job.description, crop, fit)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


@dataclass
class Pairing:
    """What :func:`pair_inputs` paired: ``pairs`` ``(image, mask)``, the files it left out
    (``skipped``: file name -> why) and how it paired them (``rule``)."""

    pairs: list[tuple[Path, Path]]
    skipped: dict[str, str]
    rule: str

    def summary(self) -> str:
        """One line, then one per skipped file: what was paired with what, what was not."""
        lines = [f"paired {len(self.pairs)} image(s) with their masks ({self.rule})"
                 + (f"; skipped {len(self.skipped)} file(s):" if self.skipped else "")]
        lines += [f"  skipped {name}: {why}" for name, why in sorted(self.skipped.items())]
        return "\n".join(lines)


def _pattern(text: str, flag: str) -> re.Pattern:
    """``rgb_{id}`` -> a regular expression over file stems with the group ``id``."""
    if text.count("{id}") != 1:
        raise ReconstructionError(f"{flag} {text!r}: name the shared part of the file name "
                                  "once as {id}, e.g. 'rgb_{id}' or 'mask_{id}'")
    before, after = text.split("{id}")
    return re.compile(f"^{re.escape(before)}(?P<id>.+?){re.escape(after)}$")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower()
                  in IMAGE_SUFFIXES)


def _shared_prefixes(files: list[Path]) -> str:
    """``'rgb_{id}' and 'mask_{id}'`` where the stems start with two prefixes before a number,
    for the error message of a folder given as its own masks."""
    prefixes = sorted({m.group(1) for p in files if (m := re.match(r"^(\D+?)\d", p.stem))})
    return (f" (here: --image-pattern '{prefixes[1]}{{id}}' --mask-pattern "
            f"'{prefixes[0]}{{id}}'?)" if len(prefixes) == 2 else "")


def pair_inputs(images: list[str | Path], masks: list[str | Path],
                image_pattern: str = "{id}", mask_pattern: str = "{id}") -> Pairing:
    """``(image, mask)`` pairs: the images and masks in the order given, or the files of an
    image folder and a mask folder (the same folder, or two) matched by the part of their
    names that ``image_pattern`` and ``mask_pattern`` call ``{id}`` (by default the whole
    name: ``a.jpg`` with ``a.png``). An image is never its own mask: a folder given as its
    own masks needs two patterns that tell images from masks (``rgb_{id}``, ``mask_{id}``)."""
    images, masks = [Path(p) for p in images], [Path(p) for p in masks]
    if len(images) == 1 and images[0].is_dir():
        if len(masks) != 1 or not masks[0].is_dir():
            raise ReconstructionError(f"{images[0]} is a folder of images: give --mask a "
                                      "folder of masks (or the same folder with --mask-pattern)")
        return _pair_folders(images[0], masks[0], image_pattern, mask_pattern)
    if len(images) != len(masks):
        raise ReconstructionError(f"{len(images)} image(s) and {len(masks)} mask(s): give one "
                                  "mask per image, in the same order")
    for image, mask in zip(images, masks):
        if image.resolve() == mask.resolve():
            raise ReconstructionError(f"{image} would be its own mask: give its mask file")
    return Pairing(list(zip(images, masks)), {}, "in the order given")


def _roles(files: list[Path], image_re: re.Pattern, mask_re: re.Pattern,
           specific: str) -> tuple[dict[str, Path], dict[str, Path], dict[str, str]]:
    """``(images by id, masks by id, skipped)`` of files that may be either; a file both
    patterns match is the ``specific`` one's (the pattern with more fixed characters)."""
    images: dict[str, Path] = {}
    masks: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    for p in files:
        as_image, as_mask = image_re.match(p.stem), mask_re.match(p.stem)
        if as_image and as_mask:
            as_image, as_mask = (as_image, None) if specific == "image" else (None, as_mask)
        found, role = (as_image, images) if as_image else (as_mask, masks)
        if found is None:
            skipped[p.name] = "matches neither pattern"
        elif found.group("id") in role:
            raise ReconstructionError(f"{p.parent}: two files for '{found.group('id')}': "
                                      f"{role[found.group('id')].name}, {p.name}")
        else:
            role[found.group("id")] = p
    return images, masks, skipped


def _pair_folders(image_dir: Path, mask_dir: Path, image_pattern: str, mask_pattern: str
                  ) -> Pairing:
    same = image_dir.resolve() == mask_dir.resolve()
    files = _images_in(image_dir)
    if same and image_pattern == mask_pattern:
        raise ReconstructionError(
            f"{image_dir} is given as its own masks: every image would be its own mask. Tell "
            f"images from masks with --image-pattern and --mask-pattern{_shared_prefixes(files)}")
    if not files:
        raise ReconstructionError(f"{image_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
    image_re = _pattern(image_pattern, "--image-pattern")
    mask_re = _pattern(mask_pattern, "--mask-pattern")
    if same:
        specific = "image" if len(image_pattern) > len(mask_pattern) else "mask"
        images, masks, skipped = _roles(files, image_re, mask_re, specific)
    else:
        images, _, skipped = _roles(files, image_re, re.compile("(?!)"), "image")
        _, masks, mask_skipped = _roles(_images_in(mask_dir), re.compile("(?!)"), mask_re,
                                        "mask")
        skipped.update({f"{mask_dir.name}/{k}": v for k, v in mask_skipped.items()})
    pairs = [(images[i], masks.pop(i)) for i in sorted(images) if i in masks]
    skipped.update({images[i].name: f"no mask {mask_pattern.replace('{id}', i)}"
                    for i in sorted(images) if all(images[i] != p for p, _ in pairs)})
    skipped.update({p.name: "a mask without its image" for p in masks.values()})
    if not pairs:
        raise ReconstructionError(f"{image_dir}: no image has a mask ({image_pattern} ↔ "
                                  f"{mask_pattern} in {mask_dir}): " + "; ".join(
                                      f"{k}: {v}" for k, v in list(skipped.items())[:5]))
    pairs.sort()
    return Pairing(pairs, skipped, f"{image_pattern} ↔ {mask_pattern}"
                   + ("" if same else f", masks from {mask_dir}"))


def reconstruct_many(pairs: list[tuple[Path, Path]], model: str, out_dir: str | Path,
                     turntables: bool = False, cfg: ExperimentConfig | None = None,
                     device: str = "auto", progress: bool = True
                     ) -> tuple[list[Reconstruction], dict[str, str]]:
    """Reconstruct every ``(image, mask)`` with one loaded model: ``<out_dir>/<stem>.obj``
    (and ``<stem>.gif``). Every input is read and checked before the model loads (a bad one
    fails the call, naming it, with nothing written); an input the model sees no surface in is
    reported in the returned ``{image: reason}`` and skipped."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    stems = [image.stem for image, _ in pairs]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise ReconstructionError(f"two inputs would write the same mesh: {', '.join(twice)} "
                                  f"(outputs are named <image name>.obj in {out_dir})")
    if out_dir.exists() and not out_dir.is_dir():
        raise ReconstructionError(f"-o {out_dir}: with several inputs, -o is a folder")
    _check_writable(out_dir / "check.obj", "-o", ".obj", "")
    loaded, bad = {}, []
    for image, mask in pairs:
        try:
            loaded[image] = read_input(image, mask)
        except ReconstructionError as err:
            bad.append(str(err))
    if bad:
        raise ReconstructionError(f"{len(bad)} of {len(pairs)} input(s) cannot be read "
                                  "(nothing written): " + "; ".join(bad[:5]))
    job = Reconstructor(model, cfg, device)
    out_dir.mkdir(parents=True, exist_ok=True)
    done, skipped = [], {}
    for image, mask in tqdm(pairs, desc="reconstruct", unit="image", disable=not progress):
        try:
            mesh, crop, fit = job.mesh(image, mask, loaded[image])
        except ReconstructionError as err:
            skipped[str(image)] = str(err)
            continue
        output = out_dir / f"{image.stem}.obj"
        gif = job.write(mesh, output, out_dir / f"{image.stem}.gif" if turntables else None)
        done.append(Reconstruction(mesh, output, gif, job.description, crop, fit))
    return done, skipped
