"""Ingest never dies on bad rows, and reads images and masks the same way (EXIF)."""

from __future__ import annotations

import json

import cv2
import h5py
import numpy as np
import pytest
from PIL import Image

from ss3d.data.ingest import ingest_items, read_csv, read_cub, read_image_and_mask
from ss3d.reconstruct import ReconstructionError, prepare_input


def _pair(folder, name, *, width=60, height=40, box=(10, 5, 40, 30)):
    """A green object on black, its mask, both ``width x height``; returns relative paths."""
    img = np.zeros((height, width, 3), np.uint8)
    mask = np.zeros((height, width), np.uint8)
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1, 1] = 255
    mask[y0:y1, x0:x1] = 255
    cv2.imwrite(str(folder / f"{name}.png"), img)
    cv2.imwrite(str(folder / f"{name}_m.png"), mask)
    return f"imgs/{name}.png", f"imgs/{name}_m.png"


def test_bad_csv_rows_are_skipped_and_counted_with_their_line(tmp_path):
    (tmp_path / "imgs").mkdir()
    good = _pair(tmp_path / "imgs", "good")
    rows = ["category,rgb,mask,x0,y0,x1,y1",
            f"car,{good[0]},{good[1]},10,5,40,30",      # line 2: fine
            f"car,{good[0]}",                              # line 3: too few columns
            f"car,{good[0]},{good[1]},10,5,10,30",         # line 4: zero width
            f"car,{good[0]},{good[1]},10,5,abc,30",        # line 5: not a number
            f"car,{good[0]},{good[1]},40,5,10,30",         # line 6: inverted
            f"car,{good[0]},{good[1]},,,,"]                # line 7: box from the mask
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    items = read_csv(tmp_path / "list.csv")  # never raises on a bad row
    summary = ingest_items(items, tmp_path / "c.h5", crop_size=16, progress=False)
    assert summary["images"] == 2 and summary["skipped"] == 4
    assert summary["skipped_reasons"] == {"missing value": 1, "zero-size box": 1,
                                          "box not numeric": 1, "inverted box": 1}
    with h5py.File(tmp_path / "c.h5", "r") as f:
        details = [detail for _, detail in json.loads(f.attrs["skipped_items"])]
    for line, word in ((3, "mask"), (4, "zero width"), (5, "abc"), (6, "ends before")):
        assert any(d.startswith(f"list.csv:{line}:") and word in d for d in details), details


def test_bad_cub_rows_are_skipped_and_paths_may_hold_spaces(tmp_path):
    root = tmp_path / "cub"
    folder = root / "images" / "001.Some Bird"
    folder.mkdir(parents=True)
    (root / "segmentations" / "001.Some Bird").mkdir(parents=True)
    names = ["a b", "zero", "text", "nopath"]
    for name in names:
        img = np.zeros((40, 60, 3), np.uint8)
        img[5:30, 10:40] = 200
        mask = (img[..., 0] > 0).astype(np.uint8) * 255
        cv2.imwrite(str(folder / f"{name}.jpg"), img)
        cv2.imwrite(str(root / "segmentations" / "001.Some Bird" / f"{name}.png"), mask)
    (root / "images.txt").write_text("1 001.Some Bird/a b.jpg\n2 001.Some Bird/zero.jpg\n"
                                     "3 001.Some Bird/text.jpg\n4\n")
    (root / "bounding_boxes.txt").write_text("1 10 5 30 25\n2 10 5 0 25\n3 10 5 x 25\n")
    (root / "train_test_split.txt").write_text("1 1\n2 1\n3 0\n4 1\n")
    items = read_cub(root)
    summary = ingest_items(items, tmp_path / "cub.h5", crop_size=16, progress=False)
    assert summary["images"] == 1
    assert summary["skipped_reasons"] == {"zero-size box": 1, "box not numeric": 1,
                                          "no image path": 1}
    with h5py.File(tmp_path / "cub.h5", "r") as f:
        assert f["image_ids"].asstr()[0] == "1"
        assert "a b.jpg" in f["source_paths"].asstr()[0]
        details = dict(json.loads(f.attrs["skipped_items"]))
    assert details["2"].startswith("bounding_boxes.txt:2:")
    assert details["4"].startswith("images.txt:4:")


def _exif_jpeg(path, rgb: np.ndarray, orientation: int) -> None:
    """Store ``rgb`` as a JPEG whose EXIF says how to turn it upright."""
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, exif=exif, quality=100)


