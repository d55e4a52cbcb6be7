"""Reading, checking and writing experiment configs (the schema is :mod:`ss3d.config.schema`).

YAML files and dotted overrides are coerced to the fields' types and range-checked key by key
(:func:`apply_overrides`), then checked across fields (:func:`validate`); every error is a
:class:`ConfigError` naming the key, the value and where it came from. :func:`flatten`,
:func:`to_dict` / :func:`from_dict` and :func:`dump_yaml` write a config out again.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

from ss3d.config.schema import ExperimentConfig
from ss3d.data import taxonomy
from ss3d.files import name_problem

__all__ = [
    "CATEGORY_KEYS", "RENAMED", "SYNSETS", "ConfigError", "apply_overrides",
    "config_from_namespace", "describe_fields", "dump_yaml", "flatten", "format_set_args",
    "from_dict", "load_config", "parse_set_args", "parse_shard", "to_dict", "validate",
]


class ConfigError(ValueError):
    """A config value or key is invalid. The message names the key, the value and the source."""


# Keys that were renamed: an old name fails with a message naming the new one (never silently
# ignored, never silently mapped: an experiment file should say what it means).
RENAMED: dict[str, str] = {
    "optim.lr": "pretrain.lr",
    "optim.weight_decay": "pretrain.weight_decay",
    "optim.schedule": "pretrain.schedule",
    "selftrain.stage_one_epochs": "selftrain.phase_a_epochs",
    "selftrain.n_cam_iters": "selftrain.camera_steps",
    "selftrain.grid_resolution": "selftrain.score_size",
    "selftrain.selection_resolution": "selftrain.selection_size",
    "evaluate.grid_resolution": "evaluate.mesh_resolution",
}


# Canonical category names and their ShapeNet synset ids: the 55 ShapeNetCore v2 categories
# plus the procedural bird (ShapeNet has no birds; its id lies outside ShapeNet's range). The
# procedural generator writes the same ids, so a real ShapeNetCore root and the embedded data
# are read by the same loader. Aliases and ids are resolved by ss3d.data.taxonomy.
SYNSETS: dict[str, str] = taxonomy.SYNSETS
# Category keys: validate() rewrites every entry to its canonical name (04256520 -> sofa), so
# that renders.h5, collection files, MLflow params and evaluation all use one spelling.
CATEGORY_KEYS: tuple[str, ...] = (
    "data.categories", "data.heldout_categories", "data.collections", "selftrain.category")


def _canonical_categories(cfg: ExperimentConfig, source: str) -> None:
    """Resolve every category key to canonical names (in place); ConfigError if unknown.

    The rules are those of :func:`ss3d.data.taxonomy.canonical_category_keys`: pre-training
    and held-out categories need a procedural generator unless ``data.shapenet_root`` is set.
    """
    # the generators' package is slow to import: only when a config is loaded
    from ss3d.data.procedural import PROCEDURAL_CATEGORIES

    d = cfg.data
    try:
        keys = taxonomy.canonical_category_keys(
            {"data.categories": d.categories, "data.heldout_categories": d.heldout_categories,
             "data.collections": d.collections, "selftrain.category": [cfg.selftrain.category]},
            shapenet_root=d.shapenet_root, generated=("data.categories", "data.heldout_categories"),
            generators=PROCEDURAL_CATEGORIES, source=source)
    except taxonomy.CategoryKeyError as err:
        raise ConfigError(str(err)) from None
    d.categories = keys["data.categories"]
    d.heldout_categories = keys["data.heldout_categories"]
    d.collections = keys["data.collections"]
    (cfg.selftrain.category,) = keys["selftrain.category"]


# ----------------------------------------------------------------------------------------------
# Type checking and coercion
# ----------------------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Return ``value`` as type ``tp`` or raise a ConfigError naming key, value and source."""
    origin = typing.get_origin(tp)

    def bad() -> ConfigError:
        return ConfigError(
            f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r} ({source})")

    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if isinstance(value, tuple):
            value = list(value)
        if isinstance(value, str):  # "car,chair" from --set or papermill -p
            value = [v.strip() for v in value.split(",") if v.strip()]
            if item_tp in (int, float):
                try:
                    value = [item_tp(v) for v in value]
                except ValueError:
                    raise bad() from None
        if not isinstance(value, list):
            raise bad()
        return [_coerce(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{key}: value {value!r} is not one of {list(allowed)} ({source})")
        return value
    if origin in (typing.Union, types.UnionType):
        raise bad()  # no unions in our configs
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 (PyYAML) reads "5e-4" or "1e3" (no dot) as a string: accept it here
            try:
                return float(value)
            except ValueError:
                raise bad() from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad()
        return float(value)
    if tp is str:
        # YAML 1.1 reads an unquoted synset id (04256520) as an octal or decimal number, and so
        # does papermill's -p: give category keys their synset back
        if (key.split("[")[0] in CATEGORY_KEYS and isinstance(value, int)
                and not isinstance(value, bool)
                and (synset := taxonomy.synset_from_yaml_int(value)) is not None):
            return synset
        if not isinstance(value, str):
            raise bad()
        return value
    raise bad()


def _check_range(value: Any, meta: Mapping[str, Any], key: str, source: str) -> None:
    def fail(rule: str) -> None:
        raise ConfigError(f"{key}: value {value!r} out of range, must be {rule} ({source})")

    if meta.get("choices") is not None and value not in meta["choices"]:
        raise ConfigError(
            f"{key}: value {value!r} is not one of {list(meta['choices'])} ({source})")
    if meta.get("ge") is not None and not value >= meta["ge"]:
        fail(f">= {meta['ge']}")
    if meta.get("gt") is not None and not value > meta["gt"]:
        fail(f"> {meta['gt']}")
    if meta.get("le") is not None and not value <= meta["le"]:
        fail(f"<= {meta['le']}")
    if meta.get("lt") is not None and not value < meta["lt"]:
        fail(f"< {meta['lt']}")


def _resolved_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _set_field(obj: Any, key_parts: list[str], value: Any, full_key: str, source: str) -> None:
    hints = _resolved_hints(type(obj))
    name = key_parts[0]
    known = [f.name for f in dataclasses.fields(obj)]
    if full_key in RENAMED:
        raise ConfigError(f"'{full_key}' was renamed '{RENAMED[full_key]}' ({source})")
    if name not in known:
        prefix = full_key[: len(full_key) - len(".".join(key_parts))]
        raise ConfigError(
            f"unknown key '{full_key}' ({source}); known keys under "
            f"'{prefix.rstrip('.') or '<root>'}': {', '.join(known)}")
    current = getattr(obj, name)
    if dataclasses.is_dataclass(current):
        if len(key_parts) == 1:
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"{full_key}: expected a mapping of keys, got {type(value).__name__} "
                    f"{value!r} ({source})")
            for sub_key, sub_value in value.items():
                _set_field(current, [str(sub_key)], sub_value, f"{full_key}.{sub_key}", source)
            return
        _set_field(current, key_parts[1:], value, full_key, source)
        return
    if len(key_parts) > 1:
        raise ConfigError(f"unknown key '{full_key}' ({source}): '{name}' has no sub-keys")
    meta = next(f.metadata for f in dataclasses.fields(obj) if f.name == name)
    coerced = _coerce(value, hints[name], full_key, source)
    _check_range(coerced, meta, full_key, source)
    setattr(obj, name, coerced)


def apply_overrides(cfg: ExperimentConfig, overrides: Mapping[str, Any],
                    source: str = "overrides") -> ExperimentConfig:
    """Apply ``{"section.key": value}`` or nested ``{"section": {...}}`` overrides in place."""
    for key, value in overrides.items():
        _set_field(cfg, str(key).split("."), value, str(key), source)
    validate(cfg, source)
    return cfg


_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def _numbers(cfg: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """``(dotted key, value)`` of every float in the config, list items included."""
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            yield from _numbers(value, f"{key}.")
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, float):
                yield key, item


def validate(cfg: ExperimentConfig, source: str = "config") -> None:
    """Cross-field checks that a single field's metadata cannot express."""
    if (problem := name_problem(cfg.name)) is not None:
        raise ConfigError(f"name: value {cfg.name!r} is not a name: {problem} (the experiment "
                          "name becomes a folder under output_dir and the MLflow experiment: "
                          f"letters, digits, '_', '-', '.', spaces) ({source})")
    for key, value in _numbers(cfg):
        if not math.isfinite(value):
            raise ConfigError(f"{key}: value {value!r} is not a finite number ({source})")
    if not _DEVICE.fullmatch(cfg.optim.device):
        raise ConfigError(f"optim.device: value {cfg.optim.device!r} is not 'auto', 'cpu', "
                          f"'cuda' or 'cuda:N' ({source})")
    r = cfg.render
    for key, pair in (("render.elevation_range", r.elevation_range),
                      ("render.distance_range", r.distance_range)):
        if len(pair) != 2 or pair[0] > pair[1]:
            raise ConfigError(f"{key}: value {pair!r} must be [low, high] with low <= high "
                              f"({source})")
    if not (-90.0 < r.elevation_range[0] and r.elevation_range[1] < 90.0):
        raise ConfigError(f"render.elevation_range: value {r.elevation_range!r} must lie "
                          f"strictly inside (-90, 90) ({source})")
    if r.distance_range[0] <= cfg.model.object_radius:
        raise ConfigError(
            f"render.distance_range: value {r.distance_range!r} must stay beyond "
            f"model.object_radius={cfg.model.object_radius} (the camera would sit inside the "
            f"sampled volume) ({source})")
    if len(r.background) != 3 or not all(0.0 <= c <= 1.0 for c in r.background):
        raise ConfigError(f"render.background: value {r.background!r} must be 3 values in "
                          f"[0, 1] ({source})")
    if cfg.data.val_fraction + cfg.data.test_fraction >= 1.0:
        raise ConfigError(
            f"data.val_fraction + data.test_fraction: values {cfg.data.val_fraction} + "
            f"{cfg.data.test_fraction} leave no training models ({source})")
    p = cfg.pretrain
    if p.foreground_fraction + p.edge_fraction > 1.0:
        raise ConfigError(
            f"pretrain.foreground_fraction + pretrain.edge_fraction: values "
            f"{p.foreground_fraction} + {p.edge_fraction} exceed 1 ({source})")
    _canonical_categories(cfg, source)
    _check_category_lists(cfg, source)
    _check_encoder_batches(cfg, source)
    _check_bounds(cfg, source)
    _check_paths(cfg, source)
    thresholds = cfg.evaluate.fscore_thresholds
    if not thresholds or not all(0.0 < t <= 1.0 for t in thresholds):
        raise ConfigError(f"evaluate.fscore_thresholds: value {thresholds!r} must be non-empty "
                          f"fractions of the cube side in (0, 1] ({source})")
    levels = cfg.evaluate.surface_levels
    if not all(0.0 < f < 1.0 for f in levels) or len(set(levels)) != len(levels):
        raise ConfigError(f"evaluate.surface_levels: value {levels!r} must be distinct peak "
                          f"fractions in (0, 1), or empty ({source})")
    if levels and cfg.evaluate.peak_fraction == 0.0:
        raise ConfigError(f"evaluate.peak_fraction: 0 reads every model at the absolute "
                          f"evaluate.density_threshold, but evaluate.surface_levels {levels!r} "
                          f"would choose a fraction of each peak instead: set "
                          f"evaluate.surface_levels=[] as well ({source})")
    try:
        parse_shard(r.shard)
    except ValueError as err:
        raise ConfigError(f"render.shard: {err} ({source})") from None
    s = cfg.selftrain
    if len(s.distance_range) != 2 or not (
            cfg.model.object_radius < s.distance_range[0] < s.distance_range[1]):
        raise ConfigError(
            f"selftrain.distance_range: value {s.distance_range!r} must be [low, high] with "
            f"model.object_radius={cfg.model.object_radius} < low < high ({source})")
    outside = [d for d in s.grid_distances
               if not s.distance_range[0] < d < s.distance_range[1]]
    if outside or not s.grid_distances:
        raise ConfigError(f"selftrain.grid_distances: values {outside or s.grid_distances!r} "
                          f"must be non-empty and lie inside selftrain.distance_range="
                          f"{s.distance_range!r} ({source})")
    if not s.grid_elevations or not all(-85.0 < e < 85.0 for e in s.grid_elevations):
        raise ConfigError(f"selftrain.grid_elevations: value {s.grid_elevations!r} must be "
                          f"non-empty and inside (-85, 85) ({source})")
    if cfg.selftrain.phase_a_epochs > cfg.selftrain.epochs:
        raise ConfigError(
            f"selftrain.phase_a_epochs: value {cfg.selftrain.phase_a_epochs} exceeds "
            f"selftrain.epochs={cfg.selftrain.epochs} ({source})")


def _check_category_lists(cfg: ExperimentConfig, source: str) -> None:
    """Pre-training needs a category; no list names one twice (also as alias and name); a
    held-out category is one never trained on."""
    d = cfg.data
    if not d.categories:
        raise ConfigError(f"data.categories: value [] must name at least one category to "
                          f"pre-train on ({source})")
    for key, values in (("data.categories", d.categories),
                        ("data.heldout_categories", d.heldout_categories),
                        ("data.collections", d.collections)):
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise ConfigError(f"{key}: {twice} listed more than once (after resolving aliases "
                              f"and synset ids) ({source})")
    both = [c for c in d.heldout_categories if c in d.categories]
    if both:
        raise ConfigError(f"data.heldout_categories: {both} are also in data.categories: a "
                          f"held-out category is one never trained on ({source})")


#: Upper bounds of values that are valid numbers but would fail late, or take hours and
#: gigabytes before anyone notices: key -> (bound, the reason).
BOUNDS: dict[str, tuple[int, str]] = {
    "seed": (2**32 - 1, "seeds reach NumPy, which takes 32 bits, and torch with the rank and "
             "step added"),
    "render.image_size": (1024, "each view is rendered at render.supersample² times its pixels "
                          "and a model's views are held in memory (4096 takes about 6.5 GB and "
                          "40 s per model)"),
    "data.collection_image_size": (1024, "as render.image_size: rendered photos are held in "
                                   "memory at supersampled size"),
}
#: The longest file or folder name most file systems take (bytes).
NAME_MAX = 255


def _check_bounds(cfg: ExperimentConfig, source: str) -> None:
    for key, (bound, reason) in BOUNDS.items():
        value: Any = cfg
        for part in key.split("."):
            value = getattr(value, part)
        if value > bound:
            raise ConfigError(f"{key}: value {value!r} out of range, must be <= {bound}: "
                              f"{reason} ({source})")


def _check_paths(cfg: ExperimentConfig, source: str) -> None:
    """Folders the stages write into must be folders (or not exist yet) and every name in them
    must be one the file system takes: found here, not after minutes of training."""
    from ss3d.files import repo_root  # light: no MLflow

    for key in ("data.root", "output_dir"):
        value = cfg.data.root if key == "data.root" else cfg.output_dir
        if not value:
            raise ConfigError(f"{key}: value '' is empty: name a folder ({source})")
        path = Path(value).expanduser()
        long = next((part for part in path.parts if len(part.encode()) > NAME_MAX), None)
        if long is not None:
            raise ConfigError(f"{key}: value {value!r} holds a name of {len(long.encode())} "
                              f"bytes: file systems take at most {NAME_MAX} ({source})")
        if not path.is_absolute():
            path = repo_root() / path
        for folder in (path, *path.parents):
            if folder.exists():
                if not folder.is_dir():
                    what = "is a file" if folder == path else f"lies under a file ({folder})"
                    raise ConfigError(f"{key}: value {value!r} {what}: it must be a folder, "
                                      f"or not exist yet ({source})")
                break
    for key, path_value in (("data.shapenet_root", cfg.data.shapenet_root),
                            ("data.cub_root", cfg.data.cub_root), ("data.csv", cfg.data.csv)):
        long = next((part for part in Path(path_value).parts
                     if len(part.encode()) > NAME_MAX), None)
        if long is not None:
            raise ConfigError(f"{key}: value {path_value!r} holds a name of "
                              f"{len(long.encode())} bytes: file systems take at most "
                              f"{NAME_MAX} ({source})")


def encoder_feature_side(size: int) -> int:
    """Side of the ResNet encoder's last feature map for ``size`` pixel inputs (a stride-2 7×7
    convolution, a stride-2 max-pool, three stride-2 stages)."""
    side = (size - 1) // 2 + 1
    for _ in range(4):
        side = (side - 1) // 2 + 1
    return side


def _check_encoder_batches(cfg: ExperimentConfig, source: str) -> None:
    """A training batch must give the encoder's last BatchNorm more than one value per channel:
    with a 1×1 last feature map (model.encoder_size 32), at least 2 images."""
    if encoder_feature_side(cfg.model.encoder_size) > 1:
        return
    batches = [("optim.batch_size", cfg.optim.batch_size)]
    if cfg.model.viewpoint_net:
        batches.append(("pretrain.viewpoint_batch", cfg.pretrain.viewpoint_batch))
    for key, value in batches:
        if value < 2:
            raise ConfigError(
                f"{key}: value {value} with model.encoder_size={cfg.model.encoder_size} gives "
                f"the encoder's BatchNorm one value per channel: raise {key} to >= 2 or "
                f"model.encoder_size to >= 33 ({source})")


def describe_fields(cfg: Any | None = None, prefix: str = "") -> list[dict[str, str]]:
    """Every config key with its type, default (or ``cfg``'s value) and documentation, in
    declaration order; sections as rows with an empty type. ``ss3d config --fields`` prints it.
    """
    cfg = cfg if cfg is not None else ExperimentConfig()
    hints = _resolved_hints(type(cfg))
    rows: list[dict[str, str]] = []
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            doc = (type(value).__doc__ or "").strip().split("\n\n")[0]
            rows.append({"key": key, "type": "", "value": "", "help": " ".join(doc.split())})
            rows += describe_fields(value, f"{key}.")
            continue
        meta = f.metadata
        limits = [f"{op} {meta[name]}" for name, op in
                  (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
                  if meta.get(name) is not None]
        help_text = meta.get("help", "") + (f" ({', '.join(limits)})" if limits else "")
        rows.append({"key": key, "type": _type_name(hints[f.name]), "value": json.dumps(value),
                     "help": help_text.strip()})
    return rows


def parse_shard(spec: str) -> tuple[int, int]:
    """Parse ``'i/N'`` into ``(i, N)`` with ``0 <= i < N``."""
    try:
        index_text, count_text = spec.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ValueError(f"value {spec!r} is not of the form 'i/N'") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"value {spec!r} needs 0 <= i < N")
    return index, count


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------
def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty; an experiment file sets at least "
                          "`name:` (an empty one would run as the default 'smoke' experiment "
                          "and write into its folders)")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections, got "
                          f"{type(data).__name__}")
    return data


