"""``ss3d reconstruct`` pairs its inputs deliberately: masks by a naming pattern (one folder or
two), never an image as its own mask, never a photo as a mask; and says what it paired and
skipped. No model is needed: every check runs before one loads."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ss3d.cli import main
from ss3d.reconstruct import ReconstructionError, pair_inputs, read_input


def _photo(size: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (size, size, 3), dtype=np.uint8)


def _mask(size: int = 64) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    mask[16:48, 20:44] = 255
    return mask


@pytest.fixture
def demo(tmp_path) -> Path:
    """The natural first folder: rgb_N.png beside mask_N.png, plus a stray file or two."""
    folder = tmp_path / "demo"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"rgb_{i}.png"), _photo(seed=i))
        cv2.imwrite(str(folder / f"mask_{i}.png"), _mask())
    cv2.imwrite(str(folder / "rgb_9.png"), _photo(seed=9))  # no mask
    (folder / "notes.txt").write_text("not an image")
    cv2.imwrite(str(folder / "thumbnail.png"), _photo(seed=5))  # neither pattern
    return folder


def test_a_folder_given_as_its_own_masks_is_refused_with_the_patterns_to_use(demo):
    with pytest.raises(ReconstructionError, match="every image would be its own mask") as err:
        pair_inputs([demo], [demo])
    assert "--image-pattern 'rgb_{id}' --mask-pattern 'mask_{id}'" in str(err.value)
    with pytest.raises(ReconstructionError, match="its own mask"):
        pair_inputs([demo / "rgb_0.png"], [demo / "rgb_0.png"])
    with pytest.raises(ReconstructionError, match="its own mask"):
        read_input(demo / "rgb_0.png", demo / "rgb_0.png")


def test_masks_paired_by_pattern_in_one_folder(demo):
    pairing = pair_inputs([demo], [demo], "rgb_{id}", "mask_{id}")
    assert [(i.name, m.name) for i, m in pairing.pairs] == [
        (f"rgb_{i}.png", f"mask_{i}.png") for i in range(3)]
    assert pairing.skipped == {"rgb_9.png": "no mask mask_9",
                               "thumbnail.png": "matches neither pattern"}
    summary = pairing.summary()
    assert summary.startswith("paired 3 image(s) with their masks (rgb_{id} ↔ mask_{id})")
    assert "skipped rgb_9.png: no mask mask_9" in summary
    # only the mask's pattern: the images are the rest (whole names), the masks never images
    with pytest.raises(ReconstructionError, match="no mask mask_rgb_0") as err:
        pair_inputs([demo], [demo], mask_pattern="mask_{id}")
    assert "mask_0.png" not in str(err.value)
    with pytest.raises(ReconstructionError, match="once as"):
        pair_inputs([demo], [demo], "rgb_", "mask_{id}")


def test_masks_paired_by_pattern_across_two_folders(tmp_path, demo):
    masks = tmp_path / "masks"
    masks.mkdir()
    for i in range(2):
        (demo / f"mask_{i}.png").rename(masks / f"rgb_{i}_seg.png")
    pairing = pair_inputs([demo], [masks], "rgb_{id}", "rgb_{id}_seg")
    assert [(i.name, m.name) for i, m in pairing.pairs] == [
        ("rgb_0.png", "rgb_0_seg.png"), ("rgb_1.png", "rgb_1_seg.png")]
    assert pairing.skipped["rgb_2.png"] == "no mask rgb_2_seg"
    with pytest.raises(ReconstructionError, match="no image has a mask"):
        pair_inputs([demo], [masks], "photo_{id}", "mask_{id}")


@pytest.mark.parametrize("kind, message", [
    ("colour", "a colour image, not a mask"), ("photo", "a photo, not a mask"),
    ("empty", "the mask is empty"), ("full", "no background"),
    ("size", r"is 48x48, image .* is 64x64")])
def test_a_file_that_is_no_mask_is_refused(tmp_path, kind, message):
    image = tmp_path / "rgb.png"
    cv2.imwrite(str(image), _photo())
    gradient = np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (64, 1))
    mask = {"colour": _photo(seed=3), "photo": gradient, "empty": np.zeros((64, 64), np.uint8),
            "full": np.full((64, 64), 255, np.uint8), "size": _mask(48)}[kind]
    cv2.imwrite(str(tmp_path / "mask.png"), mask)
    with pytest.raises(ReconstructionError, match=message):
        read_input(image, tmp_path / "mask.png")


def test_a_good_mask_passes_also_as_three_grey_channels_with_a_soft_edge(tmp_path):
    image = tmp_path / "rgb.png"
    cv2.imwrite(str(image), _photo())
    soft = cv2.GaussianBlur(_mask(), (5, 5), 1.5)
    cv2.imwrite(str(tmp_path / "mask.png"), cv2.cvtColor(soft, cv2.COLOR_GRAY2BGR))
    rgb, mask, box = read_input(image, tmp_path / "mask.png")
    assert rgb.shape == (64, 64, 3) and mask.sum() > 0 and box


def test_cli_refuses_self_masking_and_reports_what_it_paired(demo, tmp_path, capsys):
    out = tmp_path / "meshes"
    code = main(["reconstruct", str(demo), "--mask", str(demo), "--model", "no-such-model",
                 "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "every image would be its own mask" in err and not out.exists()
    # with the patterns, the pairing is printed; the missing model then stops it (no meshes)
    code = main(["reconstruct", str(demo), "--mask", str(demo), "--image-pattern", "rgb_{id}",
                 "--mask-pattern", "mask_{id}", "--model", "no-such-model", "-o", str(out)])
    captured = capsys.readouterr()
    assert "paired 3 image(s) with their masks (rgb_{id} ↔ mask_{id})" in captured.out
    assert "skipped rgb_9.png" in captured.out
    assert code == 2 and "no-such-model" in captured.err and not out.exists()
