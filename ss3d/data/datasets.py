"""Torch datasets over the HDF5 files.

Both open h5py lazily, once per process, so ``DataLoader(num_workers > 0)`` works: an h5py
handle opened in the parent must not be shared by forked workers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from ss3d.cameras import Intrinsics, sample_pixels
from ss3d.data.h5 import H5FormatError, check_format
from ss3d.data.ingest import COLLECTION_FORMAT, SkipImage, box_from_mask, square_crop
from ss3d.data.render import RENDER_FORMAT

__all__ = ["ImageCollection", "RenderedViews", "crop_like_collection", "read_hidden_cameras"]

_RENDER_DATASETS = ("rgb", "mask", "azimuth", "elevation", "distance", "model_id", "category",
                    "split")
_COLLECTION_DATASETS = ("images", "masks", "image_ids", "categories", "is_train")


class _LazyH5(Dataset):
    """Opens ``path`` on first access in each process; validates it once up front."""

    format: str
    required: Sequence[str]

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"HDF5 file not found: {self.path}")
        try:
            with h5py.File(self.path, "r") as f:
                check_format(f, self.path, self.format, self.required)
                self._read_index(f)
        except OSError as err:
            raise H5FormatError(f"{self.path}: not a readable HDF5 file (truncated or "
                                f"foreign: {err})") from None
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def _read_index(self, f: h5py.File) -> None:
        raise NotImplementedError

    def _item(self, index: int) -> dict:
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict:
        try:
            return self._item(index)
        except OSError as err:  # a file whose header reads but whose data is damaged
            raise H5FormatError(f"{self.path}: corrupt data in item {index} ({err}); "
                                "re-create the file (its stage reruns from scratch)") from None

    @property
    def file(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None  # never pickle an open handle into a worker
        return state


def crop_like_collection(rgb: np.ndarray, mask: np.ndarray, margin: float
                         ) -> tuple[np.ndarray, np.ndarray]:
    """A rendered view framed as a collection photo is: the square around the object's box
    with ``margin`` per side, resized back to the view's size (:func:`ss3d.data.ingest.
    square_crop`, the same function the collections go through).

    Args:
        rgb: ``(H, W, 3)`` uint8. mask: ``(H, W)`` {0, 1}.

    Returns:
        ``rgb (H, W, 3)`` float in [0, 1] with a black background and ``mask (H, W)`` float
        {0, 1}. A view whose mask is empty is returned whole.
    """
    try:
        box = box_from_mask(mask)
    except SkipImage:
        return rgb.astype(np.float32) / 255.0 * mask[..., None], mask.astype(np.float32)
    cropped, cropped_mask, _ = square_crop(rgb, mask, box, mask.shape[0], margin)
    return cropped.astype(np.float32) / 255.0, cropped_mask.astype(np.float32)


class RenderedViews(_LazyH5):
    """Pre-training samples: one encoder view + ``K`` supervision views with sampled pixels.

    Item (one object), with ``K = views_per_object`` and ``R = rays_per_view``:

        image (3, H, W) float in [0, 1], masked input view      input_mask (1, H, W)
        azimuth / elevation / distance (K,) supervision cameras (degrees / world units)
        pixels (K, R, 2) pixel coordinates (u, v) of the sampled rays (pixel centres)
        rgb (K, R, 3) float targets     mask (K, R) float targets
        index () int, category (str)

    Rays are built from ``pixels`` and the cameras by :func:`ss3d.cameras.pixel_rays` with
    :attr:`intrinsics`, on the training device. With ``input_crop_margin`` the input view (and
    its mask) is cropped as a collection photo is (:func:`crop_like_collection`); the
    supervision views are never cropped (their cameras are the render's).
    """

    format = RENDER_FORMAT
    required = _RENDER_DATASETS

    def __init__(self, path: str | Path, *, categories: Sequence[str] | None = None,
                 splits: Sequence[str] = ("train",), views_per_object: int = 3,
                 rays_per_view: int = 256, foreground_fraction: float = 0.5,
                 edge_fraction: float = 0.0,
                 include_input_view: bool = False, input_crop_margin: float | None = None):
        self.categories_filter = None if categories is None else list(categories)
        self.input_crop_margin = input_crop_margin
        self.splits = tuple(splits)
        self.views_per_object = views_per_object
        self.rays_per_view = rays_per_view
        self.foreground_fraction = foreground_fraction
        self.edge_fraction = edge_fraction
        self.include_input_view = include_input_view
        super().__init__(path)

    def _read_index(self, f: h5py.File) -> None:
        n = int(f.attrs["complete_models"])
        cats = f["category"].asstr()[:n]
        splits = f["split"].asstr()[:n]
        keep = np.isin(splits, self.splits)
        if self.categories_filter is not None:
            unknown = sorted(set(self.categories_filter) - set(cats))
            if unknown:
                raise H5FormatError(f"{self.path}: no models of categories {unknown}")
            keep &= np.isin(cats, self.categories_filter)
        self.rows = np.flatnonzero(keep)
        self.row_categories = cats[self.rows]
        self.model_ids = f["model_id"].asstr()[:n][self.rows]
        self.views = int(f.attrs["views_per_model"])
        size = int(f.attrs["image_size"])
        self.intrinsics = Intrinsics(focal=float(f.attrs["focal"]), width=size, height=size,
                                     cx=float(f.attrs["cx"]), cy=float(f.attrs["cy"]))
        if len(self.rows) == 0:
            raise H5FormatError(f"{self.path}: no models in splits {self.splits} for "
                                f"categories {self.categories_filter}")

    def __len__(self) -> int:
        return len(self.rows)

    def _item(self, index: int) -> dict:
        row = int(self.rows[index])
        f = self.file
        # torch's per-worker seed makes numpy sampling differ across workers and epochs
        generator = np.random.default_rng(torch.randint(0, 2**62, ()).item())
        input_view = int(generator.integers(self.views))
        others = np.arange(self.views)
        if not self.include_input_view and self.views > 1:
            others = others[others != input_view]
        k = self.views_per_object
        views = generator.choice(others, k, replace=len(others) < k)
        # rows are stored in one chunk per model: reading all V views costs one decompression
        all_rgb, all_mask = f["rgb"][row], f["mask"][row]
        rgb, mask = all_rgb[views], all_mask[views]
        h, w = mask.shape[1:]
        pixels_rng = torch.Generator().manual_seed(int(generator.integers(2**62)))
        flat, centres = sample_pixels(torch.from_numpy(mask), self.rays_per_view,
                                      self.foreground_fraction, pixels_rng,
                                      edge_fraction=self.edge_fraction)
        flat = flat.numpy()
        take = np.arange(k)[:, None]
        if self.input_crop_margin is None:
            input_rgb = all_rgb[input_view].astype(np.float32) / 255.0
            input_mask = all_mask[input_view].astype(np.float32)
        else:
            input_rgb, input_mask = crop_like_collection(all_rgb[input_view],
                                                         all_mask[input_view],
                                                         self.input_crop_margin)
        return {
            "image": torch.from_numpy(input_rgb * input_mask[..., None]).permute(2, 0, 1),
            "input_mask": torch.from_numpy(input_mask)[None],
            # the input view's camera: the viewpoint head's label
            "input_azimuth": torch.tensor(float(f["azimuth"][row][input_view])),
            "input_elevation": torch.tensor(float(f["elevation"][row][input_view])),
            "azimuth": torch.from_numpy(f["azimuth"][row][views]),
            "elevation": torch.from_numpy(f["elevation"][row][views]),
            "distance": torch.from_numpy(f["distance"][row][views]),
            "pixels": centres,
            "rgb": torch.from_numpy(rgb.reshape(k, h * w, 3)[take, flat].astype(np.float32)
                                    / 255.0),
            "mask": torch.from_numpy(mask.reshape(k, h * w)[take, flat].astype(np.float32)),
            "index": torch.tensor(index),
            "category": str(self.row_categories[index]),
        }


class ImageCollection(_LazyH5):
    """A collection of masked crops (no cameras).

    Item: ``image (3, S, S)`` float masked RGB, ``mask (1, S, S)``, ``index``, ``image_id``.
    The ground-truth cameras of rendered collections are never read here.
    """

    format = COLLECTION_FORMAT
    required = _COLLECTION_DATASETS

    def __init__(self, path: str | Path, split: str | None = None):
        if split not in (None, "train", "test"):
            raise ValueError(f"split must be None, 'train' or 'test', got {split!r}")
        self.split = split
        super().__init__(path)

    def _read_index(self, f: h5py.File) -> None:
        is_train = f["is_train"][:].astype(bool)
        keep = np.ones_like(is_train) if self.split is None else (
            is_train if self.split == "train" else ~is_train)
        self.rows = np.flatnonzero(keep)
        self.image_ids = f["image_ids"].asstr()[:][self.rows]
        self.crop_size = int(f.attrs["crop_size"])
        if len(self.rows) == 0:
            raise H5FormatError(f"{self.path}: no images in split {self.split!r}")

    def __len__(self) -> int:
        return len(self.rows)

    def _item(self, index: int) -> dict:
        row = int(self.rows[index])
        image = self.file["images"][row].astype(np.float32) / 255.0
        mask = self.file["masks"][row].astype(np.float32)
        return {"image": torch.from_numpy(image).permute(2, 0, 1),
                "mask": torch.from_numpy(mask)[None], "index": torch.tensor(index),
                "image_id": str(self.image_ids[index])}


def read_hidden_cameras(path: str | Path) -> dict[str, dict[str, float | str]] | None:
    """Ground-truth cameras of a rendered collection, keyed by image id (evaluation only)."""
    from ss3d.data.ingest import HIDDEN_GROUP

    with h5py.File(path, "r") as f:
        check_format(f, path, COLLECTION_FORMAT)
        if HIDDEN_GROUP not in f:
            return None
        g = f[HIDDEN_GROUP]
        ids = g["image_ids"].asstr()[:]
        return {i: {"azimuth": float(a), "elevation": float(e), "distance": float(d),
                    "model_id": str(m)}
                for i, a, e, d, m in zip(ids, g["azimuth"][:], g["elevation"][:],
                                         g["distance"][:], g["model_id"].asstr()[:])}
