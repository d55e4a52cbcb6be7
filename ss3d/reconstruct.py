"""Single-image reconstruction: ``ss3d reconstruct IMAGE --mask MASK --model M -o out.obj``.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ss3d.config import ExperimentConfig
from ss3d.data.ingest import SkipImage, box_from_mask, read_image_and_mask, square_crop
from ss3d.engine import CheckpointError, select_device
from ss3d.eval.mesh import ExtractedMesh, extract_mesh, write_obj
from ss3d.model import ReconstructionNet, load_network

__all__ = ["ReconstructionError", "load_model_spec", "prepare_input", "reconstruct"]

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


MIN_MASK_PIXELS = 64  # an 8 x 8 object: below this a crop is an upscaled blur


def load_model_spec(spec: str, device: torch.device | str = "cpu"
                    ) -> tuple[ReconstructionNet, str, dict]:
    """``(network, description, checkpoint config or {})`` for a path, run id or model name."""
    from ss3d.stages.unified import REGISTERED_MODEL, load_unified

    path = Path(spec)
    if path.exists():
        if not path.is_file():
            raise ReconstructionError(f"--model {spec}: is a folder, not a checkpoint file")
        net, payload = load_network(path, device)  # CheckpointError names the file
        return net, f"checkpoint {path}", payload.get("config", {})
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
        net, payload = load_network(ckpt, device)
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
    try:  # read exactly as ingest does: EXIF orientation applied to image and mask alike
        rgb_full, raw = read_image_and_mask(image_path, mask_path)
    except SkipImage as why:
        culprit = mask_path if "mask" in str(why) else image_path
        wording = {"unreadable image": "not a readable image",
                   "unreadable mask": "not a readable mask image"}
        raise ReconstructionError(f"{culprit}: {why.detail or wording.get(str(why), why)}"
                                  ) from None
    mask = (raw >= 128).astype(np.uint8)
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


def reconstruct(image: str | Path, mask: str | Path, model: str, output: str | Path,
                turntable: str | Path | None = None, cfg: ExperimentConfig | None = None,
                device: str = "auto") -> Reconstruction:
    """Reconstruct one image; writes ``output`` (OBJ) and optionally a turntable GIF."""
    cfg = cfg or ExperimentConfig()
    output = Path(output)
    # everything that can be checked is checked before the model loads and the mesh is made
    _check_writable(output, "-o", ".obj", "the mesh is written as OBJ")
    if turntable is not None:
        _check_writable(Path(turntable), "--turntable", ".gif", "the turntable is a GIF")
    loaded = read_input(image, mask)  # the files, read and checked once
    dev = select_device(device)
    try:
        net, description, saved = load_model_spec(model, dev)
    except CheckpointError as err:
        raise ReconstructionError(str(err)) from None
    data = saved.get("data", {}) if isinstance(saved, dict) else {}
    crop_size = int(data.get("crop_size", cfg.data.crop_size))
    margin = float(data.get("crop_margin", cfg.data.crop_margin))
    inputs, crop, crop_mask = prepare_input(image, mask, crop_size, margin, loaded)
    e = cfg.evaluate
    with torch.no_grad():
        latent = net.encode(inputs[None].to(dev))
        mesh = extract_mesh(lambda p: net.query(p, latent), e.mesh_resolution,
                            e.density_threshold, peak_fraction=e.peak_fraction,
                            coarse_factor=e.coarse_factor, device=dev)
    if mesh.empty:
        raise ReconstructionError(f"{image}: the model predicts no surface above density "
                                  f"{mesh.level:g} (nothing written)")
    if e.mesh_colours == "image":
        from ss3d.eval.texture import paint_from_input

        fov = float(saved.get("render", {}).get("fov_degrees", cfg.render.fov_degrees)
                    if isinstance(saved, dict) else cfg.render.fov_degrees)
        with torch.no_grad():
            mesh = paint_from_input(mesh, lambda n: (lambda p: net.query(p, latent.expand(n, -1))),
                                    inputs.to(dev), crop_mask.to(dev), cfg, fov)
    gif = None
    if turntable is not None:  # the part that can fail (rendering) first, then the mesh
        from ss3d.eval.views import to_trimesh, write_turntable

        gif = write_turntable(to_trimesh(mesh), turntable, frames=e.turntable_frames,
                              size=max(e.figure_size, 128))
    try:
        write_obj(mesh, output)
    except BaseException:
        if gif is not None:
            gif.unlink(missing_ok=True)
        raise
    return Reconstruction(mesh, output, gif, description, crop)
