"""Off-screen pyrender renders of textured meshes, written to HDF5 (README: Conventions).

Cameras come from :mod:`ss3d.cameras` (spherical → OpenGL pose, shared intrinsics), so the
renders and the volume renderer agree pixel for pixel.

Rendered-set HDF5 (``format = "ss3d-render"``), one row per model, ``V`` views each:

    rgb (N, V, H, W, 3) uint8        mask (N, V, H, W) uint8 {0, 1}
    depth (N, V, H, W) float16       (z-depth along the viewing axis, 0 = background)
    azimuth / elevation / distance (N, V) float32    cam2world (N, V, 4, 4) float32 (OpenGL)
    model_id, category, synset, split (N,) str
    surface_points (N, S, 3) float32             ground-truth surface samples (evaluation)
    volume_points (N, Q, 3) float32, volume_occupancy (N, Q) uint8   inside/outside samples
    attrs: image_size, focal, cx, cy, intrinsics_convention, seed, source, ss3d_version, ...

Work is split into shards (``i/N``); each shard appends models to ``<out>.shard-i-of-N.h5``
and records how many are complete, so a rerun resumes where it stopped. :func:`merge_shards`
joins complete shards into the final file through a temporary file and an atomic rename.
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# PYOPENGL_PLATFORM and PYGLET_HEADLESS are set by ss3d/__init__.py, which runs before this
# module (and so before pyrender's first import) whatever imports it.

# Mesa's EGL/llvmpipe loads its own LLVM; importing triton (PyTorch's compiler backend, pulled
# in lazily by e.g. ``torch.optim.Adam.step`` via torch._dynamo) *after* that segfaults the
# process. Importing triton first avoids the clash (checked on this CPU; see tests/test_data.py
# ::test_training_after_rendering_does_not_crash).
try:
    import triton  # noqa: F401
except ImportError:  # CPU-only torch builds ship no triton
    pass

import cv2  # noqa: E402
import h5py  # noqa: E402
import numpy as np  # noqa: E402
import pyrender  # noqa: E402
import torch  # noqa: E402
import trimesh  # noqa: E402
from tqdm import tqdm  # noqa: E402

import ss3d  # noqa: E402
from ss3d.cameras import Intrinsics, camera_to_world_opengl  # noqa: E402
from ss3d.data.appearance import (  # noqa: E402
    AppearanceSet,
    Material,
    appearance_set,
    apply_camera,
    sample_camera,
    sample_lighting,
    sample_material,
    textured_image,
)
from ss3d.data.h5 import H5FormatError, atomic_h5, check_format  # noqa: E402
from ss3d.data.hashing import stable_rng  # noqa: E402
from ss3d.data.shapenet import ModelRecord, ShapeNetError, load_model, stable_split  # noqa: E402
from ss3d.geometry import merge_meshes, occupancy, sample_surface  # noqa: E402

__all__ = ["MeshRenderer", "RenderSettings", "look_stream", "merge_shards", "model_keys",
           "render_look_view", "render_models", "render_models_parallel", "shard_path"]

log = logging.getLogger(__name__)
RENDER_FORMAT = "ss3d-render"
INTRINSICS_CONVENTION = (
    "pinhole, focal/cx/cy in pixels, u right, v down, pixel (i, j) centre at (j+0.5, i+0.5); "
    "cameras: ss3d.cameras (PyTorch3D look_at azimuth/elevation/distance, degrees, +Y up)")


@dataclass
class RenderSettings:
    image_size: int = 64
    fov_degrees: float = 40.0
    views_per_model: int = 6
    elevation_range: tuple[float, float] = (-75.0, 75.0)
    distance_range: tuple[float, float] = (1.7, 2.1)
    light_intensity: float = 4.0
    ambient: float = 0.35
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    supersample: int = 2
    surface_samples: int = 4096
    volume_samples: int = 4096
    seed: int = 0
    appearance: str = "plain"  # an ss3d.data.appearance set

    @property
    def intrinsics(self) -> Intrinsics:
        return Intrinsics.from_fov(self.fov_degrees, self.image_size)

    @classmethod
    def from_config(cls, cfg) -> RenderSettings:
        r = cfg.render
        return cls(image_size=r.image_size, fov_degrees=r.fov_degrees,
                   views_per_model=r.views_per_model,
                   elevation_range=tuple(r.elevation_range),
                   distance_range=tuple(r.distance_range), light_intensity=r.light_intensity,
                   ambient=r.ambient, background=tuple(r.background),
                   supersample=r.supersample,
                   surface_samples=r.surface_samples, volume_samples=r.volume_samples,
                   seed=cfg.seed, appearance=r.appearance)


class MeshRenderer:
    """A reusable pyrender off-screen renderer (EGL) for one image size and intrinsics."""

    def __init__(self, intrinsics: Intrinsics, light_intensity: float = 4.0,
                 ambient: float = 0.35, background: Sequence[float] = (0.0, 0.0, 0.0),
                 supersample: int = 2):
        self.intrinsics = intrinsics
        self.light_intensity = light_intensity
        self.ambient = ambient
        self.background = np.asarray(background, dtype=np.float32)
        self.supersample = int(supersample)
        k = self.supersample
        self._renderer = pyrender.OffscreenRenderer(intrinsics.width * k, intrinsics.height * k)
        cx, cy = intrinsics.principal_point
        # pyrender's IntrinsicsCamera takes the OpenCV-style principal point (v down). Scaling
        # focal and principal point by k keeps pixel edges aligned: big pixel (i, j) is exactly
        # the k×k block of small pixels starting at (k i, k j).
        self._camera = pyrender.IntrinsicsCamera(fx=intrinsics.focal * k,
                                                 fy=intrinsics.focal * k, cx=cx * k,
                                                 cy=cy * k, znear=0.05, zfar=100.0)

    @classmethod
    def for_settings(cls, s: RenderSettings) -> MeshRenderer:
        """The renderer of the renders written with ``s`` (size, intrinsics, lights)."""
        return cls(s.intrinsics, s.light_intensity, s.ambient, s.background,
                   supersample=s.supersample)

    def close(self) -> None:
        self._renderer.delete()

    def __enter__(self) -> MeshRenderer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def scene_for(self, meshes: Sequence[trimesh.Trimesh],
                  material: Material | None = None) -> pyrender.Scene:
        """A scene of ``meshes``, with ``material``'s texture and PBR factors when given (an
        :mod:`ss3d.data.appearance` instance look; ``None``: the meshes' own)."""
        scene = pyrender.Scene(bg_color=np.append(self.background, 0.0),
                               ambient_light=np.full(3, self.ambient))
        for mesh in meshes:
            scene.add(pyrender.Mesh.from_trimesh(mesh, smooth=False,
                                                 material=_pbr_material(mesh, material)))
        return scene

    def render(self, scene: pyrender.Scene, azimuth: float, elevation: float, distance: float,
               light_direction_jitter: np.ndarray | None = None,
               light_intensity: float | None = None,
               light_color: np.ndarray | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Render one view.

        ``light_direction_jitter`` turns the headlight (camera frame, ``(3, 3)``);
        ``light_color`` ``(3,)`` in [0, 1] tints both lights (``None``: white).

        Returns:
            ``rgb (H, W, 3) uint8``, ``mask (H, W) bool``, ``depth (H, W) float32`` (z-depth,
            0 where nothing was hit).
        """
        pose = camera_to_world_opengl(azimuth, elevation, distance)[0].double().numpy()
        cam_node = scene.add(self._camera, pose=pose)
        # A headlight (from the camera, slightly above) plus a fixed key light from world +Y:
        # every visible surface is lit, and shading still varies with the viewpoint.
        light_pose = pose.copy()
        if light_direction_jitter is not None:
            light_pose[:3, :3] = light_pose[:3, :3] @ light_direction_jitter
        intensity = self.light_intensity if light_intensity is None else light_intensity
        head = scene.add(pyrender.DirectionalLight(color=light_color, intensity=intensity),
                         pose=light_pose)
        top_pose = np.eye(4)
        top_pose[:3, :3] = trimesh.transformations.rotation_matrix(-np.pi / 2, [1, 0, 0])[:3, :3]
        top = scene.add(pyrender.DirectionalLight(color=light_color, intensity=intensity * 0.5),
                        pose=top_pose)
        try:
            color, depth = self._renderer.render(scene, flags=pyrender.RenderFlags.RGBA)
        finally:
            for node in (cam_node, head, top):
                scene.remove_node(node)
        # The mask is the pixel's area coverage >= 1/2, from the alpha channel resolved over the
        # 4 MSAA samples and averaged over the k×k supersampling block. For a straight edge that
        # is exactly "pixel centre inside the projected surface", the rule of our volume
        # renderer's rays. (``depth > 0`` would not do: pyrender's depth keeps one MSAA sample
        # that sits off the pixel centre and shifts silhouettes by up to half a pixel.)
        size = (self.intrinsics.width, self.intrinsics.height)
        alpha = color[..., 3].astype(np.float32) / 255.0
        rgb = color[..., :3].astype(np.float32)
        if self.supersample > 1:
            alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_AREA)
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            hit = (depth > 0).astype(np.float32)
            depth_sum = cv2.resize(depth, size, interpolation=cv2.INTER_AREA)
            hits = cv2.resize(hit, size, interpolation=cv2.INTER_AREA)
            depth = np.where(hits > 0, depth_sum / np.maximum(hits, 1e-6), 0.0)
        mask = alpha >= 0.5
        depth = np.where(mask, depth, 0.0).astype(np.float32)
        holes = mask & (depth == 0)  # covered pixels whose depth samples all missed
        if holes.any():
            depth[holes] = cv2.dilate(depth, np.ones((3, 3), np.uint8))[holes]
        rgb = np.clip(rgb, 0, 255).round().astype(np.uint8)
        return np.ascontiguousarray(rgb), mask, depth


def _pbr_material(mesh: trimesh.Trimesh, look: Material | None
                  ) -> pyrender.MetallicRoughnessMaterial | None:
    """pyrender's material for ``mesh`` under ``look``: the texture re-painted
    (:func:`~ss3d.data.appearance.textured_image`), roughness / metallic replaced. ``None``
    (pyrender converts the mesh's own material) when there is nothing to change."""
    if look is None or look == Material():
        return None
    visual = mesh.visual
    image = getattr(getattr(visual, "material", None), "image", None)
    if isinstance(visual, trimesh.visual.TextureVisuals) and image is not None:
        texture = textured_image(np.asarray(image.convert("RGB")), look)
        base = {"baseColorTexture": texture,
                "baseColorFactor": getattr(visual.material, "diffuse", None)}
    else:  # vertex colours: pyrender reads them from the mesh whatever the material
        base = {}
    return pyrender.MetallicRoughnessMaterial(
        alphaMode="BLEND", roughnessFactor=1.0 if look.roughness is None else look.roughness,
        metallicFactor=1.0 if look.metallic is None else look.metallic, **base)


def look_stream(seed: int, model_key: str, look: AppearanceSet) -> np.random.Generator:
    """The random stream of one model's appearance (its material, then each view's light and
    camera), apart from the camera and sample draws so that those do not depend on the look."""
    return stable_rng(f"{seed}/{model_key}/appearance/{look.name}")


def render_look_view(renderer: MeshRenderer, scene: pyrender.Scene, azimuth: float,
                     elevation: float, distance: float, look: AppearanceSet,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One view of ``scene`` under ``look``: a light and a camera drawn from ``rng`` (the
    model's :func:`look_stream`, after its material). The renders and ``ss3d transfer`` both
    draw their views through here, so a re-rendered input equals the rendered one."""
    light = sample_lighting(rng, look)
    rgb, mask, depth = renderer.render(scene, azimuth, elevation, distance,
                                       light_direction_jitter=light.rotation,
                                       light_intensity=light.intensity, light_color=light.color)
    camera = sample_camera(rng, look)
    if not camera.is_identity:  # noise and blur stay on the object (black ground)
        rgb = apply_camera(rgb, camera) * mask[..., None].astype(np.uint8)
    return rgb, mask, depth


def model_keys(f: h5py.File) -> list[str]:
    """The ``synset/model_id`` keys (:attr:`ModelRecord.key`) of the complete rows of an open
    renders or shard file, in row order."""
    n = int(f.attrs["complete_models"])
    return [f"{synset}/{model_id}" for synset, model_id in
            zip(f["synset"].asstr()[:n], f["model_id"].asstr()[:n], strict=True)]


def shard_path(out_path: Path, index: int, count: int) -> Path:
    return out_path.with_name(f"{out_path.stem}.shard-{index}-of-{count}.h5")


def _sample_views(rng: np.random.Generator, s: RenderSettings) -> np.ndarray:
    """``(V, 3)`` (azimuth, elevation, distance): azimuth U[0, 360), elevation U[range]."""
    v = s.views_per_model
    return np.stack([rng.uniform(0.0, 360.0, v), rng.uniform(*s.elevation_range, v),
                     rng.uniform(*s.distance_range, v)], axis=1).astype(np.float32)


_STR = h5py.string_dtype()


def _create_shard(path: Path, s: RenderSettings, source: str) -> h5py.File:
    f = h5py.File(path, "w")
    size, v = s.image_size, s.views_per_model
    chunk_img = (1, v, size, size)

    def ds(name, shape_tail, dtype, chunk=None, compress=True):
        kw = {"compression": "gzip", "compression_opts": 4, "shuffle": True} if compress else {}
        f.create_dataset(name, shape=(0, *shape_tail), maxshape=(None, *shape_tail),
                         dtype=dtype, chunks=chunk or (1, *shape_tail), **kw)

    ds("rgb", (v, size, size, 3), np.uint8, (*chunk_img, 3))
    ds("mask", (v, size, size), np.uint8, chunk_img)
    ds("depth", (v, size, size), np.float16, chunk_img)
    for name in ("azimuth", "elevation", "distance"):
        ds(name, (v,), np.float32, compress=False)
    ds("cam2world", (v, 4, 4), np.float32, compress=False)
    for name in ("model_id", "category", "synset", "split"):
        f.create_dataset(name, shape=(0,), maxshape=(None,), dtype=_STR, chunks=(256,))
    ds("surface_points", (s.surface_samples, 3), np.float32)
    ds("volume_points", (s.volume_samples, 3), np.float32)
    ds("volume_occupancy", (s.volume_samples,), np.uint8)
    intr = s.intrinsics.to_dict()
    f.attrs.update({
        "format": RENDER_FORMAT, "version": 1, "ss3d_version": ss3d.__version__,
        "complete_models": 0, "image_size": size, "views_per_model": v,
        "focal": intr["focal"], "cx": intr["cx"], "cy": intr["cy"],
        "fov_degrees": s.fov_degrees, "intrinsics_convention": INTRINSICS_CONVENTION,
        "seed": s.seed, "source": source, "elevation_range": list(s.elevation_range),
        "distance_range": list(s.distance_range), "light_intensity": s.light_intensity,
        "ambient": s.ambient, "background": list(s.background), "supersample": s.supersample,
        "appearance": s.appearance,
    })
    return f


def _append(f: h5py.File, row: dict) -> None:
    n = int(f.attrs["complete_models"])
    for name, value in row.items():
        d = f[name]
        if d.shape[0] < n + 1:
            d.resize(n + 1, axis=0)
        d[n] = value
    f.attrs["complete_models"] = n + 1  # the commit point: rows >= n are ignored on resume
    f.flush()


def render_models(records: Sequence[ModelRecord], out_path: str | Path, settings: RenderSettings,
                  shard: tuple[int, int] = (0, 1), val_fraction: float = 0.1,
                  test_fraction: float = 0.15, source: str = "procedural",
                  progress: bool = True, on_model: Callable[[], None] | None = None) -> dict:
    """Render shard ``shard = (i, N)`` of ``records`` into its shard file (resumable).

    ``on_model`` is called after each model (the parallel driver's shared progress bar).
    Returns a summary: rendered, skipped (with reasons), views per second, shard path.
    """
    out_path = Path(out_path)
    index, count = shard
    mine = [r for k, r in enumerate(sorted(records, key=lambda r: r.key)) if k % count == index]
    path = shard_path(out_path, index, count)
    path.parent.mkdir(parents=True, exist_ok=True)
    done: set[str] = set()
    if path.exists():
        try:
            f = h5py.File(path, "a")
            check_format(f, path, RENDER_FORMAT)
            if (f.attrs["image_size"] != settings.image_size
                    or f.attrs["views_per_model"] != settings.views_per_model
                    or f.attrs.get("appearance", "plain") != settings.appearance):
                f.close()
                raise H5FormatError(f"{path}: shard was rendered with other settings; delete it "
                                    "or render to another data.root")
            done = set(model_keys(f))
        except OSError as err:
            raise H5FormatError(f"{path}: unreadable shard file ({err}); delete it to "
                                "re-render") from None
    else:
        f = _create_shard(path, settings, source)
    skipped: dict[str, str] = {}
    todo = [r for r in mine if r.key not in done]
    look = appearance_set(settings.appearance)
    views = 0
    start = time.perf_counter()
    renderer = MeshRenderer.for_settings(settings)
    try:
        bar = tqdm(todo, desc=f"render shard {index}/{count}", unit="model",
                   disable=not progress)
        for record in bar:
            try:
                meshes = load_model(record.path)
            except ShapeNetError as err:
                skipped[record.key] = str(err)
                log.warning("skipping %s: %s", record.key, err)
                continue
            rng = stable_rng(f"{settings.seed}/{record.key}")
            cams = _sample_views(rng, settings)
            # appearance from streams of its own: the cameras and samples do not depend on it;
            # one material per model (consistent colour targets across its views)
            look_rng = look_stream(settings.seed, record.key, look)
            scene = renderer.scene_for(meshes, sample_material(look_rng, look))
            rgbs, masks, depths = [], [], []
            for az, el, dist in cams:
                rgb, mask, depth = render_look_view(renderer, scene, float(az), float(el),
                                                    float(dist), look, look_rng)
                rgbs.append(rgb)
                masks.append(mask)
                depths.append(depth)
            views += len(cams)
            geometry = merge_meshes(meshes)
            surface = sample_surface(geometry, settings.surface_samples,
                                     seed=int(rng.integers(2**31)))
            # half uniform in a cube slightly larger than the object cube, half near the surface
            n_uniform = settings.volume_samples // 2
            uniform = rng.uniform(-0.55, 0.55, (n_uniform, 3))
            near = surface[rng.integers(0, len(surface), settings.volume_samples - n_uniform)]
            near = near + rng.normal(0, 0.03, near.shape)
            points = np.concatenate([uniform, near]).astype(np.float32)
            pose = camera_to_world_opengl(torch.from_numpy(cams[:, 0]),
                                          torch.from_numpy(cams[:, 1]),
                                          torch.from_numpy(cams[:, 2])).numpy()
            _append(f, {
                "rgb": np.stack(rgbs), "mask": np.stack(masks).astype(np.uint8),
                "depth": np.stack(depths).astype(np.float16), "azimuth": cams[:, 0],
                "elevation": cams[:, 1], "distance": cams[:, 2], "cam2world": pose,
                "model_id": record.model_id, "category": record.category,
                "synset": record.synset,
                "split": stable_split(record.model_id, val_fraction, test_fraction),
                "surface_points": surface, "volume_points": points,
                "volume_occupancy": occupancy(points, geometry).astype(np.uint8),
            })
            if on_model is not None:
                on_model()
    finally:
        renderer.close()
        if skipped:
            previous = json.loads(f.attrs.get("skipped_json", "{}"))
            previous.update(skipped)
            f.attrs["skipped_json"] = json.dumps(previous)
        f.close()
    elapsed = time.perf_counter() - start
    summary = {"shard": str(path), "models_total": len(mine), "models_rendered": len(todo) -
               len(skipped), "models_resumed": len(done), "skipped": skipped, "views": views,
               "seconds": elapsed, "views_per_second": views / elapsed if elapsed > 0 else 0.0}
    if views:
        log.info("rendered %d views in %.1fs: %.1f views/s at %dx%d", views, elapsed,
                 summary["views_per_second"], settings.image_size, settings.image_size)
    return summary


def _render_worker(args: tuple) -> dict:
    """One process of :func:`render_models_parallel`: one shard, one thread (the processes
    share the cores)."""
    records, out_path, settings, shard, val_fraction, test_fraction, source, queue = args
    torch.set_num_threads(1)
    try:
        return render_models(records, out_path, settings, shard, val_fraction, test_fraction,
                             source, progress=False, on_model=lambda: queue.put(1))
    except Exception as err:
        # The pool pickles a worker's exception back to the parent; an OpenGL error holds
        # ctypes arguments that do not pickle, and the parent would only see "Error sending
        # result". A RuntimeError carrying the worker's own traceback always arrives.
        raise RuntimeError(f"render worker {shard[0] + 1}/{shard[1]} failed on {out_path}: "
                           f"{type(err).__name__}: {err}\n{traceback.format_exc()}") from None


def render_models_parallel(records: Sequence[ModelRecord], out_path: str | Path,
                           settings: RenderSettings, workers: int, val_fraction: float = 0.1,
                           test_fraction: float = 0.15, source: str = "procedural",
                           progress: bool = True) -> dict:
    """:func:`render_models` in ``workers`` processes (shards ``i/workers`` of this machine),
    merged into ``out_path`` in model order: the same file as one process writes. Resumable
    like a shard; returns the summed summary."""
    import multiprocessing as mp
    from queue import Empty

    workers = max(1, min(workers, len(records)))
    context = mp.get_context("spawn")  # a fresh EGL context and torch per process
    with context.Manager() as manager:
        queue = manager.Queue()
        jobs = [(list(records), Path(out_path), settings, (i, workers), val_fraction,
                 test_fraction, source, queue) for i in range(workers)]
        with context.Pool(workers) as pool:
            pending = pool.map_async(_render_worker, jobs)
            bar = tqdm(total=len(records), desc=f"render ({workers} processes)", unit="model",
                       disable=not progress)
            while not pending.ready() or not queue.empty():
                try:
                    queue.get(timeout=0.5)
                    bar.update()
                except Empty:  # nothing rendered in the last half second
                    pass
            bar.close()
            summaries = pending.get()  # re-raises a worker's error
    merge_shards(out_path, workers)
    views = sum(s["views"] for s in summaries)
    seconds = max(s["seconds"] for s in summaries)
    return {"shard": str(out_path), "workers": workers,
            "models_total": sum(s["models_total"] for s in summaries),
            "models_rendered": sum(s["models_rendered"] for s in summaries),
            "models_resumed": sum(s["models_resumed"] for s in summaries),
            "skipped": {k: v for s in summaries for k, v in s["skipped"].items()},
            "views": views, "seconds": seconds,
            "views_per_second": views / seconds if seconds > 0 else 0.0}


def merge_shards(out_path: str | Path, count: int, remove_shards: bool = True) -> Path:
    """Join the ``count`` complete shard files into ``out_path`` (atomic), rows in model-key
    order."""
    out_path = Path(out_path)
    shards = [shard_path(out_path, i, count) for i in range(count)]
    missing = [str(p) for p in shards if not p.exists()]
    if missing:
        raise FileNotFoundError(f"cannot merge into {out_path}: missing shards {missing}")
    sources = []
    try:
        for p in shards:
            f = h5py.File(p, "r")
            sources.append(f)
            check_format(f, p, RENDER_FORMAT)
        total = sum(int(f.attrs["complete_models"]) for f in sources)
        first = sources[0]
        with atomic_h5(out_path) as out:
            out.attrs.update(dict(first.attrs))
            skipped = {}
            for f in sources:
                skipped.update(json.loads(f.attrs.get("skipped_json", "{}")))
            out.attrs["skipped_json"] = json.dumps(skipped)
            out.attrs["complete_models"] = total
            out.attrs["shards"] = count
            for name, d in first.items():
                out.create_dataset(name, shape=(total, *d.shape[1:]), dtype=d.dtype,
                                   chunks=d.chunks if d.chunks and d.chunks[0] <= total
                                   else None,
                                   compression=d.compression, compression_opts=d.compression_opts,
                                   shuffle=d.shuffle)
            # rows in model-key order, as one process renders them (shard i holds every N-th
            # model): the merged file is the same whatever N
            rows = sorted((key, j, k) for j, f in enumerate(sources)
                          for k, key in enumerate(model_keys(f)))
            for name in first:
                for offset, (_, j, k) in enumerate(rows):  # per row keeps memory bounded
                    out[name][offset] = sources[j][name][k]
    finally:
        for f in sources:
            f.close()
    if remove_shards:
        for p in shards:
            p.unlink()
    return out_path