@pytest.mark.parametrize("square", [True, False])
def test_exif_rotation_applies_to_image_and_mask_alike(tmp_path, square):
    # stored pixels (sideways, as a phone writes them) with the object at the top left
    height, width = (48, 48) if square else (40, 64)
    stored = np.zeros((height, width, 3), np.uint8)
    stored[2:14, 3:20] = (0, 255, 0)
    mask = np.zeros((height, width), np.uint8)
    mask[2:14, 3:20] = 255  # drawn on the stored pixels
    _exif_jpeg(tmp_path / "photo.jpg", stored, orientation=6)  # 6: turn 90° clockwise
    cv2.imwrite(str(tmp_path / "mask.png"), mask)

    rgb, raw = read_image_and_mask(tmp_path / "photo.jpg", tmp_path / "mask.png")
    assert rgb.shape[:2] == (width, height) == raw.shape  # upright: turned by 90°
    inside = raw >= 128
    assert inside.sum() == 12 * 17
    assert rgb[inside, 1].mean() > 200 and rgb[~inside, 1].mean() < 30  # they agree

    # ingest and reconstruct crop the same pixels
    (tmp_path / "list.csv").write_text("category,rgb,mask\ncar,photo.jpg,mask.png\n")
    ingest_items(read_csv(tmp_path / "list.csv"), tmp_path / "c.h5", crop_size=24,
                 progress=False)
    tensor, crop, crop_mask = prepare_input(tmp_path / "photo.jpg", tmp_path / "mask.png", 24,
                                            0.1)
    with h5py.File(tmp_path / "c.h5", "r") as f:
        assert np.array_equal(f["images"][0], crop)
        assert np.array_equal(f["masks"][0], crop_mask.numpy())
        green = f["images"][0][f["masks"][0] > 0, 1]
    assert green.mean() > 200


