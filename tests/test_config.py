from __future__ import annotations

import pytest

from ss3d.config import (
    ConfigError,
    ExperimentConfig,
    config_from_namespace,
    flatten,
    format_set_args,
    from_dict,
    load_config,
    parse_set_args,
    to_dict,
)

from .conftest import REPO


def test_smoke_yaml_equals_defaults():
    assert to_dict(load_config(REPO / "experiments/smoke.yaml")) == to_dict(ExperimentConfig())


def test_every_experiment_yaml_validates():
    files = sorted((REPO / "experiments").glob("*.yaml"))
    assert files
    for path in files:
        load_config(path)


def test_dotted_and_nested_overrides():
    cfg = load_config(None, {"model.hidden": 128, "data": {"models_per_category": 3}})
    assert cfg.model.hidden == 128 and cfg.data.models_per_category == 3
    # ints are accepted for float fields, YAML parsing of --set values
    cfg = load_config(None, parse_set_args(["pretrain.lr=1", "data.categories=[car, laptop]"]))
    assert cfg.pretrain.lr == 1.0 and isinstance(cfg.pretrain.lr, float)
    assert cfg.data.categories == ["car", "laptop"]


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  hiddden: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "model.hiddden" in str(err.value) and str(path) in str(err.value)
    path.write_text("modell:\n  hidden: 3\n")
    with pytest.raises(ConfigError, match="unknown key 'modell'"):
        load_config(path)


