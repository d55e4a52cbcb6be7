"""Image collections (masks, no cameras) → HDF5: CUB-200-2011 layout and a generic CSV.

Every image becomes a square, masked crop: the box (given, or from the mask's largest
connected component via OpenCV) is squared around its centre, grown by a margin on each side,
padded with zeros where it leaves the image, resized, and the background set to 0.

Bad images never stop an ingest: unreadable files, images under :data:`MIN_IMAGE_SIDE` pixels
a side, masks of the wrong size, empty or tiny masks, and bad rows of the index files (missing
columns or paths, categories that are not names, text that is not UTF-8, boxes that are not
numbers, have zero size or are inverted, a row repeating an earlier one) are skipped, counted
by reason in the log and in the file's attributes, each with its file and line. A CSV may start
with a byte-order mark and end its lines with CRLF.

Images are read with their EXIF orientation applied, and so are their masks (a phone JPEG
stores its pixels sideways with an orientation tag; its mask is taken to be drawn on those
stored pixels unless its size matches only the upright image).

Collection HDF5 (``format = "ss3d-collection"``):

    images (N, S, S, 3) uint8 (masked)   masks (N, S, S) uint8 {0, 1}
    boxes (N, 4) float32 (x0, y0, x1, y1 of the object in source pixels)
    crop_boxes (N, 4) float32 (the square crop in source pixels)
    image_ids, source_paths, categories (N,) str, is_train (N,) uint8
    attrs: crop_size, margin, source, ss3d_version, n_images, n_skipped, skipped_reasons (JSON)
    _hidden_cameras/  (rendered collections only; never read by training code)
        image_ids, azimuth, elevation, distance, model_id
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import h5py
import numpy as np
from tqdm import tqdm

import ss3d
from ss3d.data.h5 import atomic_h5
from ss3d.files import name_problem

__all__ = [
    "COLLECTION_FORMAT",
    "HIDDEN_GROUP",
    "IngestItem",
    "SkipImage",
    "box_from_mask",
    "ingest_items",
    "read_cub",
    "read_csv",
    "read_image_and_mask",
    "square_crop",
]

log = logging.getLogger(__name__)
COLLECTION_FORMAT = "ss3d-collection"
HIDDEN_GROUP = "_hidden_cameras"
HIDDEN_CAMERAS_FILE = "ss3d_hidden_cameras.json"
# Smaller images are skipped: a crop of a few pixels upscaled to data.crop_size is no photo.
MIN_IMAGE_SIDE = 16
_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)


class SkipImage(Exception):
    """This image is unusable; the message is the reason counted in the summary, ``detail``
    (optional) says more about this image."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.detail = detail


@dataclass(frozen=True)
class IngestItem:
    """One image of a collection. ``problem`` is set for an index row that cannot be used:
    ``(reason counted in the summary, where and what: "file:line: ...")``."""

    image_id: str
    category: str
    rgb_path: Path
    mask_path: Path
    box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1 (pixels)
    is_train: bool = True
    problem: tuple[str, str] | None = None
    where: str = ""  # "file:line" of its index row


def _bad_row(image_id: str, reason: str, where: str, detail: str) -> IngestItem:
    return IngestItem(image_id=image_id, category="", rgb_path=Path(), mask_path=Path(),
                      problem=(reason, f"{where}: {detail}"), where=where)


def _checked_box(values: Sequence[str], *, corner_size: bool = False
                 ) -> tuple[float, float, float, float] | tuple[str, str]:
    """``(x0, y0, x1, y1)`` from four strings, or ``(reason, detail)`` for a bad box.

    ``corner_size``: the values are ``x, y, width, height`` (CUB) rather than two corners.
    """
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return "box not numeric", f"box {list(values)} is not four numbers"
    if len(numbers) != 4 or not all(np.isfinite(numbers)):
        return "box not numeric", f"box {list(values)} is not four finite numbers"
    x0, y0, a, b = numbers
    x1, y1 = (x0 + a, y0 + b) if corner_size else (a, b)
    if x1 < x0 or y1 < y0:
        return "inverted box", f"box {numbers} ends before it starts (x1 < x0 or y1 < y0)"
    if x1 == x0 or y1 == y0:
        return "zero-size box", f"box {numbers} has zero width or height"
    return x0, y0, x1, y1


