"""benchmarks/pose_ceiling.py: ground-truth meshes as fields, read through the volume renderer,
and the separability reading."""

from __future__ import annotations

from pathlib import Path

import torch

from ss3d.cameras import Intrinsics
from ss3d.config import load_config
from ss3d.data.procedural import generate_category
from ss3d.data.render import MeshRenderer
from ss3d.data.shapenet import load_model
from ss3d.volume import render_images

from .conftest import load_benchmark

ceiling = load_benchmark("pose_ceiling")
CAMERAS = [(30.0, 20.0, 2.0), (160.0, -10.0, 2.2), (260.0, 35.0, 1.8)]


def _car(tmp_path):
    return load_model(generate_category(tmp_path, "car", 1)[0])


def _renders(parts, size=32):
    intr = Intrinsics.from_fov(40.0, size)
    with MeshRenderer(intr) as renderer:
        scene = renderer.scene_for(parts)
        out = [renderer.render(scene, *c) for c in CAMERAS]
    return intr, out


def test_mesh_field_renders_the_meshs_silhouette(tmp_path):
    """The voxelised winding-number field, rendered by ss3d.volume, covers pyrender's mask of
    the same mesh (IoU >= 0.85 at 32 px from a 48-voxel grid) and takes the mesh's colours."""
    parts = _car(tmp_path)
    density, colour = ceiling.mesh_grids(parts, resolution=48)
    intr, renders = _renders(parts)
    net = ceiling.GroundTruthShapes(torch.zeros(1, 3, 2, 2), torch.zeros(1, dtype=torch.long),
                                    density[None], colour[None])
    cams = torch.tensor(CAMERAS)
    with torch.no_grad():
        out = render_images(lambda p: net.query(p, torch.zeros(p.shape[0], 1)), *cams.T, intr,
                            n_samples=96)
    for k, (_, mask, _) in enumerate(renders):
        volume = (out["mask"][k] > 0.5).numpy()
        iou = (volume & mask).sum() / (volume | mask).sum()
        assert iou >= 0.85, (k, iou)
    # colours: the field's mean colour on the object is the mesh's unlit colour, near the lit
    # render's (pyrender's shading darkens some faces)
    rgb, mask, _ = renders[0]
    lit = torch.from_numpy(rgb[mask > 0] / 255.0).float().mean(0)
    assert (out["rgb"][0][out["mask"][0] > 0.5].mean(0) - lit).abs().max() < 0.25


def test_encode_recognises_each_photo_and_query_reads_its_mesh():
    images = torch.rand(3, 3, 8, 8)
    density = torch.zeros(2, 1, 4, 4, 4)
    density[1] = 1.0  # model 1 is solid, model 0 empty
    net = ceiling.GroundTruthShapes(images, torch.tensor([0, 1, 1]), density,
                                    torch.full((2, 3, 2, 2, 2), 0.5))
    latent = net.encode(images[[2, 0, 1]])
    assert latent[:, 0].tolist() == [2.0, 0.0, 1.0]
    _, dens = net.query(torch.zeros(3, 5, 3), latent)
    assert dens[:, :, 0].tolist() == [[ceiling.DENSITY] * 5, [0.0] * 5, [ceiling.DENSITY] * 5]


class _Photos(torch.utils.data.Dataset):
    def __init__(self, renders):
        self.items = [{"image": torch.from_numpy(rgb * (mask[..., None] > 0)).permute(2, 0, 1)
                       .float() / 255, "mask": torch.from_numpy(mask).float()[None]}
                      for rgb, mask, _ in renders]
        self.image_ids = [str(k) for k in range(len(renders))]
        self.crop_size = renders[0][1].shape[0]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, k):
        return {**self.items[k], "index": torch.tensor(k)}


def test_separability_ranks_the_true_rotation_first_for_the_true_shape(tmp_path):
    """The car's own mesh explains each render best at its true rotation (an asymmetric car
    from three sides), and a wrong turn reads clearly lower; a sphere separates nothing."""
    parts = _car(tmp_path)
    density, colour = ceiling.mesh_grids(parts, resolution=40, colour_resolution=8)
    _, renders = _renders(parts)
    photos = _Photos(renders)
    images = torch.stack([photos[k]["image"] for k in range(3)])
    net = ceiling.GroundTruthShapes(images, torch.zeros(3, dtype=torch.long), density[None],
                                    colour[None])
    truth = {str(k): {"azimuth": c[0], "elevation": c[1]} for k, c in enumerate(CAMERAS)}
    cfg = load_config(None, {"selftrain.grid_samples": 32, "selftrain.distance_range": [1.5, 2.5],
                             "selftrain.grid_distances": [1.7, 2.3]})
    sep = ceiling.separability(net, photos, truth, cfg, size=32)
    assert sep["true_ranks_first"] == 1.0, sep
    assert sep["iou_true"] > 0.85 and sep["iou_true"] - sep["iou_wrong_mean"] > 0.15, sep
    ball = (ceiling._grid_points(40).norm(dim=-1) < 0.3).float()[None]
    sphere = ceiling.GroundTruthShapes(images, torch.zeros(3, dtype=torch.long), ball[None],
                                       colour[None])
    flat = ceiling.separability(sphere, photos, truth, cfg, size=32)
    assert abs(flat["iou_true"] - flat["iou_wrong_mean"]) < 0.02, flat
    assert flat["true_ranks_first"] == 0.0  # ties never rank first


def test_several_checkpoints_are_named_by_their_run_folder():
    name = ceiling.checkpoint_name
    assert name(Path("outputs/sweeps/prior_steps/steps_7200-seed0/smoke/pretrain/last.pt")) \
        == "steps_7200-seed0"
    assert name(Path("mlartifacts/exp/0123abcd/artifacts/checkpoints/last.pt")) == "0123abcd"
    assert name(Path("last.pt")) == "last"
