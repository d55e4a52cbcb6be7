"""Stage 0: the experiment's data (``ss3d render``, ``ss3d ingest``, notebooks/00_render).

Where files go (``cfg.data.root``):

    shapenet/                 procedural models in the ShapeNetCore v2 layout (if no real root)
    renders.h5                synthetic renders of data.categories + data.heldout_categories
    photos/<name>/            rendered "photo" collections in the CUB layout
    collection_models/        the procedural instances those photos show
    collections/<name>.h5     ingested collections (masked crops)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py

from ss3d import tracking, viz
from ss3d.config import ConfigError, ExperimentConfig, parse_shard
from ss3d.data import taxonomy
from ss3d.data.h5 import H5FormatError
from ss3d.data.ingest import (
    ingest_items,
    load_hidden_cameras_file,
    read_csv,
    read_cub,
)
from ss3d.data.locks import exclusive
from ss3d.data.photos import PhotoSettings, render_photo_collection
from ss3d.data.procedural import (
    PROCEDURAL_CATEGORIES,
    PROCEDURAL_VERSION,
    generate_category,
)
from ss3d.data.render import (
    RENDER_FORMAT,
    RenderSettings,
    merge_shards,
    model_keys,
    render_models,
    render_models_parallel,
)
from ss3d.data.shapenet import ModelRecord, index_shapenet
from ss3d.files import check_name, inside
from ss3d.stages.shell import StageRun

__all__ = [
    "DataPaths", "DataResult", "check_collections", "data_paths", "find_renders", "ingest_stage",
    "render_stage",
]

log = logging.getLogger(__name__)
TAG_DATA_ROOT = "ss3d.data_root"  # the data root a render or ingest run wrote into


@dataclass
class DataPaths:
    root: Path
    shapenet: Path
    renders: Path
    photos: Path
    collections: Path

    def collection(self, name: str) -> Path:
        """``collections/<name>.h5``; BadNameError when ``name`` is not a plain name."""
        return inside(self.collections, f"{check_name(name, 'collection name')}.h5")


def data_paths(cfg: ExperimentConfig) -> DataPaths:
    root = Path(cfg.data.root)
    if not root.is_absolute():
        root = tracking.repo_root() / root
    return DataPaths(root=root,
                     shapenet=Path(cfg.data.shapenet_root) if cfg.data.shapenet_root
                     else root / "shapenet",
                     renders=root / "renders.h5", photos=root / "photos",
                     collections=root / "collections")


def find_renders(cfg: ExperimentConfig) -> tuple[Path, str | None]:
    """The experiment's rendered set, ``<data.root>/renders.h5``, and the MLflow run that
    rendered it there (None when no finished render run of this experiment wrote that root).

    The config decides where data comes from; runs only supply the lineage.

    Raises:
        FileNotFoundError: when this root has no renders but the experiment's latest render
            run wrote them into another root (naming both): the config is never overridden.
    """
    paths = data_paths(cfg)
    root = str(paths.root)
    latest = tracking.latest_run(cfg.name, "render")
    if paths.renders.is_file():
        made = latest if latest is not None and _data_root(latest) == root else (
            tracking.latest_run(cfg.name, "render", tags={TAG_DATA_ROOT: root}))
        return paths.renders, made.info.run_id if made is not None else None
    other = _data_root(latest) if latest is not None else ""
    if other and other != root and (Path(other) / paths.renders.name).is_file():
        raise FileNotFoundError(
            f"no rendered data at {paths.renders} (data.root={cfg.data.root}), but the "
            f"experiment's latest render run {latest.info.run_id} rendered into {other}: set "
            f"data.root={other} to train on those, or run `ss3d render` for this data.root")
    return paths.renders, None


def _data_root(run: Any) -> str:
    return run.data.tags.get(TAG_DATA_ROOT, "")


@dataclass
class DataResult:
    paths: DataPaths
    summary: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    run_id: str | None = None


def _select_models(cfg: ExperimentConfig, paths: DataPaths) -> list[ModelRecord]:
    categories = list(dict.fromkeys(cfg.data.categories + cfg.data.heldout_categories))
    if not cfg.data.shapenet_root:
        for cat in categories:
            generate_category(paths.shapenet, cat, cfg.data.models_per_category, seed=cfg.seed)
    records = index_shapenet(paths.shapenet, categories)
    chosen: list[ModelRecord] = []
    for cat in categories:  # the first N by model id: stable as models are added
        chosen.extend([r for r in records if r.category == cat]
                      [: cfg.data.models_per_category])
    return chosen


def _render_source(cfg: ExperimentConfig, paths: DataPaths) -> str:
    """What a renders file was rendered from: the procedural generator's version (models of
    another version are another world) or the ShapeNet root."""
    source = str(paths.shapenet) if cfg.data.shapenet_root else f"procedural-v{PROCEDURAL_VERSION}"
    if cfg.render.appearance != "plain":  # another look is another file (plain keeps its name)
        source += f"+appearance-{cfg.render.appearance}"
    return source


def _renders_complete(path: Path, cfg: ExperimentConfig, records: list[ModelRecord],
                      source: str) -> bool:
    """Whether ``path`` already holds every chosen model (or says why it skipped it), rendered
    from ``source`` at this image size and view count. A file of other models is not complete,
    however many it holds (another category list or count is rendered again, never mixed)."""
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            if not (f.attrs.get("format") == RENDER_FORMAT
                    and f.attrs.get("source") == source
                    and int(f.attrs["image_size"]) == cfg.render.image_size
                    and int(f.attrs["views_per_model"]) == cfg.render.views_per_model):
                return False
            held = set(model_keys(f)) | set(json.loads(f.attrs.get("skipped_json", "{}")))
    except OSError as err:
        raise H5FormatError(f"{path}: unreadable renders file ({err}); delete it to "
                            "re-render") from None
    return all(r.key in held for r in records)


def _render(cfg: ExperimentConfig, paths: DataPaths, merge_only: bool,
            progress: bool) -> dict[str, Any]:
    index, count = parse_shard(cfg.render.shard)
    if merge_only:
        if count == 1:  # no --shard given: find out N from the shard files on disk
            counts = {int(p.stem.rsplit("-of-", 1)[1]) for p in
                      paths.renders.parent.glob(f"{paths.renders.stem}.shard-*-of-*.h5")}
            if len(counts) != 1:
                raise FileNotFoundError(
                    f"cannot merge into {paths.renders}: expected shard files of one "
                    f"N in {paths.renders.parent}, found N in {sorted(counts) or 'none'}")
            count = counts.pop()
        merge_shards(paths.renders, count)
        return {"merged_shards": count}
    records = _select_models(cfg, paths)
    source = _render_source(cfg, paths)
    if _renders_complete(paths.renders, cfg, records, source):
        log.info("%s is complete, not re-rendering", paths.renders)
        return {"renders_reused": True, "models": len(records)}
    if count == 1 and cfg.render.workers > 1:  # this machine's cores, one shard each
        return render_models_parallel(
            records, paths.renders, RenderSettings.from_config(cfg), cfg.render.workers,
            val_fraction=cfg.data.val_fraction, test_fraction=cfg.data.test_fraction,
            source=source, progress=progress)
    summary = render_models(
        records, paths.renders, RenderSettings.from_config(cfg), shard=(index, count),
        val_fraction=cfg.data.val_fraction, test_fraction=cfg.data.test_fraction,
        source=source, progress=progress)
    if count == 1:
        merge_shards(paths.renders, 1)
    else:
        log.info("shard %d/%d done; run `ss3d render --merge` once all shards finished",
                 index, count)
    return summary


def render_stage(cfg: ExperimentConfig, *, merge_only: bool = False,
                 with_collections: bool = True, progress: bool = True,
                 track: bool = True) -> DataResult:
    """Generate (procedural) or index (ShapeNet) models, render them, build collections.

    Every step is resumable: finished renders, photo folders and collections are reused.
    With ``track``, everything is logged as an MLflow run of stage ``render``.
    """
    paths = data_paths(cfg)
    result = DataResult(paths=paths)
    _, shard_count = parse_shard(cfg.render.shard)
    if with_collections and (shard_count == 1 or merge_only):
        check_collections(cfg, paths)  # before any rendering

    def work() -> None:
        index, count = parse_shard(cfg.render.shard)
        piece = "merge" if merge_only else f"{index}-of-{count}"
        with exclusive(paths.root / f".render-{piece}.lock",
                       f"{paths.root} (render {piece})"):
            locked_work()

    def locked_work() -> None:
        result.summary["render"] = _render(cfg, paths, merge_only, progress)
        if shard_count > 1 and not merge_only:
            return  # collections and figures once, after the merge
        with h5py.File(paths.renders, "r") as f:
            n = int(f.attrs["complete_models"])
            cats = f["category"].asstr()[:n]
            splits = f["split"].asstr()[:n]
            result.summary["models"] = {c: int((cats == c).sum()) for c in sorted(set(cats))}
            result.summary["splits"] = {s: int((splits == s).sum()) for s in sorted(set(splits))}
        result.figures["render_grid"] = viz.render_grid(paths.renders)
        if with_collections:
            result.summary["collections"] = {}
            for name in cfg.data.collections:
                result.summary["collections"][name] = build_rendered_collection(
                    cfg, name, paths, progress=progress)
                result.figures[f"collection_{name}"] = viz.collection_grid(
                    paths.collection(name))

    return _run_data_stage(StageRun(cfg, "render", track=track, progress=progress,
                                    distributed=False), work, result)


def check_collections(cfg: ExperimentConfig, paths: DataPaths | None = None) -> None:
    """Every ``data.collections`` entry must be ingested already or have a procedural generator.

    Rendered "photo" collections always come from procedural models (also with a real
    ``data.shapenet_root``), so e.g. ``sofa`` needs ``ss3d ingest ... --name sofa`` first.

    Raises:
        ConfigError: naming the collection and what to do.
    """
    paths = paths or data_paths(cfg)
    for name in cfg.data.collections:
        if name not in PROCEDURAL_CATEGORIES and not paths.collection(name).is_file():
            raise ConfigError(
                f"data.collections: {name!r} has no procedural generator to render its photos "
                f"(those are: {', '.join(PROCEDURAL_CATEGORIES)}) and "
                f"{paths.collection(name)} does not exist: ingest its photos first (`ss3d "
                f"ingest --csv FILE --name {name}` or `--cub ROOT --name {name}`) or remove it "
                f"from data.collections")


def build_rendered_collection(cfg: ExperimentConfig, name: str, paths: DataPaths | None = None,
                              progress: bool = True) -> dict[str, Any]:
    """Render the CUB-layout photos of procedural ``name`` and ingest them."""
    paths = paths or data_paths(cfg)
    out = paths.collection(name)
    photos_dir = paths.photos / name
    appearance = cfg.data.collection_appearance
    source = f"rendered procedural {name} photos ({photos_dir})"
    if appearance != "plain":  # plain keeps the name that collections had before the sets
        source += f", appearance {appearance}"
    if out.is_file():
        with h5py.File(out, "r") as f:
            reusable = str(f.attrs.get("source", "")) == source
            summary = {"path": str(out), "images": int(f.attrs["n_images"]),
                       "skipped": int(f.attrs["n_skipped"]), "reused": True}
        if reusable:
            return summary
        # rendered with another appearance: generated data, rendered again (never mixed)
        log.info("%s was rendered with another appearance; rendering it again", out)
    photos = render_photo_collection(
        photos_dir, name, cfg.data.images_per_collection, seed=cfg.seed,
        settings=PhotoSettings(image_size=cfg.data.collection_image_size,
                               fov_degrees=cfg.render.fov_degrees,
                               instances=cfg.data.collection_instances,
                               appearance=appearance),
        models_dir=paths.root / "collection_models", progress=progress)
    return ingest_items(read_cub(photos, category=name), out, crop_size=cfg.data.crop_size,
                        margin=cfg.data.crop_margin,
                        min_mask_fraction=cfg.data.min_mask_fraction,
                        source=source,
                        hidden_cameras=load_hidden_cameras_file(photos), progress=progress)


def ingest_stage(cfg: ExperimentConfig, *, cub_root: str | None = None,
                 csv_path: str | None = None, name: str | None = None,
                 category: str = "bird", track: bool = True) -> DataResult:
    """Ingest a real CUB-200-2011 folder or a generic CSV into ``collections/<name>.h5``."""
    cub_root = cub_root or cfg.data.cub_root or None
    csv_path = csv_path or cfg.data.csv or None
    if bool(cub_root) == bool(csv_path):
        raise ValueError("give exactly one source: --cub ROOT or --csv FILE "
                         "(or data.cub_root / data.csv)")
    paths = data_paths(cfg)
    # a taxonomy name or alias is stored under its canonical name, which is what
    # data.collections and selftrain.category hold after validation ('couch' -> sofa.h5)
    if name is not None:
        name = taxonomy.canonical_name(check_name(name, "ingest --name")) or name
    if cub_root:
        check_name(category, "ingest --category")
        category = taxonomy.canonical_name(category) or category
        items, source = read_cub(cub_root, category=category), str(cub_root)
        name = name or "cub"
    else:
        name = name or check_name(Path(csv_path).stem, f"collection name (from {csv_path}; "
                                  "give --name)")
        items, source = read_csv(csv_path), str(csv_path)
    result = DataResult(paths=paths)

    def work() -> None:
        result.summary[name] = ingest_items(
            items, paths.collection(name), crop_size=cfg.data.crop_size,
            margin=cfg.data.crop_margin, min_mask_fraction=cfg.data.min_mask_fraction,
            source=source, hidden_cameras=load_hidden_cameras_file(cub_root)
            if cub_root else None)
        result.figures[f"collection_{name}"] = viz.collection_grid(paths.collection(name))

    return _run_data_stage(StageRun(cfg, "ingest", track=track, category=name,
                                    distributed=False), work, result)


def _flat_metrics(prefix: str, value: Any, out: dict[str, float]) -> None:
    if isinstance(value, bool):
        out[prefix] = float(value)
    elif isinstance(value, int | float):
        out[prefix] = float(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _flat_metrics(f"{prefix}.{k}" if prefix else str(k), v, out)


def _run_data_stage(run: StageRun, work: Callable[[], None], result: DataResult) -> DataResult:
    """Run a data stage's ``work`` in its run, then log its summary, numbers and figures."""
    with run.open():
        work()
        _log_summary(run, result)
    result.run_id = run.run_id
    return result


def _headline(summary: dict[str, Any]) -> dict[str, float]:
    """A data stage's headline: models rendered, collection images kept and skipped."""
    out: dict[str, float] = {}
    if isinstance(summary.get("models"), dict):
        out["models"] = sum(summary["models"].values())
    collections = summary.get("collections") or {
        k: v for k, v in summary.items() if isinstance(v, dict) and "images" in v}
    if collections:
        out["images"] = sum(c.get("images", 0) for c in collections.values())
        out["skipped"] = sum(c.get("skipped", 0) for c in collections.values())
    return out


def _log_summary(run: StageRun, result: DataResult) -> None:
    metrics: dict[str, float] = {}
    _flat_metrics("", result.summary, metrics)
    run.log_metrics({k.replace(" ", "_"): v for k, v in metrics.items()})
    run.log_headline(_headline(result.summary))
    run.log_dict(result.summary, "data_summary.json")
    run.set_tag(TAG_DATA_ROOT, str(result.paths.root))
    for name, fig in result.figures.items():
        run.log_figure(fig, name)