def test_wrong_type_and_range_name_key_and_value(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("render:\n  image_size: big\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "render.image_size" in str(err.value) and "'big'" in str(err.value)
    assert str(path) in str(err.value)
    with pytest.raises(ConfigError, match=r"pretrain.lr: value -1.0 out of range"):
        load_config(None, {"pretrain.lr": -1})
    with pytest.raises(ConfigError, match="model.encoder"):
        load_config(None, {"model.encoder": "vgg"})
    with pytest.raises(ConfigError, match="expected bool"):
        load_config(None, {"optim.amp": "yes"})
    with pytest.raises(ConfigError, match="unknown category 'dragon'"):
        load_config(None, {"data.categories": ["dragon"]})
    with pytest.raises(ConfigError, match="render.shard"):
        load_config(None, {"render.shard": "3/2"})
    with pytest.raises(ConfigError, match="distance_range"):
        load_config(None, {"render.distance_range": [0.5, 1.0]})
    with pytest.raises(ConfigError, match="selftrain.grid_distances: values \\[3.5\\]"):
        load_config(None, {"selftrain.grid_distances": [1.2, 3.5]})
    with pytest.raises(ConfigError, match="selftrain.distance_range"):
        load_config(None, {"selftrain.distance_range": [0.5, 2.0]})


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_flatten_and_round_trip():
    cfg = load_config(None, {"model.hidden": 32})
    flat = flatten(cfg)
    assert flat["model.hidden"] == 32 and flat["name"] == "smoke"
    assert flat["data.categories"] == ("airplane,car,laptop,trash_bin,bench,sofa,table,cabinet,"
                                       "bookshelf,display,lamp,loudspeaker,telephone,bottle,"
                                       "mug,bowl,bed,rifle,watercraft,motorbike")
    assert all(not isinstance(v, dict | list) for v in flat.values())
    assert to_dict(from_dict(to_dict(cfg))) == to_dict(cfg)


def test_papermill_style_namespace(tmp_path):
    # what `papermill -f x.yaml -p ...` leaves in the notebook's globals
    namespace = {"name": "exp", "data": {"models_per_category": 2}, "render": {},
                 "unrelated": 5}
    cfg = config_from_namespace(namespace, overrides={"render.image_size": 32,
                                                      "model.hidden": None})
    assert cfg.name == "exp" and cfg.data.models_per_category == 2
    assert cfg.render.image_size == 32 and cfg.model.hidden == ExperimentConfig().model.hidden


def test_an_unset_notebook_parameter_keeps_the_pipelines_override():
    # `ss3d pipeline --set render.image_size=24` reaches the notebook as an override; the
    # notebook's own `image_size = None` (not set) must not erase it
    cfg = config_from_namespace({}, overrides={"render.image_size": 24, "data.root": "/x"},
                                parameters={"render.image_size": None, "data.root": None,
                                            "pretrain.steps": 7})
    assert cfg.render.image_size == 24 and cfg.data.root == "/x"
    assert cfg.pretrain.steps == 7
    # a parameter that is set wins over the override
    cfg = config_from_namespace({}, overrides={"render.image_size": 24},
                                parameters={"render.image_size": 32})
    assert cfg.render.image_size == 32


def test_exponent_floats_from_yaml_and_set(tmp_path):
    # PyYAML reads 5e-4 (no dot) as a string; float fields accept it, other strings still fail
    path = tmp_path / "lr.yaml"
    path.write_text("pretrain:\n  lr: 5e-4\n")
    assert load_config(path).pretrain.lr == pytest.approx(5e-4)
    assert load_config(None, parse_set_args(["distill.lr=2e-4"])).distill.lr == pytest.approx(2e-4)
    with pytest.raises(ConfigError, match="pretrain.lr: expected float"):
        load_config(None, {"pretrain.lr": "fast"})


def test_empty_files_infinite_numbers_and_unknown_devices_are_refused(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing but a comment\n")
    with pytest.raises(ConfigError, match="empty.yaml: the file is empty"):
        load_config(empty)
    with pytest.raises(ConfigError, match=r"pretrain.lr: value inf is not a finite number"):
        load_config(None, {"pretrain.lr": float("inf")})
    nan_file = tmp_path / "nan.yaml"
    nan_file.write_text("name: x\nselftrain:\n  grid_distances: [2.5, .nan]\n")
    with pytest.raises(ConfigError, match=r"selftrain.grid_distances: value nan .*nan.yaml"):
        load_config(nan_file)
    for bad in ("gpu", "cuda0", "cuda:x"):
        with pytest.raises(ConfigError, match=f"optim.device: value '{bad}'"):
            load_config(None, {"optim.device": bad})
    assert load_config(None, {"optim.device": "cuda:1"}).optim.device == "cuda:1"


def test_set_args_round_trip():
    overrides = {"data.categories": ["car", "chair"], "pretrain.lr": 0.002, "name": "x",
                 "data.root": "/tmp/a b", "model.fused_layers": False}
    args = format_set_args(overrides)
    assert args[0::2] == ["--set"] * len(overrides)
    assert parse_set_args(args[1::2]) == overrides


@pytest.mark.parametrize("name", ["../../x", "/tmp/x", "", "  ", "a/b", "..", "a\\b", ".hidden",
                                  "x\x00y"])
def test_a_name_that_is_not_one_folder_is_refused_up_front(name, capsys):
    with pytest.raises(ConfigError, match=r"^name: value .* is not a name: .*\(overrides\)"):
        load_config(None, {"name": name})
    from ss3d.cli import main

    assert main(["config", "--set", f"name={name}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ss3d: config error: name: ")


def test_paths_built_from_names_stay_inside_their_root(tmp_path):
    from ss3d.files import BadNameError, inside
    from ss3d.stages.data import data_paths
    from ss3d.stages.shell import stage_dir

    cfg = load_config(None, {"output_dir": str(tmp_path / "out"), "data.root": str(tmp_path)})
    assert stage_dir(cfg, "pretrain") == tmp_path / "out" / "smoke" / "pretrain"
    cfg.name = "../../x"  # set past validation: the path itself still refuses
    with pytest.raises(BadNameError, match="is not a name"):
        stage_dir(cfg, "pretrain")
    for bad in ("../x", "/etc/x", "a/../../b"):
        with pytest.raises(BadNameError, match="outside"):
            inside(tmp_path, bad)
    assert inside(tmp_path, "a", "b.h5") == tmp_path / "a" / "b.h5"
    with pytest.raises(BadNameError, match="collection name"):
        data_paths(cfg).collection("../../x")


@pytest.mark.parametrize("overrides, message", [
    ({"data.heldout_categories": ["car"], "data.categories": ["car", "airplane"]},
     r"data.heldout_categories: \['car'\] are also in data.categories"),
    ({"data.categories": []}, r"data.categories: value \[\] must name at least one"),
    ({"data.collections": ["bird", "airplane", "plane"]},
     r"data.collections: \['airplane'\] listed more than once"),
    ({"evaluate.fscore_thresholds": [-1]}, r"evaluate.fscore_thresholds: value \[-1.0\] must"),
    ({"evaluate.fscore_thresholds": []}, r"evaluate.fscore_thresholds: value \[\] must"),
    ({"model.encoder_size": 32, "optim.batch_size": 1},
     r"optim.batch_size: value 1 with model.encoder_size=32 .* raise optim.batch_size to >= 2 "
     r"or model.encoder_size to >= 33"),
    ({"model.encoder_size": 32, "pretrain.viewpoint_batch": 1}, r"pretrain.viewpoint_batch"),
])
def test_contradictions_are_refused_up_front_with_key_and_reason(overrides, message):
    with pytest.raises(ConfigError, match=message + r".*\(overrides\)$"):
        load_config(None, overrides)


def test_the_encoder_batch_rule_is_the_real_batchnorm_limit():
    import torch

    from ss3d.config.loading import encoder_feature_side
    from ss3d.model import ImageEncoder

    for size, batch in ((32, 1), (32, 2), (33, 1)):
        encoder = ImageEncoder(latent_dim=8, input_size=size).train()
        images = torch.rand(batch, 3, size, size)
        if encoder_feature_side(size) ** 2 * batch > 1:
            encoder.backbone(images)
            encoder(images)
        else:  # torch's BatchNorm refuses it, and the encoder says which sizes to raise
            with pytest.raises(ValueError, match="more than 1 value per channel"):
                encoder.backbone(images)
            with pytest.raises(ValueError, match=r"raise optim.batch_size .* >= 2, or "
                               r"model.encoder_size to >= 33"):
                encoder(images)
    load_config(None, {"model.encoder_size": 33, "optim.batch_size": 1,
                       "pretrain.viewpoint_batch": 1})  # a 2x2 map: fine with one image


def test_ray_shares_over_one_are_refused_up_front():
    with pytest.raises(ConfigError,
                       match="pretrain.foreground_fraction \\+ pretrain.edge_fraction"):
        load_config(None, {"pretrain.foreground_fraction": 0.6, "pretrain.edge_fraction": 0.5})
