"""Camera hypotheses with a principal-point offset (selftrain.offsets): a photo cropped around
its object's box, as every collection photo is, puts the object's origin off the image centre,
which a centred look-at camera cannot represent."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ss3d.cameras import Intrinsics, pixel_rays, project_points
from ss3d.config import load_config
from ss3d.data.ingest import box_from_mask, square_crop
from ss3d.engine import Runtime, load_checkpoint, save_checkpoint
from ss3d.hypotheses import CameraBank, geodesic_degrees
from ss3d.hypotheses import rotation_matrices as rot
from ss3d.image_metrics import mask_iou
from ss3d.scoring import box_centres, selection_losses, shift_images
from ss3d.stages.selftrain import selftrain_stage
from ss3d.stages.selftrain_loops import initialise_from_grid, optimise_cameras
from ss3d.volume import render_images

from .test_selftrain import AnalyticCar, _cfg, tiny_setup  # noqa: F401 (a fixture)


class OffCentreCar(AnalyticCar):
    """The analytic car moved off the origin, so that its box centre and its origin project
    to different pixels (a bird's tail does the same to a real bird's box)."""

    def query(self, points, latent):
        return super().query(points - torch.tensor([0.12, 0.08, 0.0]), latent)


def test_offset_shifts_the_principal_point_exactly():
    """A pixel ray of a camera with offset (du, dv) is the ray of the centred camera through
    the pixel (du·W, dv·H) away, and points project accordingly."""
    intr = Intrinsics.from_fov(40.0, 20)
    offset = torch.tensor([[0.1, -0.25]])
    pixels = torch.tensor([[[3.5, 7.5], [10.0, 10.0]]])
    _, moved = pixel_rays(30.0, 10.0, 2.0, intr, pixels=pixels, offset=offset)
    _, plain = pixel_rays(30.0, 10.0, 2.0, intr, pixels=pixels - offset * 20)
    torch.testing.assert_close(moved, plain)
    uv, _ = project_points(torch.zeros(1, 1, 3), 30.0, 10.0, 2.0, intr, offset=offset)
    torch.testing.assert_close(uv[0, 0], torch.tensor([12.0, 5.0]))


def test_shifting_a_render_is_rendering_with_the_offset():
    """shift_images of a centred render equals the render with that principal-point offset
    (the grid scores every pose this way instead of rendering twice); box_centres finds the
    move between them."""
    net = OffCentreCar()
    intr = Intrinsics.from_fov(40.0, 32)
    cams = torch.tensor([[40.0, 20.0, 2.4]])
    offset = torch.tensor([[0.125, -0.0625]])  # whole pixels: bilinear moves them exactly
    with torch.no_grad():
        field = lambda p: net.query(p, None)  # noqa: E731
        centred = render_images(field, *cams.T, intr, n_samples=48)
        moved = render_images(field, *cams.T, intr, n_samples=48, offset=offset)
    shifted = shift_images(centred["mask"][:, None], offset)[:, 0]
    torch.testing.assert_close(shifted, moved["mask"], atol=1e-4, rtol=0)
    torch.testing.assert_close(box_centres(moved["mask"]) - box_centres(centred["mask"]),
                               offset)
    assert box_centres(torch.zeros(1, 8, 8)).tolist() == [[0.5, 0.5]]


def _cropped_photo(net: nn.Module, camera: tuple[float, float, float],
                   shift: tuple[float, float]):
    """A 64-px render moved in the frame by ``shift``, cropped square around its mask's box
    (margin 0.25) and resized to 32 px, as photos are ingested; and where the object's origin
    falls in the crop, in fractions of its side from the centre."""
    big = Intrinsics.from_fov(40.0, 64)
    offset = torch.tensor([shift])
    with torch.no_grad():
        out = render_images(lambda p: net.query(p, None), *torch.tensor([camera]).T, big,
                            n_samples=64, offset=offset)
    mask = (out["mask"][0] > 0.5).numpy().astype(np.uint8)
    rgb = (out["rgb"][0].clamp(0, 1) * 255).numpy().astype(np.uint8)
    crop_rgb, crop_mask, crop_box = square_crop(rgb, mask, box_from_mask(mask), 32, 0.25)
    origin, _ = project_points(torch.zeros(1, 1, 3), *camera, big, offset=offset)
    side = float(crop_box[2] - crop_box[0])
    where = (origin[0, 0].numpy() - crop_box[:2]) / side - 0.5
    image = torch.from_numpy(crop_rgb).permute(2, 0, 1).float() / 255
    return image, torch.from_numpy(crop_mask).float()[None], torch.from_numpy(where).float()


def search_cropped_photos():
    """Grid start, camera search and choice, as self-training runs them, with and without
    offsets, on three cropped photos of the off-centre car."""
    net = OffCentreCar()
    cfg = load_config(None, {"selftrain.score_size": 16, "selftrain.grid_samples": 32,
                             "selftrain.selection_size": 32, "selftrain.camera_samples": 32,
                             "selftrain.camera_steps": 25, "selftrain.camera_rays": 256,
                             "selftrain.camera_lr": 0.03, "selftrain.viewpoint_weight": 0.0,
                             "render.fov_degrees": 40.0})
    truth = [(35.0, 25.0, 2.4), (200.0, -10.0, 2.6), (290.0, 10.0, 2.2)]
    shifts = [(0.1, -0.08), (-0.12, 0.05), (0.0, 0.1)]
    photos = [_cropped_photo(net, c, s) for c, s in zip(truth, shifts)]
    images = torch.stack([p[0] for p in photos])
    masks = torch.stack([p[1] for p in photos])
    where = torch.stack([p[2] for p in photos])
    dataset = [{"image": images[i], "mask": masks[i], "index": torch.tensor(i)}
               for i in range(3)]
    intr = Intrinsics.from_fov(40.0, 32)
    index = torch.arange(3)
    found = {}
    for offsets in (False, True):
        cfg.selftrain.offsets = offsets
        bank = CameraBank(["a", "b", "c"], 4, seed=0, offsets=offsets)
        with torch.no_grad():
            initialise_from_grid(net, dataset, bank, cfg, Runtime(torch.device("cpu")), index,
                                 progress=False)
        torch.manual_seed(0)
        raw, _, _ = optimise_cameras(net, torch.zeros(3, 1), images, masks,
                                     list(bank.raw(index)), bank, intr, cfg, index=index)
        bank.set_raw(index, raw)
        with torch.no_grad():
            chosen = selection_losses(net, torch.zeros(3, 1), images, masks, bank, index,
                                      cfg).argmin(-1)
            az, el, dist = (c[index, chosen] for c in bank.cameras(index))
            offset = None if not offsets else bank.offsets(index)[index, chosen]
            render = render_images(lambda p: net.query(p, None), az, el, dist, intr,
                                   n_samples=64, offset=offset)
        found[offsets] = {"rotation": rot(az, el), "offset": offset, "distance": dist,
                          "iou": mask_iou((render["mask"] > 0.5).float(), masks[:, 0])}
    return found, torch.tensor(truth), where


@pytest.fixture(scope="module")
def searched():
    return search_cropped_photos()


def test_offsets_recover_the_rotation_and_where_the_origin_fell(searched):
    found, truth, where = searched
    new = found[True]
    errors = geodesic_degrees(new["rotation"], rot(truth[:, 0], truth[:, 1]))
    assert (errors < 20).all(), errors
    # the origin's place in the crop, to within 2 pixels of 32 (it is up to 4.6 away)
    assert (new["offset"] - where).abs().max() < 2 / 32, (new["offset"], where)
    # the true rotation, exact offset and best distance reach 0.88-0.96 on these small masks
    # (a distance stands in for the crop's zoom only approximately)
    assert (new["iou"] > 0.75).all(), new["iou"]


def test_centred_cameras_cannot_fit_a_cropped_photo(searched):
    """Without offsets the same search leaves the chosen renders off their photos: the crop
    moved the origin by up to a seventh of the side, and no centred camera moves it back."""
    found, _, where = searched
    assert where.abs().max() > 0.1  # the photos do need an offset
    assert (found[True]["iou"] - found[False]["iou"]).mean() > 0.15, (
        found[True]["iou"], found[False]["iou"])
    assert found[False]["iou"].mean() < 0.7


def test_bank_offsets_save_resume_and_old_banks_load(tmp_path):
    bank = CameraBank(["a", "b"], 3, seed=1, offsets=True)
    bank.set_offsets(torch.arange(2), torch.full((2, 3, 2), 0.2))
    save_checkpoint(tmp_path / "c.pt", stage="selftrain", step=1, config={},
                    model=nn.Linear(1, 1), extra={"bank": bank.state_dict()})
    loaded = CameraBank(["b", "a"], 3, seed=7, offsets=True)
    loaded.load_state_dict(load_checkpoint(tmp_path / "c.pt")["extra"]["bank"])
    torch.testing.assert_close(loaded.offsets(), torch.full((2, 3, 2), 0.2))
    # a bank written before offsets existed resumes with every camera centred
    old = CameraBank(["a", "b"], 3, seed=1).state_dict()
    assert "raw_offset" not in old
    resumed = CameraBank(["a", "b"], 3, seed=5, offsets=True)
    resumed.load_state_dict(old)
    assert torch.equal(resumed.offsets(), torch.zeros(2, 3, 2))
    torch.testing.assert_close(resumed.cameras()[0], CameraBank(["a", "b"], 3, seed=1).cameras()[0])
    # a bank with offsets is never resumed as one without: its cameras would move
    with pytest.raises(ValueError, match="selftrain.offsets=true"):
        CameraBank(["a", "b"], 3).load_state_dict(bank.state_dict())
    # without offsets nothing changes: no offsets, and raw() gives the three it always gave
    plain = CameraBank(["a"], 2)
    assert plain.offsets() is None and len(plain.raw(torch.arange(1))) == 3


def test_selftraining_with_offsets_saves_resumes_and_reuses_its_grid(tiny_setup):  # noqa: F811
    """A whole self-training run with selftrain.offsets: the bank's offsets leave the grid
    start (not all centred), are checkpointed, resume bit for bit, and the H = 1 run reuses the
    grid's offsets with its losses; without them the ablation is refused."""
    root, pretrained = tiny_setup
    cfg = _cfg(root, name="offsets", **{"selftrain.offsets": True})
    first = selftrain_stage(cfg, pretrained=pretrained, progress=False, track=False)
    saved = load_checkpoint(first.checkpoint)["extra"]["bank"]
    assert saved["raw_offset"].shape == (len(first.bank), 3, 2)
    assert saved["raw_offset"].abs().sum() > 0
    assert first.grid_offsets.shape == (*first.grid_losses.shape, 2)
    resumed = selftrain_stage(cfg, pretrained=pretrained, resume=True, progress=False,
                              track=False)
    assert torch.equal(resumed.bank.state_dict()["raw_offset"], saved["raw_offset"])
    single = _cfg(root, name="offsets-h1", **{"selftrain.offsets": True,
                                              "selftrain.hypotheses": 1,
                                              "selftrain.camera_steps": 0, "selftrain.epochs": 1,
                                              "selftrain.phase_a_epochs": 1})
    h1 = selftrain_stage(single, pretrained=pretrained, progress=False, track=False,
                         grid_losses=first.grid_losses, grid_offsets=first.grid_offsets)
    best = first.grid_losses.argmin(-1)
    rows = torch.arange(len(best))
    torch.testing.assert_close(h1.bank.offsets()[:, 0], first.grid_offsets[rows, best],
                               atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="grid_offsets has shape"):
        selftrain_stage(single, pretrained=pretrained, progress=False, track=False,
                        grid_losses=first.grid_losses, grid_offsets=first.grid_offsets[:2])
