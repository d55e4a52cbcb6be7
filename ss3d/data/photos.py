"""Rendered "photo" collections in the CUB-200-2011 layout (self-training without real data).

Procedural instances (not the pre-training ones) are rendered at random poses with varied
lighting, object scale and offset in the frame, over cluttered procedural backgrounds (and,
with an appearance set other than ``plain``, procedural textures and materials, coloured
key lights from other sides and camera nuisances: :mod:`ss3d.data.appearance`), and
written exactly like CUB (``images/``, ``segmentations/``, ``images.txt``,
``bounding_boxes.txt``, ``train_test_split.txt``, ``classes.txt``) so that the real CUB ingest
reads them. The true cameras and model ids go to ``ss3d_hidden_cameras.json`` beside them, which
the ingest moves into the hidden HDF5 group that training never reads.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ss3d.cameras import Intrinsics
from ss3d.data.appearance import (
    appearance_set,
    apply_camera,
    sample_camera,
    sample_lighting,
    sample_material,
)
from ss3d.data.hashing import stable_rng
from ss3d.data.ingest import HIDDEN_CAMERAS_FILE, box_from_mask
from ss3d.data.procedural import generate_category
from ss3d.data.render import MeshRenderer
from ss3d.data.shapenet import index_shapenet, load_model

__all__ = ["PhotoSettings", "clutter_background", "render_photo_collection"]

# Collection instances use indices from here on, so they never coincide with the
# pre-training instances (indices 0..models_per_category-1) of the same category.
COLLECTION_INDEX_OFFSET = 100_000
PHOTOS_FILE = "ss3d_photos.json"  # how the folder was rendered (its appearance set)


@dataclass
class PhotoSettings:
    image_size: int = 128
    fov_degrees: float = 40.0
    elevation_range: tuple[float, float] = (-30.0, 60.0)
    distance_range: tuple[float, float] = (1.6, 2.8)  # object scale in the frame
    max_offset: float = 0.15  # fraction of the image the object may be shifted by
    light_range: tuple[float, float] = (2.5, 6.0)
    instances: int = 12  # distinct models the images are drawn from
    test_fraction: float = 0.2
    appearance: str = "plain"  # an ss3d.data.appearance set: textures, lights, camera


def _photos_appearance(folder: Path) -> str:
    """The appearance set a photo folder was rendered with (folders from before the sets had no
    record, and were plain)."""
    record = folder / PHOTOS_FILE
    return json.loads(record.read_text()).get("appearance", "plain") if record.is_file() \
        else "plain"


def clutter_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A cluttered RGB background: gradient + random shapes + lines, slightly blurred."""
    top, bottom = rng.uniform(40, 220, 3), rng.uniform(40, 220, 3)
    ramp = np.linspace(0, 1, size)[:, None, None]
    img = np.ascontiguousarray(
        np.broadcast_to(top * (1 - ramp) + bottom * ramp, (size, size, 3)).astype(np.uint8))
    for _ in range(int(rng.integers(8, 20))):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(3)
        p = rng.integers(0, size, 2)
        if kind == 0:
            q = p + rng.integers(size // 10, size // 3, 2)
            cv2.rectangle(img, tuple(int(v) for v in p), tuple(int(v) for v in q), color, -1)
        elif kind == 1:
            cv2.circle(img, tuple(int(v) for v in p), int(rng.integers(size // 20, size // 6)),
                       color, -1)
        else:
            q = rng.integers(0, size, 2)
            cv2.line(img, tuple(int(v) for v in p), tuple(int(v) for v in q), color,
                     int(rng.integers(1, 4)))
    return cv2.GaussianBlur(img, (3, 3), 0)


def _rotation_jitter(rng: np.random.Generator, degrees: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.radians(rng.uniform(0, degrees))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def render_photo_collection(out_dir: str | Path, category: str, count: int, *, seed: int = 0,
                            settings: PhotoSettings | None = None,
                            models_dir: str | Path | None = None,
                            progress: bool = True) -> Path:
    """Write ``count`` photos of procedural ``category`` instances in the CUB layout.

    The folder is built in a temporary sibling and renamed when complete; an existing complete
    folder is reused. Returns ``out_dir``.
    """
    s = settings or PhotoSettings()
    look = appearance_set(s.appearance)  # an unknown set fails before anything is written
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp")  # one writer: the render's lock
    if tmp.exists():  # an interrupted build's leftover
        shutil.rmtree(tmp)
    if ((out_dir / "images.txt").is_file() and (out_dir / HIDDEN_CAMERAS_FILE).is_file()
            and _photos_appearance(out_dir) == look.name):
        return out_dir
    models_root = Path(models_dir) if models_dir else out_dir.parent / "collection_models"
    generate_category(models_root, category, s.instances, seed=seed,
                      start=COLLECTION_INDEX_OFFSET)
    records = index_shapenet(models_root, [category])
    meshes = {r.model_id: load_model(r.path) for r in records}
    model_ids = sorted(meshes)

    class_dir = f"001.Procedural_{category}"
    (tmp / "images" / class_dir).mkdir(parents=True)
    (tmp / "segmentations" / class_dir).mkdir(parents=True)
    rng = stable_rng(f"photos/{category}/{seed}")
    intrinsics = Intrinsics.from_fov(s.fov_degrees, s.image_size)
    lines = {"images": [], "boxes": [], "split": [], "labels": []}
    hidden: dict[str, dict] = {}
    size = s.image_size
    # Appearance draws come from streams of their own, so the poses, instances and backgrounds
    # are the same whatever the set: collections that differ only in appearance pair image by
    # image. ``plain`` draws nothing.
    look_rng = stable_rng(f"photos/{category}/{seed}/appearance/{look.name}")
    materials = {m: sample_material(stable_rng(f"appearance/{look.name}/{seed}/{m}"), look)
                 for m in model_ids}
    with MeshRenderer(intrinsics, background=(0.0, 0.0, 0.0)) as renderer:
        scenes = {m: renderer.scene_for(meshes[m], materials[m]) for m in model_ids}
        for k in tqdm(range(count), desc=f"photos {category}", unit="img",
                      disable=not progress):
            image_id = str(k + 1)
            model_id = model_ids[int(rng.integers(len(model_ids)))]
            az = float(rng.uniform(0, 360))
            el = float(rng.uniform(*s.elevation_range))
            dist = float(rng.uniform(*s.distance_range))
            jitter = _rotation_jitter(rng, 35)
            intensity = float(rng.uniform(*s.light_range))
            light = sample_lighting(look_rng, look)
            rgb, mask, _ = renderer.render(
                scenes[model_id], az, el, dist,
                light_direction_jitter=jitter if light.rotation is None else light.rotation,
                light_intensity=intensity if light.intensity is None else light.intensity,
                light_color=light.color)
            # shift the object in the frame (= a shifted principal point; rotation unchanged)
            x0, y0, x1, y1 = box_from_mask(mask)
            limit = s.max_offset * size
            lo = np.maximum(np.array([-x0, -y0], float), -limit)
            hi = np.minimum(np.array([size - x1, size - y1], float), limit)
            draw = rng.uniform(np.minimum(lo, hi), np.maximum(lo, hi))
            shift = np.where(lo < hi, draw, 0.0)  # keep the whole object in the frame
            m = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
            rgb = cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR)
            mask = cv2.warpAffine(mask.astype(np.uint8), m, (size, size),
                                  flags=cv2.INTER_NEAREST)
            photo = np.where(mask[..., None] > 0, rgb, clutter_background(rng, size))
            photo = apply_camera(photo, sample_camera(look_rng, look))
            name = f"{class_dir}/{category}_{k:05d}"
            cv2.imwrite(str(tmp / "images" / f"{name}.jpg"),
                        cv2.cvtColor(photo, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(str(tmp / "segmentations" / f"{name}.png"), mask * 255)
            bx0, by0, bx1, by1 = box_from_mask(mask)
            lines["images"].append(f"{image_id} {name}.jpg")
            lines["boxes"].append(f"{image_id} {bx0:.1f} {by0:.1f} {bx1 - bx0:.1f} "
                                  f"{by1 - by0:.1f}")
            is_train = int(rng.uniform() >= s.test_fraction)
            lines["split"].append(f"{image_id} {is_train}")
            lines["labels"].append(f"{image_id} 1")
            hidden[image_id] = {"azimuth": az, "elevation": el, "distance": dist,
                                "model_id": model_id}
    (tmp / "images.txt").write_text("\n".join(lines["images"]) + "\n")
    (tmp / "bounding_boxes.txt").write_text("\n".join(lines["boxes"]) + "\n")
    (tmp / "train_test_split.txt").write_text("\n".join(lines["split"]) + "\n")
    (tmp / "image_class_labels.txt").write_text("\n".join(lines["labels"]) + "\n")
    (tmp / "classes.txt").write_text(f"1 {class_dir}\n")
    (tmp / HIDDEN_CAMERAS_FILE).write_text(json.dumps(hidden, indent=0))
    (tmp / PHOTOS_FILE).write_text(json.dumps({"appearance": look.name, "seed": seed}))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir
