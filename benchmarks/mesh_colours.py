"""Mesh colours from the colour head vs read from the input image (``ss3d.eval.texture``).

    .venv/bin/python benchmarks/mesh_colours.py CHECKPOINT [--config experiments/smoke.yaml]
        [--per-category 10]

For the first ``--per-category`` held-out synthetic models of every category, the model's mesh
is coloured both ways and rendered unlit (pyrender, flat shading: the vertex colours as they
are) from the evaluation's novel views, against the true renders of those views:

* colour spread (``ss3d.image_metrics.colour_spread``): 1 = the object varies as much as the
  truth;
* mean-colour error: L1 between the mean predicted and mean true colour on the object pixels
  both masks share (does the mesh have the *instance's* colours?);
* PSNR of the whole view (shape errors included);
* ``azimuth_within_30``: how often the estimated input camera's azimuth is within 30° of
  the true one.

About 1 minute for 10 models per category on 2 CPU cores (a pre-trained smoke model).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import h5py
import numpy as np
import pyrender
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ss3d.cameras import camera_to_world_opengl  # noqa: E402
from ss3d.config import load_config  # noqa: E402
from ss3d.data.render import MeshRenderer  # noqa: E402
from ss3d.eval.items import synthetic_items  # noqa: E402
from ss3d.eval.mesh import ExtractedMesh, extract_mesh  # noqa: E402
from ss3d.eval.texture import image_colours, input_view_camera  # noqa: E402
from ss3d.eval.views import to_trimesh  # noqa: E402
from ss3d.image_metrics import colour_spread, psnr  # noqa: E402
from ss3d.model import load_network  # noqa: E402
from ss3d.stages.data import data_paths  # noqa: E402


def unlit(renderer: MeshRenderer, mesh: ExtractedMesh, camera: tuple[float, float, float],
          size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(size, size, 3)`` premultiplied colours and ``(size, size)`` mask of a flat render."""
    scene = renderer.scene_for([to_trimesh(mesh)])
    node = scene.add(renderer._camera, pose=camera_to_world_opengl(*camera)[0].double().numpy())
    try:
        colour, depth = renderer._renderer.render(
            scene, flags=pyrender.RenderFlags.RGBA | pyrender.RenderFlags.FLAT)
    finally:
        scene.remove_node(node)
    mask = torch.from_numpy(depth > 0).float()
    planes = torch.cat([torch.from_numpy(colour[..., :3].copy()).float() / 255 * mask[..., None],
                        mask[..., None]], -1)
    if planes.shape[0] != size:  # the renderer may supersample
        planes = F.interpolate(planes.permute(2, 0, 1)[None], size=size,
                               mode="area")[0].permute(1, 2, 0)
    return planes[..., :3], planes[..., 3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--config", default="experiments/smoke.yaml")
    parser.add_argument("--per-category", type=int, default=10)
    args = parser.parse_args()
    cfg = load_config(args.config)
    paths = data_paths(cfg)
    items, intrinsics = synthetic_items(cfg, paths.renders, paths)
    net, _ = load_network(args.checkpoint)
    with h5py.File(paths.renders, "r") as f:  # view 0 of each model is the input
        input_azimuth = dict(zip(f["model_id"].asstr()[:], f["azimuth"][:, 0].tolist()))
    e = cfg.evaluate
    results: dict[str, dict[str, list[float]]] = {}
    counts: dict[str, int] = {}
    with MeshRenderer(intrinsics, background=(0.0, 0.0, 0.0)) as renderer, torch.no_grad():
        for item in items:
            if counts.get(item.category, 0) >= args.per_category or item.mask is None:
                continue
            counts[item.category] = counts.get(item.category, 0) + 1
            latent = net.encode(item.image[None])
            mesh = extract_mesh(lambda p, latent=latent: net.query(p, latent),
                                e.mesh_resolution, e.density_threshold,
                                peak_fraction=e.peak_fraction, coarse_factor=e.coarse_factor)
            if mesh.empty:
                continue
            camera = input_view_camera(
                lambda n, latent=latent: (lambda p: net.query(p, latent.expand(n, -1))),
                item.image, item.mask, cfg)
            painted = image_colours(mesh, item.image, item.mask, camera, cfg.render.fov_degrees)
            r = results.setdefault(item.category, {})
            novel = item.novel
            for label, m in (("field", mesh), ("image", painted)):
                spread, error, quality = [], [], []
                for v in range(novel["azimuth"].shape[0]):
                    cam = tuple(float(novel[k][v]) for k in ("azimuth", "elevation", "distance"))
                    rgb, mask = unlit(renderer, m, cam, novel["rgb"].shape[1])
                    true_rgb, true_mask = novel["rgb"][v], novel["masks"][v]
                    spread.append(float(colour_spread(rgb[None], mask[None], true_rgb[None],
                                                      true_mask[None])[0]))
                    both = (mask > 0.5) & (true_mask > 0.5)
                    if both.any():
                        ours = (rgb[both] / mask[both][:, None]).mean(0)
                        theirs = (true_rgb[both] / true_mask[both][:, None]).mean(0)
                        error.append(float((ours - theirs).abs().mean()))
                    quality.append(float(psnr(rgb, true_rgb)))
                r.setdefault(f"spread_{label}", []).append(float(np.nanmean(spread)))
                r.setdefault(f"mean_colour_error_{label}", []).append(
                    float(np.mean(error)) if error else float("nan"))
                r.setdefault(f"psnr_{label}", []).append(float(np.mean(quality)))
            error = (camera[0] - input_azimuth[item.key] + 180.0) % 360.0 - 180.0
            r.setdefault("azimuth_within_30", []).append(float(abs(error) < 30.0))
    keys = sorted({k for r in results.values() for k in r})
    print("category  " + "  ".join(keys))
    for category, r in [*results.items(), ("all", {k: sum((r.get(k, []) for r in
                                                          results.values()), []) for k in keys})]:
        print(f"{category:10s}" + "  ".join(f"{np.nanmean(r[k]):.3f}" for k in keys))


if __name__ == "__main__":
    main()