def test_a_mask_drawn_on_the_upright_photo_is_accepted_and_other_sizes_are_named(tmp_path):
    stored = np.zeros((40, 64, 3), np.uint8)
    _exif_jpeg(tmp_path / "photo.jpg", stored, orientation=8)
    upright_mask = np.zeros((64, 40), np.uint8)
    upright_mask[5:20, 5:30] = 255
    cv2.imwrite(str(tmp_path / "upright.png"), upright_mask)
    rgb, raw = read_image_and_mask(tmp_path / "photo.jpg", tmp_path / "upright.png")
    assert rgb.shape[:2] == raw.shape == (64, 40)
    cv2.imwrite(str(tmp_path / "odd.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(ReconstructionError, match=r"odd.png: .*10x10.*40x64 upright"):
        prepare_input(tmp_path / "photo.jpg", tmp_path / "odd.png", 24, 0.1)


def test_ingest_stage_logs_one_run_with_its_summary_and_collection(tmp_path, mlflow_store):
    """The ingest stage through its shell: the collection file, an MLflow run of stage
    'ingest' tagged with the collection's name, its numbers, summary and figure."""
    from mlflow.tracking import MlflowClient

    from ss3d.config import load_config
    from ss3d.stages.data import ingest_stage

    (tmp_path / "imgs").mkdir()
    pairs = [_pair(tmp_path / "imgs", f"p{i}", box=(5 + i, 5, 40, 30)) for i in range(3)]
    (tmp_path / "list.csv").write_text("category,rgb,mask\n" + "".join(
        f"sofa,{rgb},{mask}\n" for rgb, mask in pairs))
    cfg = load_config(None, {"name": "ingest-test", "data.root": str(tmp_path / "data"),
                             "data.crop_size": 16})
    result = ingest_stage(cfg, csv_path=str(tmp_path / "list.csv"), name="couch")
    assert result.summary["sofa"]["images"] == 3  # an alias is stored under its canonical name
    assert (tmp_path / "data" / "collections" / "sofa.h5").is_file()
    run = MlflowClient(mlflow_store).get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["ss3d.stage"] == "ingest" and run.data.tags["ss3d.category"] == "sofa"
    assert run.data.metrics["sofa.images"] == 3.0
    artifacts = {a.path for a in MlflowClient(mlflow_store).list_artifacts(result.run_id)}
    assert "data_summary.json" in artifacts and "figures" in artifacts


@pytest.mark.parametrize("name", ["../../x", "/tmp/ss3d-x", ""])
def test_an_ingest_name_that_climbs_out_writes_nothing_and_logs_no_run(tmp_path, mlflow_store,
                                                                     name, capsys):
    from mlflow.tracking import MlflowClient

    from ss3d.cli import main

    (tmp_path / "imgs").mkdir()
    rgb, mask = _pair(tmp_path / "imgs", "p")
    (tmp_path / "list.csv").write_text(f"category,rgb,mask\ncar,{rgb},{mask}\n")
    data = tmp_path / "a" / "b" / "data"
    assert main(["ingest", "--csv", str(tmp_path / "list.csv"), "--name", name,
                 "--set", f"data.root={data}"]) == 2
    err = capsys.readouterr().err
    assert "ingest --name" in err and "is not a name" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.rglob("*.h5")) == []
    assert MlflowClient(mlflow_store).search_experiments(filter_string="name = 'smoke'") == []


def test_a_csv_category_that_is_not_a_name_is_skipped_with_its_line(tmp_path):
    (tmp_path / "imgs").mkdir()
    rgb, mask = _pair(tmp_path / "imgs", "p")
    (tmp_path / "list.csv").write_text(f"category,rgb,mask\ncar,{rgb},{mask}\n"
                                       f"../../../tmp/x,{rgb},{mask}\n")
    items = read_csv(tmp_path / "list.csv")
    assert [i.problem[0] for i in items if i.problem] == ["bad category"]
    assert items[1].problem[1].startswith("list.csv:3: category '../../../tmp/x'")


def test_a_csv_with_a_bom_and_crlf_and_padded_columns_is_read(tmp_path):
    (tmp_path / "imgs").mkdir()
    rgb, mask = _pair(tmp_path / "imgs", "p")
    text = f"category , rgb,mask\r\ncar,{rgb},{mask}\r\n"
    (tmp_path / "list.csv").write_bytes(b"\xef\xbb\xbf" + text.encode())
    items = read_csv(tmp_path / "list.csv")
    assert [(i.category, i.image_id, i.problem) for i in items] == [("car", rgb, None)]
    assert ingest_items(items, tmp_path / "c.h5", crop_size=16, progress=False)["images"] == 1


def test_an_undecodable_row_is_skipped_with_its_line_and_the_rest_ingested(tmp_path):
    (tmp_path / "imgs").mkdir()
    rgb, mask = _pair(tmp_path / "imgs", "p")
    (tmp_path / "list.csv").write_bytes(
        f"category,rgb,mask\ncar,{rgb},{mask}\n".encode()
        + b"car,imgs/caf\xe9.png,imgs/m.png\n")  # latin-1, not UTF-8
    items = read_csv(tmp_path / "list.csv")
    summary = ingest_items(items, tmp_path / "c.h5", crop_size=16, progress=False)
    assert summary["images"] == 1 and summary["skipped_reasons"] == {"not UTF-8": 1}
    assert items[1].problem[1] == "list.csv:3: bytes that are not UTF-8 in column(s) ['rgb']"


def test_repeated_rows_are_one_item_and_tiny_or_missing_images_are_skipped(tmp_path, capfd):
    (tmp_path / "imgs").mkdir()
    rgb, mask = _pair(tmp_path / "imgs", "p")
    other = _pair(tmp_path / "imgs", "q", box=(12, 6, 44, 33))
    dot = _pair(tmp_path / "imgs", "dot", width=1, height=1, box=(0, 0, 1, 1))
    rows = [f"car,{rgb},{mask}"] * 3 + [f"car,{rgb},{other[1]}", f"car,{dot[0]},{dot[1]}",
                                        f"car,imgs/gone.png,{mask}"]
    (tmp_path / "list.csv").write_text("category,rgb,mask\n" + "\n".join(rows) + "\n")
    capfd.readouterr()
    summary = ingest_items(read_csv(tmp_path / "list.csv"), tmp_path / "c.h5", crop_size=16,
                           progress=False)
    assert "[ WARN" not in capfd.readouterr().err  # a missing file is said once, by ss3d
    assert summary["images"] == 2
    assert summary["skipped_reasons"] == {"duplicate row": 2, "image too small": 1,
                                          "unreadable image": 1}
    with h5py.File(tmp_path / "c.h5", "r") as f:
        assert list(f["image_ids"].asstr()[:]) == [rgb, f"{rgb}#2"]  # ids stay unique
        details = dict(json.loads(f.attrs["skipped_items"]))
    assert details[f"{rgb}"].startswith("list.csv:4: same category, image, mask and box as "
                                        "list.csv:2")
    assert details[dot[0]].endswith("is 1x1, under 16 pixels a side")
    assert details["imgs/gone.png"].endswith("gone.png: no such file")


def test_a_huge_photo_raises_no_decompression_bomb_warning(tmp_path, monkeypatch):
    import warnings

    from PIL import Image

    (tmp_path / "imgs").mkdir()
    rgb, mask = _pair(tmp_path / "imgs", "p")  # 60x40 = 2400 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # Pillow warns above this
    with pytest.warns(Image.DecompressionBombWarning):
        Image.open(tmp_path / rgb).close()
    (tmp_path / "list.csv").write_text(f"category,rgb,mask\ncar,{rgb},{mask}\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = ingest_items(read_csv(tmp_path / "list.csv"), tmp_path / "c.h5",
                               crop_size=16, progress=False)
    assert summary["images"] == 1
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
