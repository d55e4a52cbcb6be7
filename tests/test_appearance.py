"""Photo-like appearance sets: textures, materials, lights, camera nuisances, and where they
reach the renders and the rendered collections."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from ss3d.cameras import Intrinsics
from ss3d.config.schema import APPEARANCE_CHOICES
from ss3d.data.appearance import (
    APPEARANCE_SETS,
    TEXTURE_FAMILIES,
    CameraNuisance,
    Material,
    appearance_set,
    apply_camera,
    kelvin_to_rgb,
    sample_camera,
    sample_lighting,
    sample_material,
    texture_pattern,
    textured_image,
)
from ss3d.data.photos import PhotoSettings, render_photo_collection
from ss3d.data.procedural import generate_category
from ss3d.data.render import MeshRenderer
from ss3d.data.shapenet import index_shapenet, load_model


def test_plain_draws_nothing_and_changes_nothing():
    rng = np.random.default_rng(3)
    state = rng.bit_generator.state
    plain = appearance_set("plain")
    assert plain.is_plain and not appearance_set("photo").is_plain
    assert sample_material(rng, plain) == Material()
    light = sample_lighting(rng, plain)
    assert light.rotation is None and light.color is None and light.intensity is None
    camera = sample_camera(rng, plain)
    assert camera.is_identity
    assert rng.bit_generator.state == state  # the random stream did not move
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert apply_camera(image, camera) is image


def test_the_heldout_set_shares_no_texture_light_colour_or_light_side_with_photo():
    photo, heldout = APPEARANCE_SETS["photo"], APPEARANCE_SETS["heldout"]
    assert set(APPEARANCE_SETS) == set(APPEARANCE_CHOICES)  # the config's choices
    assert photo.textures and heldout.textures
    assert not set(photo.textures) & set(heldout.textures)
    assert set(photo.textures) | set(heldout.textures) == set(TEXTURE_FAMILIES)
    assert photo.kelvin[0] > heldout.kelvin[1]  # disjoint colour temperatures
    assert photo.key_azimuth[1] < heldout.key_azimuth[0]  # disjoint sides
    # draws stay inside their set
    rng = np.random.default_rng(0)
    for _ in range(50):
        assert sample_material(rng, heldout).texture in heldout.textures
        assert sample_material(rng, photo).texture in photo.textures


def test_light_colours_follow_the_black_body():
    warm, day, cold = kelvin_to_rgb(3000), kelvin_to_rgb(6500), kelvin_to_rgb(12000)
    assert warm[0] == 1.0 and warm[0] > warm[1] > warm[2]
    assert day.min() > 0.9  # daylight is about white
    assert cold[2] == 1.0 and cold[2] > cold[0]


@pytest.mark.parametrize("family", TEXTURE_FAMILIES)
def test_every_texture_family_is_a_deterministic_varied_pattern(family):
    a, b = texture_pattern(family, 64, seed=1), texture_pattern(family, 64, seed=2)
    assert a.shape == (64, 64) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert a.std() > 0.05  # a pattern, not a flat tint
    assert np.array_equal(a, texture_pattern(family, 64, seed=1))
    assert not np.array_equal(a, b)


def test_unknown_names_are_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="known: plain, photo, heldout"):
        appearance_set("sunset")
    with pytest.raises(ValueError, match="unknown texture family 'wood'"):
        texture_pattern("wood", 8, 0)


def test_textured_image_darkens_by_at_most_its_strength_and_keeps_hue_without_shift():
    image = np.full((32, 32, 3), (200, 100, 50), np.uint8)
    out = textured_image(image, Material(texture="checker", strength=0.5, pattern_seed=0))
    ratio = out.astype(float) / image
    assert ratio.min() == pytest.approx(0.5, abs=0.01) and ratio.max() == pytest.approx(1.0)
    assert np.allclose(ratio[..., 0], ratio[..., 2], atol=0.02)  # the same gain per channel
    shifted = textured_image(image, Material(hue_shift=0.5))
    assert shifted[0, 0, 2] > shifted[0, 0, 0]  # orange turned to blue


def test_camera_nuisances_blur_noise_and_compress():
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, 16:] = 200
    blurred = apply_camera(image, CameraNuisance(blur_sigma=1.5))
    assert 0 < blurred[0, 15, 0] < 200 and blurred[0, 0, 0] == 0
    noisy = apply_camera(image, CameraNuisance(noise_sigma=5.0, noise_seed=1))
    assert 2 < np.abs(noisy.astype(float) - image)[:, 20:].std() < 8
    warm = apply_camera(image, CameraNuisance(gains=np.array([1.1, 1.0, 0.8])))
    assert warm[0, 20, 0] > warm[0, 20, 1] > warm[0, 20, 2]
    assert apply_camera(image, CameraNuisance(jpeg_quality=50)).shape == image.shape


@pytest.fixture(scope="module")
def chair(tmp_path_factory):
    root = tmp_path_factory.mktemp("looks")
    generate_category(root, "chair", 1, seed=0)
    return load_model(index_shapenet(root, ["chair"])[0].path)


def test_a_look_changes_the_colours_never_the_silhouette(chair):
    with MeshRenderer(Intrinsics.from_fov(40.0, 48)) as renderer:
        plain_rgb, plain_mask, _ = renderer.render(renderer.scene_for(chair), 30.0, 20.0, 2.0)
        look = Material(texture="marble", strength=0.6, pattern_seed=4, hue_shift=0.3,
                        roughness=0.3, metallic=0.4)
        rgb, mask, _ = renderer.render(renderer.scene_for(chair, look), 30.0, 20.0, 2.0)
        assert np.array_equal(mask, plain_mask)
        assert np.abs(rgb.astype(float) - plain_rgb)[mask].mean() > 10
        # a warm light makes the object redder than a white one does
        scene = renderer.scene_for(chair)
        warm, _, _ = renderer.render(scene, 30.0, 20.0, 2.0, light_color=kelvin_to_rgb(2600))
        assert np.array_equal(renderer.render(scene, 30.0, 20.0, 2.0)[0], plain_rgb)

    def red_over_blue(x):
        return x[mask][:, 0].mean() / max(x[mask][:, 2].mean(), 1.0)

    # (the white ambient light dilutes the tint)
    assert red_over_blue(warm) > 1.1 * red_over_blue(plain_rgb)


def test_collections_that_differ_only_in_look_pair_image_by_image(tmp_path):
    def collection(look):
        return render_photo_collection(
            tmp_path / look / "bird", "bird", 5, seed=0, progress=False,
            settings=PhotoSettings(image_size=48, instances=2, appearance=look),
            models_dir=tmp_path / "models")


    plain, photo = collection("plain"), collection("photo")
    assert (json.loads((plain / "ss3d_hidden_cameras.json").read_text())
            == json.loads((photo / "ss3d_hidden_cameras.json").read_text()))
    assert json.loads((photo / "ss3d_photos.json").read_text())["appearance"] == "photo"
    names = (plain / "images.txt").read_text().split()[1::2]
    differ = 0
    for name in names:
        seg = name.replace(".jpg", ".png")
        assert np.array_equal(cv2.imread(str(plain / "segmentations" / seg)),
                              cv2.imread(str(photo / "segmentations" / seg)))
        mask = cv2.imread(str(plain / "segmentations" / seg), cv2.IMREAD_GRAYSCALE) > 0
        a = cv2.imread(str(plain / "images" / name)).astype(float)
        b = cv2.imread(str(photo / "images" / name)).astype(float)
        differ += np.abs(a - b)[mask].mean() > 5
    assert differ == len(names)
    # a folder of another look is rendered again, not reused
    before = (photo / "images" / names[0]).read_bytes()
    again = render_photo_collection(
        photo.parent / "bird", "bird", 5, seed=0, progress=False,
        settings=PhotoSettings(image_size=48, instances=2, appearance="heldout"),
        models_dir=tmp_path / "models")
    assert json.loads((again / "ss3d_photos.json").read_text())["appearance"] == "heldout"
    assert (again / "images" / names[0]).read_bytes() != before


def test_renders_with_a_look_and_the_transfer_inputs_drawn_like_them(tmp_path, mlflow_store):
    """render.appearance = photo: the renders carry textures and lights (the masks and cameras
    of plain renders), record their look, and are not reused for another look; the transfer
    stage's ``photo`` inputs are exactly their view 0, its ``plain`` inputs the plain renders'."""
    import h5py
    import torch

    from ss3d.config import load_config
    from ss3d.eval.items import synthetic_items
    from ss3d.stages.data import data_paths, render_stage
    from ss3d.stages.transfer import look_items

    from .test_pretrain import TINY

    def rendered(look):
        cfg = load_config(None, {**TINY, "data.root": str(tmp_path / "data"),
                                 "data.test_fraction": 0.5, "render.appearance": look,
                                 "render.workers": 1,
                                 "output_dir": str(tmp_path / "out")})
        render_stage(cfg, progress=False, track=False)
        paths = data_paths(cfg)
        with h5py.File(paths.renders, "r") as f:
            assert f.attrs["appearance"] == look
            data = {k: f[k][:] for k in ("rgb", "mask", "azimuth")}
        return cfg, paths, data

    cfg_plain, paths, plain = rendered("plain")
    plain_items, _ = synthetic_items(cfg_plain, paths.renders, paths)
    assert plain_items
    val_items, _ = synthetic_items(cfg_plain, paths.renders, paths, split="val")
    with h5py.File(paths.renders, "r") as f:
        split_of = dict(zip(f["model_id"].asstr()[:], f["split"].asstr()[:]))
    assert val_items and {split_of[i.key] for i in val_items} == {"val"}
    assert {split_of[i.key] for i in plain_items} == {"test"}
    for look in ("plain", "heldout"):
        again = look_items(cfg_plain, plain_items, paths.renders, look)
        same = [torch.equal(a.image, b.image) for a, b in zip(plain_items, again)]
        assert all(same) if look == "plain" else not any(same)
    cfg, paths, photo = rendered("photo")  # same data root: rendered again, not reused
    assert np.array_equal(photo["mask"], plain["mask"])
    assert np.array_equal(photo["azimuth"], plain["azimuth"])
    assert np.abs(photo["rgb"].astype(float) - plain["rgb"])[plain["mask"] > 0].mean() > 5
    assert not photo["rgb"][plain["mask"] == 0].any()  # noise and blur stay on the object
    items, _ = synthetic_items(cfg, paths.renders, paths)
    assert all(torch.equal(a.image, b.image)
               for a, b in zip(items, look_items(cfg, items, paths.renders, "photo")))