def box_from_mask(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` (end-exclusive) of the largest connected component of ``mask``."""
    binary = (mask > 0).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    if count <= 1:
        raise SkipImage("empty mask")
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = (int(stats[largest, k]) for k in (cv2.CC_STAT_LEFT, cv2.CC_STAT_TOP,
                                                     cv2.CC_STAT_WIDTH, cv2.CC_STAT_HEIGHT))
    return x, y, x + w, y + h


def square_crop(image: np.ndarray, mask: np.ndarray, box: Sequence[float], size: int,
                margin: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Square, padded, resized crop around ``box``.

    Args:
        image: ``(H, W, 3)`` uint8 RGB. mask: ``(H, W)`` {0, 1}.
        box: ``(x0, y0, x1, y1)`` in pixels. margin: fraction of the box side added per side.

    Returns:
        ``rgb (size, size, 3)`` uint8 with background 0, ``mask (size, size)`` uint8 {0, 1},
        ``crop_box (4,)`` the square in source pixel coordinates.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    crop_box = np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2],
                        np.float32)
    # An affine warp crops, pads (with 0) and resizes in one interpolation step.
    scale = size / side
    m = np.array([[scale, 0, -crop_box[0] * scale], [0, scale, -crop_box[1] * scale]])
    rgb = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_AREA
                         if scale < 1 else cv2.INTER_LINEAR, borderValue=0)
    soft = cv2.warpAffine(mask.astype(np.float32), m, (size, size), flags=cv2.INTER_LINEAR,
                          borderValue=0)
    crop_mask = (soft >= 0.5).astype(np.uint8)
    return rgb * crop_mask[..., None], crop_mask, crop_box


def _exif_orientation(path: Path) -> int:
    """The EXIF orientation tag (1..8) of an image file; 1 when it has none.

    Read with Pillow (a matplotlib dependency), which parses the header only; OpenCV applies
    the tag when decoding but does not report it.
    """
    from PIL import Image

    try:
        # only the header is read: a huge image's decompression-bomb warning does not apply
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                value = int(image.getexif().get(0x0112, 1))
    except Exception:  # not an image Pillow reads: OpenCV decides below
        return 1
    return value if 1 <= value <= 8 else 1


def _orient(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """Apply EXIF orientation ``orientation`` to ``(H, W[, C])`` pixels (as viewers do)."""
    if orientation in (2, 4, 5, 7):  # the mirrored ones: flip first, then rotate
        pixels = cv2.flip(pixels, 1)
        orientation = {2: 1, 4: 3, 5: 8, 7: 6}[orientation]
    rotate = {3: cv2.ROTATE_180, 6: cv2.ROTATE_90_CLOCKWISE,
              8: cv2.ROTATE_90_COUNTERCLOCKWISE}.get(orientation)
    return cv2.rotate(pixels, rotate) if rotate is not None else pixels


def read_image_and_mask(rgb_path: str | Path, mask_path: str | Path
                        ) -> tuple[np.ndarray, np.ndarray]:
    """``rgb (H, W, 3)`` uint8 and the raw mask ``(H, W)`` uint8, upright and aligned.

    Both files are decoded without OpenCV's automatic EXIF rotation, then the image's
    orientation is applied to both, so a sideways-stored phone JPEG and a mask drawn on its
    stored pixels stay aligned. A mask whose size matches only the upright image is taken
    as drawn on it.

    Raises:
        SkipImage: unreadable files, or sizes that match neither way (the reason names both
        sizes as width x height).
    """
    for what, path in (("image", rgb_path), ("mask", mask_path)):
        if not Path(path).is_file():  # said here, not by an OpenCV warning on the terminal
            raise SkipImage(f"unreadable {what}", f"{path}: no such file")
    flags = cv2.IMREAD_IGNORE_ORIENTATION
    bgr = cv2.imread(str(rgb_path), cv2.IMREAD_COLOR | flags)
    if bgr is None:
        raise SkipImage("unreadable image")
    raw = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE | flags)
    if raw is None:
        raise SkipImage("unreadable mask")
    orientation = _exif_orientation(Path(rgb_path))
    upright = _orient(bgr, orientation)
    if raw.shape == bgr.shape[:2]:
        raw = _orient(raw, orientation)
    elif raw.shape != upright.shape[:2]:
        height, width = upright.shape[:2]
        raise SkipImage("mask size differs from image",
                        f"mask {mask_path} is {raw.shape[1]}x{raw.shape[0]}, image {rgb_path} "
                        f"is {width}x{height} upright")
    return cv2.cvtColor(upright, cv2.COLOR_BGR2RGB), raw


def _load_pair(item: IngestItem, min_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    rgb, raw = read_image_and_mask(item.rgb_path, item.mask_path)
    if min(rgb.shape[:2]) < MIN_IMAGE_SIDE:
        raise SkipImage("image too small", f"{item.rgb_path} is {rgb.shape[1]}x{rgb.shape[0]}, "
                        f"under {MIN_IMAGE_SIDE} pixels a side")
    mask = (raw >= 128).astype(np.uint8)  # CUB segmentations are soft (0..255)
    if mask.sum() == 0:
        raise SkipImage("empty mask")
    if mask.mean() < min_fraction:
        raise SkipImage("tiny mask")
    return rgb, mask


def read_cub(root: str | Path, category: str = "bird") -> list[IngestItem]:
    """Items of a CUB-200-2011 folder (images/, segmentations/, images.txt, ...).

    A missing index file stops here (nothing could be read); a bad line of one (no path, a
    box that is not four numbers, of zero size or inverted) becomes an item with ``problem``
    set, which :func:`ingest_items` skips and counts. Image paths may contain spaces.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"CUB root not found: {root}")
    needed = ["images.txt", "bounding_boxes.txt", "train_test_split.txt"]
    missing = [n for n in needed if not (root / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{root}: not a CUB-200-2011 folder, missing {missing}")

    def table(name: str) -> dict[str, tuple[str, str]]:
        """``image id -> (the rest of its line, "file:line")``."""
        rows = {}
        for line_no, line in enumerate((root / name).read_text().splitlines(), 1):
            parts = line.strip().split(maxsplit=1)  # the rest may hold spaces (paths)
            if parts:
                rows[parts[0]] = (parts[1] if len(parts) > 1 else "", f"{name}:{line_no}")
        return rows

    images, boxes, split = table("images.txt"), table("bounding_boxes.txt"), table(
        "train_test_split.txt")
    items = []
    for image_id, (rel, where) in images.items():
        if not rel:
            items.append(_bad_row(image_id, "no image path", where, "no path after the id"))
            continue
        box = None
        if image_id in boxes:
            values, box_where = boxes[image_id]
            checked = _checked_box(values.split(), corner_size=True)
            if isinstance(checked[0], str):
                items.append(_bad_row(image_id, checked[0], box_where, checked[1]))
                continue
            box = checked
        items.append(IngestItem(
            image_id=image_id, category=category, rgb_path=root / "images" / rel,
            mask_path=(root / "segmentations" / rel).with_suffix(".png"), box=box,
            is_train=split.get(image_id, ("1", ""))[0].strip() == "1", where=where))
    return items


def read_csv(path: str | Path) -> list[IngestItem]:
    """Items of a CSV with columns ``category,rgb,mask`` and optional ``x0,y0,x1,y1``.

    Relative paths are relative to the CSV's folder. The image id is the rgb path as written.
    A row with a missing value, undecodable text, a category that is not a name or a bad box
    becomes an item with ``problem`` set (skipped and counted by :func:`ingest_items`, with the
    CSV's line number). The file is UTF-8, with or without a byte-order mark; column names may
    be padded with spaces.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV not found: {path}")
    corners = ("x0", "y0", "x1", "y1")
    # utf-8-sig drops a byte-order mark; surrogateescape keeps a bad byte to name its row
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
        reader = csv.DictReader(fh)
        reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
        columns = set(reader.fieldnames)
        missing = {"category", "rgb", "mask"} - columns
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)} (have "
                             f"{sorted(columns)})")
        items = []
        for row in reader:
            where = f"{path.name}:{reader.line_num}"
            image_id = (row.get("rgb") or "").strip() or where
            undecoded = [k for k, v in row.items()
                         if k is not None and isinstance(v, str) and _UNDECODED.search(v)]
            if undecoded:
                items.append(_bad_row(where, "not UTF-8", where,
                                      f"bytes that are not UTF-8 in column(s) {undecoded}"))
                continue
            empty = [k for k in ("category", "rgb", "mask") if not (row.get(k) or "").strip()]
            if empty:
                items.append(_bad_row(image_id, "missing value", where,
                                      f"no value in column(s) {empty}"))
                continue
            if (problem := name_problem(row["category"].strip())) is not None:
                items.append(_bad_row(image_id, "bad category", where,
                                      f"category {row['category']!r} is not a name: {problem}"))
                continue
            box = None
            given = [row.get(k) for k in corners]
            if any(v not in (None, "") for v in given):
                checked = _checked_box([v or "" for v in given])
                if isinstance(checked[0], str):
                    items.append(_bad_row(image_id, checked[0], where, checked[1]))
                    continue
                box = checked
            split = (row.get("split") or "train").strip().lower()
            items.append(IngestItem(
                image_id=row["rgb"], category=row["category"].strip(),
                rgb_path=path.parent / row["rgb"], mask_path=path.parent / row["mask"],
                box=box, is_train=split != "test", where=where))
    return items


def ingest_items(items: Iterable[IngestItem], out_path: str | Path, *, crop_size: int = 64,
                 margin: float = 0.1, min_mask_fraction: float = 0.005, source: str = "",
                 hidden_cameras: dict[str, dict] | None = None,
                 progress: bool = True) -> dict:
    """Crop every usable item into the collection file ``out_path`` (written atomically).

    Returns a summary with counts and skip reasons. Raises ``ValueError`` if nothing is usable.
    """
    items = list(items)
    out_path = Path(out_path)
    kept: dict[str, list] = {k: [] for k in ("images", "masks", "boxes", "crop_boxes",
                                             "image_ids", "source_paths", "categories",
                                             "is_train")}
    reasons: Counter[str] = Counter()
    skipped: list[tuple[str, str]] = []
    first_seen: dict[tuple, str] = {}  # a row's content -> where it first appeared
    id_count: Counter[str] = Counter()
    for item in tqdm(items, desc=f"ingest {out_path.stem}", unit="img", disable=not progress):
        if item.problem is None:
            key = (item.category, os.path.abspath(item.rgb_path),
                   os.path.abspath(item.mask_path), item.box)
            if key in first_seen:  # one photo listed twice is one item, not two
                item = _bad_row(item.image_id, "duplicate row", item.where or item.image_id,
                                f"same category, image, mask and box as {first_seen[key]}")
            else:
                first_seen[key] = item.where or item.image_id
        if item.problem is not None:  # a bad index row: counted, with its file and line
            reason, detail = item.problem
            reasons[reason] += 1
            skipped.append((item.image_id, detail))
            log.warning("skipping %s", detail)
            continue
        try:
            rgb, mask = _load_pair(item, min_mask_fraction)
            box = item.box if item.box is not None else box_from_mask(mask)
            height, width = mask.shape[:2]
            if box[0] >= width or box[1] >= height or box[2] <= 0 or box[3] <= 0:
                raise SkipImage("box outside the image", f"box {[float(v) for v in box]} "
                                f"(x0, y0, x1, y1) lies outside the {width}x{height} image "
                                f"{item.rgb_path}")
            crop, crop_mask, crop_box = square_crop(rgb, mask, box, crop_size, margin)
            if crop_mask.sum() == 0:
                raise SkipImage("empty mask inside box")
        except SkipImage as why:
            reasons[str(why)] += 1
            skipped.append((item.image_id, why.detail or str(why)))
            log.warning("skipping %s (%s): %s", item.image_id, item.rgb_path,
                        why.detail or why)
            continue
        kept["images"].append(crop)
        kept["masks"].append(crop_mask)
        kept["boxes"].append(np.asarray(box, np.float32))
        kept["crop_boxes"].append(crop_box)
        # another object of the same photo (another mask or box) keeps ids unique: "x.jpg#2"
        id_count[item.image_id] += 1
        kept["image_ids"].append(item.image_id if id_count[item.image_id] == 1
                                 else f"{item.image_id}#{id_count[item.image_id]}")
        kept["source_paths"].append(str(item.rgb_path))
        kept["categories"].append(item.category)
        kept["is_train"].append(int(item.is_train))
    n = len(kept["image_ids"])
    if n == 0:
        raise ValueError(f"no usable images for {out_path} (skipped: {dict(reasons)})")
    strings = h5py.string_dtype()
    with atomic_h5(out_path) as f:
        f.create_dataset("images", data=np.stack(kept["images"]),
                         chunks=(1, crop_size, crop_size, 3), compression="gzip",
                         compression_opts=4)
        f.create_dataset("masks", data=np.stack(kept["masks"]), chunks=(1, crop_size, crop_size),
                         compression="gzip", compression_opts=4)
        f.create_dataset("boxes", data=np.stack(kept["boxes"]))
        f.create_dataset("crop_boxes", data=np.stack(kept["crop_boxes"]))
        for name in ("image_ids", "source_paths", "categories"):
            f.create_dataset(name, data=np.array(kept[name], dtype=object), dtype=strings)
        f.create_dataset("is_train", data=np.array(kept["is_train"], np.uint8))
        f.attrs.update({
            "format": COLLECTION_FORMAT, "version": 1, "ss3d_version": ss3d.__version__,
            "crop_size": crop_size, "margin": margin, "min_mask_fraction": min_mask_fraction,
            "source": source, "n_images": n, "n_skipped": len(skipped),
            "skipped_reasons": json.dumps(dict(reasons)), "skipped_items": json.dumps(skipped),
        })
        if hidden_cameras:
            ids = [i for i in kept["image_ids"] if i in hidden_cameras]
            g = f.create_group(HIDDEN_GROUP)
            g.attrs["note"] = ("ground-truth cameras of a rendered collection: for evaluation "
                               "only, never read by training code")
            g.create_dataset("image_ids", data=np.array(ids, dtype=object), dtype=strings)
            for key in ("azimuth", "elevation", "distance"):
                g.create_dataset(key, data=np.array([hidden_cameras[i][key] for i in ids],
                                                    np.float32))
            g.create_dataset("model_id", data=np.array(
                [hidden_cameras[i]["model_id"] for i in ids], dtype=object), dtype=strings)
    summary = {"path": str(out_path), "images": n, "skipped": len(skipped),
               "skipped_reasons": dict(reasons)}
    log.info("ingested %d images into %s, skipped %d %s", n, out_path, len(skipped),
             dict(reasons) if reasons else "")
    return summary


def load_hidden_cameras_file(root: str | Path) -> dict[str, dict] | None:
    """The ground-truth cameras a rendered collection keeps beside its CUB layout, if any."""
    path = Path(root) / HIDDEN_CAMERAS_FILE
    return json.loads(path.read_text()) if path.is_file() else None