def load_config(path: str | Path | None = None,
                overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Defaults, then the YAML file (if any), then dotted overrides; validated throughout."""
    cfg = ExperimentConfig()
    if path is not None and str(path) != "":
        path = Path(path)
        apply_overrides(cfg, _read_yaml(path), source=str(path))
    if overrides:
        apply_overrides(cfg, overrides, source="overrides")
    validate(cfg)
    return cfg


def parse_set_args(items: list[str] | None) -> dict[str, Any]:
    """``["model.hidden=128", "data.categories=[car, chair]"]`` → dict; values parsed as YAML."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, text = item.split("=", 1)
        try:
            value = yaml.safe_load(text) if text != "" else ""
        except yaml.YAMLError:
            value = text
        out[key.strip()] = value
    return out


def format_set_args(overrides: Mapping[str, Any]) -> list[str]:
    """The inverse of :func:`parse_set_args`: ``["--set", "key=value", ...]`` for a command line
    (lists written in YAML flow style, which the parser reads back)."""
    args: list[str] = []
    for key, value in overrides.items():
        text = json.dumps(value) if isinstance(value, list | dict) else str(value)
        args += ["--set", f"{key}={text}"]
    return args


def config_from_namespace(namespace: Mapping[str, Any], experiment_file: str = "",
                          overrides: Mapping[str, Any] | None = None,
                          parameters: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Build the config inside a notebook from its (papermill-injected) parameters.

    ``papermill -f experiments/x.yaml`` injects the YAML's top-level keys as variables: the
    section dicts (``data = {...}``) and root scalars (``name``, ``seed``). They are applied on
    top of the defaults and ``experiment_file`` (if given), then ``overrides`` (dotted keys,
    as ``ss3d pipeline --set`` passes them), then ``parameters``: the notebook's convenience
    parameters by dotted key (``{"render.image_size": image_size}``), where ``None`` means
    "not set" and leaves the value of ``overrides`` or the experiment in place.
    """
    for parameter, value, kind in (("experiment_file", experiment_file, str),
                                   ("overrides", overrides, Mapping),
                                   ("parameters", parameters, Mapping)):
        if value is not None and not isinstance(value, kind):
            example = ("a path" if kind is str else
                       "a mapping of dotted keys, e.g. -y \"overrides: {model.hidden: 128}\"")
            raise ConfigError(f"notebook parameter '{parameter}': expected {example}, got "
                              f"{type(value).__name__} {value!r}")
    cfg = load_config(experiment_file or None)
    injected: dict[str, Any] = {}
    for f in dataclasses.fields(ExperimentConfig):
        if f.name in namespace and namespace[f.name] not in (None, {}):
            injected[f.name] = namespace[f.name]
    if injected:
        apply_overrides(cfg, injected, source="notebook parameters")
    if overrides:
        apply_overrides(cfg, {k: v for k, v in overrides.items() if v is not None},
                        source="notebook overrides")
    given = {k: v for k, v in (parameters or {}).items() if v is not None}
    if given:
        apply_overrides(cfg, given, source="notebook parameters")
    return cfg


# ----------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------
def to_dict(cfg: Any) -> dict[str, Any]:
    """Nested plain-dict form (YAML-serialisable; what checkpoints store)."""
    return dataclasses.asdict(cfg)


def from_dict(data: Mapping[str, Any], source: str = "checkpoint") -> ExperimentConfig:
    """Rebuild a config from :func:`to_dict` output (validated)."""
    cfg = ExperimentConfig()
    apply_overrides(cfg, data, source=source)
    return cfg


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """``{"model.hidden": 64, "data.categories": "airplane,car", ...}`` for MLflow params."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(flatten(value, prefix=f"{key}."))
        elif isinstance(value, list):
            out[key] = ",".join(str(v) for v in value)
        else:
            out[key] = value
    return out


def dump_yaml(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
