"""Input-view fidelity: does a reconstruction explain the image it was given?"""

from __future__ import annotations

import math

import torch

from ss3d.cameras import Intrinsics
from ss3d.config import load_config
from ss3d.eval.texture import input_view_camera, input_view_fit
from ss3d.volume import render_images

from .test_camera_offsets import OffCentreCar, _cropped_photo


def _sphere(radius: float):
    def field(points):
        inside = (points.norm(dim=-1, keepdim=True) < radius).float()
        return torch.zeros(*points.shape[:-1], 3), inside * 500.0
    return field


def _disc_radius(radius: float, distance: float, intrinsics: Intrinsics) -> float:
    """Pixels of a sphere's silhouette disc: half-angle asin(r / d) through the focal."""
    return intrinsics.focal * math.tan(math.asin(radius / distance))


def test_a_sphere_explains_its_own_silhouette_and_a_smaller_one_the_disc_ratio():
    """Mutation caught: rendering from any camera but the one given (e.g. the offset ignored,
    or azimuth and elevation swapped for an off-axis sphere) drops the IoU below 1."""
    cfg = load_config(None, {"model.n_samples": 96})
    intr = Intrinsics.from_fov(40.0, 48)
    camera = (30.0, 20.0, 2.0, 0.1, -0.05)
    offset = torch.tensor([camera[3:]])
    with torch.no_grad():
        own = render_images(_sphere(0.4), *(torch.tensor([v]) for v in camera[:3]), intr,
                            n_samples=96, offset=offset)
    mask = (own["mask"][0] > 0.5).float()
    image = own["rgb"][0].permute(2, 0, 1) * mask
    fit = input_view_fit(_sphere(0.4), image, mask, camera, intr, cfg)
    assert fit["input_mask_iou"] == 1.0 and fit["input_psnr"] > 40
    smaller = input_view_fit(_sphere(0.3), image, mask, camera, intr, cfg)
    ratio = (_disc_radius(0.3, 2.0, intr) / _disc_radius(0.4, 2.0, intr)) ** 2
    assert abs(smaller["input_mask_iou"] - ratio) < 0.04, (smaller, ratio)
    # the same sphere seen through a centred camera misses by the offset
    centred = input_view_fit(_sphere(0.4), image, mask, camera[:3], intr, cfg)
    assert centred["input_mask_iou"] < 0.8


def test_a_photos_searched_camera_carries_its_box_offset_with_offsets():
    """On a photo cropped around its box, the input-view camera searched with
    selftrain.offsets has five parts and fits the photo better than the centred search."""
    net = OffCentreCar()
    image, mask, where = _cropped_photo(net, (35.0, 25.0, 2.4), (0.1, -0.08))
    intr = Intrinsics.from_fov(40.0, 32)
    fits = {}
    for offsets in (False, True):
        cfg = load_config(None, {"selftrain.score_size": 16, "selftrain.grid_samples": 32,
                                 "selftrain.offsets": offsets, "evaluate.camera_refine": 0,
                                 "model.n_samples": 64})
        camera = input_view_camera(lambda n: (lambda p: net.query(p, None)), image, mask[0],
                                   cfg)
        assert len(camera) == (5 if offsets else 3)
        fits[offsets] = input_view_fit(lambda p: net.query(p, None), image, mask[0], camera,
                                       intr, cfg)["input_mask_iou"]
        if offsets:
            assert max(abs(camera[3] - float(where[0])), abs(camera[4] - float(where[1]))) < 0.1
    assert fits[True] > 0.75 and fits[True] - fits[False] > 0.1, fits


def test_pretraining_validation_reads_the_input_view_from_its_own_camera():
    """validation_metrics' input_mask_iou: a sphere against its own input silhouettes is 1, a
    smaller sphere the disc ratio. Mutation caught: rendering the input view from a novel
    view's camera (or the input rendered at a centred distance) moves both."""
    from ss3d.eval.baselines import sphere_field
    from ss3d.stages.pretrain import ValidationSet, render_validation, validation_metrics

    cfg = load_config(None, {"model.n_samples": 96})
    intr = Intrinsics.from_fov(40.0, 32)
    cams = torch.tensor([[0.0, 10.0, 2.0], [120.0, -20.0, 2.5]])
    ball = sphere_field(0.4, torch.full((3,), 0.5))
    with torch.no_grad():
        own = render_images(lambda p: ball(None, p), *cams.T, intr, n_samples=96)
    masks = (own["mask"] > 0.5).float()
    images = own["rgb"].permute(0, 3, 1, 2) * masks[:, None]
    # novel views: the other model's input camera, so a mix-up would show
    val = ValidationSet(images=images, azimuth=cams[[1, 0], :1], elevation=cams[[1, 0], 1:2],
                        distance=cams[[1, 0], 2:], masks=masks[:, None],
                        rgb=own["rgb"][:, None] * masks[:, None, ..., None],
                        categories=["a", "b"], intrinsics=intr, input_azimuth=cams[:, 0],
                        input_elevation=cams[:, 1], input_distance=cams[:, 2],
                        input_masks=masks)
    metrics = validation_metrics(render_validation(ball, val, cfg, torch.device("cpu")), val)
    assert metrics["input_mask_iou"] == 1.0 and metrics["input_psnr"] > 30
    small = validation_metrics(render_validation(sphere_field(0.3, torch.full((3,), 0.5)), val,
                                                 cfg, torch.device("cpu")), val)
    expected = [(_disc_radius(0.3, d, intr) / _disc_radius(0.4, d, intr)) ** 2 for d in (2.0, 2.5)]
    assert abs(small["input_mask_iou.a"] - expected[0]) < 0.05, (small, expected)
    assert abs(small["input_mask_iou.b"] - expected[1]) < 0.05, (small, expected)
