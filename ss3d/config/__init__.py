"""Typed experiment configuration.

One config system for the CLI, the notebooks and MLflow:

* every section is a dataclass whose defaults are the embedded CPU run (``experiments/smoke.yaml``);
* an experiment is a YAML file that overrides some fields (``load_config("experiments/x.yaml")``);
* single values are overridden with dotted keys (``--set model.hidden=128`` on the CLI,
  ``overrides={"model.hidden": 128}`` in Python, ``-p`` parameters in notebooks);
* the same YAML is valid input for ``papermill -f``: its top-level keys are the section names,
  which the notebooks' parameters cells declare as (empty) dicts;
* :func:`flatten` gives the ``{"model.hidden": 128, ...}`` dict logged as MLflow params.

Validation happens once, up front: an unknown key, a value of the wrong type or a value out of
range raises :class:`ConfigError` naming the key, the value and the file it came from.

The schema (the section dataclasses) is :mod:`ss3d.config.schema`; reading, coercion,
overrides, validation and export are :mod:`ss3d.config.loading`. Import from
``ss3d.config``: every name is re-exported here.
"""

from __future__ import annotations

from ss3d.config.loading import (
    CATEGORY_KEYS,
    RENAMED,
    SYNSETS,
    ConfigError,
    apply_overrides,
    config_from_namespace,
    describe_fields,
    dump_yaml,
    flatten,
    format_set_args,
    from_dict,
    load_config,
    parse_set_args,
    parse_shard,
    to_dict,
    validate,
)
from ss3d.config.schema import (
    DataConfig,
    DistillConfig,
    EvalConfig,
    ExperimentConfig,
    ModelConfig,
    OptimConfig,
    PretrainConfig,
    RenderConfig,
    SelftrainConfig,
)

__all__ = [
    "CATEGORY_KEYS",
    "RENAMED",
    "SYNSETS",
    "ConfigError",
    "DataConfig",
    "DistillConfig",
    "EvalConfig",
    "ExperimentConfig",
    "ModelConfig",
    "OptimConfig",
    "PretrainConfig",
    "RenderConfig",
    "SelftrainConfig",
    "apply_overrides",
    "config_from_namespace",
    "describe_fields",
    "dump_yaml",
    "flatten",
    "format_set_args",
    "from_dict",
    "load_config",
    "parse_set_args",
    "parse_shard",
    "to_dict",
    "validate",
]
