"""Every ShapeNetCore category: taxonomy lookups, config validation, a real-layout sofa root."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import trimesh

from ss3d.cli import main
from ss3d.config import SYNSETS, ConfigError, flatten, load_config
from ss3d.data import taxonomy
from ss3d.data.procedural import PROCEDURAL_CATEGORIES
from ss3d.data.shapenet import ShapeNetError, index_shapenet, stable_split
from ss3d.engine import load_checkpoint
from ss3d.stages.data import render_stage

from .conftest import REPO

SOFA = "04256520"
WASHER = "04554684"  # a category no procedural generator makes
FRACTIONS = {"data.val_fraction": 0.25, "data.test_fraction": 0.25}


# ------------------------------------------------------------------------------------ taxonomy
def test_taxonomy_has_the_55_shapenet_categories_and_the_procedural_bird():
    assert len(taxonomy.SHAPENET_CORE) == 55
    assert len(set(taxonomy.SHAPENET_CORE.values())) == 55
    assert all(taxonomy.is_synset_id(s) for s in taxonomy.SYNSETS.values())
    assert taxonomy.SYNSETS["bird"] == "99000001" and len(taxonomy.SYNSETS) == 58
    assert taxonomy.SYNSETS["quadruped"] == "99000002" and taxonomy.SYNSETS["fish"] == "99000003"
    assert SYNSETS == taxonomy.SYNSETS  # the config's mapping is the taxonomy's
    # every procedural generator has a name (and id) in the taxonomy
    assert set(PROCEDURAL_CATEGORIES) <= set(taxonomy.SYNSETS)
    # aliases point at canonical names and never shadow one
    assert set(taxonomy.ALIASES.values()) <= set(taxonomy.SYNSETS)
    assert not set(taxonomy.ALIASES) & set(taxonomy.SYNSETS)
    assert all(taxonomy.normalise(a) == a for a in taxonomy.ALIASES)


@pytest.mark.parametrize(("query", "name", "synset"), [
    ("sofa", "sofa", SOFA), (SOFA, "sofa", SOFA), ("couch", "sofa", SOFA),
    ("airplane", "airplane", "02691156"), ("plane", "airplane", "02691156"),
    ("vessel", "watercraft", "04530566"), ("ashcan", "trash_bin", "02747177"),
    ("Trash can", "trash_bin", "02747177"), ("trash-can", "trash_bin", "02747177"),
    ("monitor", "display", "03211117"), ("speaker", "loudspeaker", "03691459"),
    ("phone", "telephone", "04401088"), ("motorcycle", "motorbike", "03790512"),
    ("rifle", "rifle", "04090263"), (" Chair ", "chair", "03001627"),
    ("bird", "bird", "99000001"), ("99000001", "bird", "99000001"),
])
def test_names_ids_and_aliases_resolve(query, name, synset):
    assert taxonomy.resolve(query) == (name, synset)
    assert taxonomy.synset_of(query) == synset
    assert taxonomy.canonical_name(query) == name
    assert taxonomy.name_of(synset) == name


def test_unknown_names_and_ids_are_clear_errors():
    with pytest.raises(taxonomy.UnknownCategoryError, match="did you mean sofa") as err:
        taxonomy.resolve("sofaa")
    assert "vessel" in str(err.value) and "washer" in str(err.value)  # aliases, all names
    with pytest.raises(taxonomy.UnknownCategoryError, match="couch \\(=sofa\\)"):
        taxonomy.resolve("couchh")
    with pytest.raises(taxonomy.UnknownCategoryError, match="unknown category 'dragon'"):
        taxonomy.synset_of("dragon")
    with pytest.raises(taxonomy.UnknownCategoryError, match="unknown synset id '12345678'"):
        taxonomy.resolve("12345678")
    assert taxonomy.resolve("12345678", extra_synsets=["12345678"]) == ("12345678", "12345678")
    assert taxonomy.name_of("12345678") == "12345678"  # a synset without a name is its own
    with pytest.raises(taxonomy.UnknownCategoryError, match="not a synset id"):
        taxonomy.name_of("sofa")
    assert taxonomy.canonical_name("dragon") is None


def test_synsets_under_lists_v1_and_v2_synset_folders(tmp_path):
    assert taxonomy.synsets_under(tmp_path / "missing") == []
    (tmp_path / SOFA / "m1" / "models").mkdir(parents=True)  # v2
    (tmp_path / "02691156" / "m2").mkdir(parents=True)  # v1
    (tmp_path / "taxonomy.json").write_text("[]")
    (tmp_path / "docs").mkdir()
    (tmp_path / "123").mkdir()  # not 8 digits
    assert taxonomy.synsets_under(tmp_path) == ["02691156", SOFA]
    assert taxonomy.synsets_under(str(tmp_path)) == ["02691156", SOFA]


def test_synset_from_yaml_int_recovers_octal_and_decimal_readings():
    import yaml

    assert yaml.safe_load(f"[{SOFA}]") == [1138000]  # the YAML 1.1 trap
    assert taxonomy.synset_from_yaml_int(1138000) == SOFA
    assert taxonomy.synset_from_yaml_int(99000001) == "99000001"
    assert taxonomy.synset_from_yaml_int(5) is None
    assert taxonomy.synset_from_yaml_int(True) is None


# -------------------------------------------------------------------------------------- config
def test_config_canonicalises_names_aliases_and_ids():
    cfg = load_config(None, {"data.categories": ["plane", "02958343", "Laptop"],
                             "data.heldout_categories": ["03001627"],
                             "data.collections": ["99000001", "aeroplane"],
                             "selftrain.category": "bird"})
    assert cfg.data.categories == ["airplane", "car", "laptop"]
    assert cfg.data.heldout_categories == ["chair"]
    assert cfg.data.collections == ["bird", "airplane"]
    assert flatten(cfg)["data.categories"] == "airplane,car,laptop"
    # canonical values validate again unchanged (load_config validates every layer)
    cfg = load_config(None, {"data.shapenet_root": "/nowhere", "data.categories": [SOFA],
                             "data.collections": ["couch"],
                             "selftrain.category": "vessel"})
    assert cfg.data.categories == ["sofa"] and cfg.data.collections == ["sofa"]
    assert cfg.selftrain.category == "watercraft"
    # an alias and its name are one category: held out and trained on at once is refused
    with pytest.raises(ConfigError, match=r"data.heldout_categories: \['sofa'\] are also in "
                       "data.categories"):
        load_config(None, {"data.shapenet_root": "/nowhere", "data.categories": [SOFA],
                           "data.heldout_categories": ["couch"]})


def test_config_without_shapenet_root_needs_a_procedural_generator(tmp_path):
    path = tmp_path / "washer.yaml"  # a ShapeNet category with no procedural generator
    path.write_text(f"data:\n  categories: ['{WASHER}']\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert msg.startswith("data.categories: category '04554684' (washer)")
    assert "no procedural generator" in msg and "set data.shapenet_root" in msg
    assert str(path) in msg
    with pytest.raises(ConfigError, match="data.heldout_categories: category 'piano'.*"
                       "data.shapenet_root"):
        load_config(None, {"data.heldout_categories": ["piano"]})
    # a collection or a self-training category may be ingested photos: accepted here
    cfg = load_config(None, {"data.collections": ["sofa"], "selftrain.category": "couch"})
    assert cfg.data.collections == ["sofa"] and cfg.selftrain.category == "sofa"


def test_config_unknown_categories_name_key_and_source(tmp_path):
    with pytest.raises(ConfigError, match="data.collections: unknown category 'sofaa'; did you "
                       "mean sofa.*\\(overrides\\)"):
        load_config(None, {"data.collections": ["sofaa"]})
    with pytest.raises(ConfigError, match="selftrain.category: unknown category 'dragon'"):
        load_config(None, {"selftrain.category": "dragon"})
    with pytest.raises(ConfigError, match="unknown synset id '12345678'.*needs "
                       "data.shapenet_root"):
        load_config(None, {"data.categories": ["12345678"]})
    with pytest.raises(ConfigError, match="has no folder 12345678 \\(overrides\\)"):
        load_config(None, {"data.shapenet_root": str(tmp_path), "data.categories": ["12345678"]})
    # an 8-digit synset folder of the real root is accepted and is its own name
    (tmp_path / "12345678").mkdir()
    cfg = load_config(None, {"data.shapenet_root": str(tmp_path),
                             "data.categories": ["12345678", "sofa"]})
    assert cfg.data.categories == ["12345678", "sofa"]


def test_cli_set_reads_unquoted_synset_ids(tmp_path, capsys):
    args = ["config", "--config", str(REPO / "experiments/smoke.yaml"),
            "--set", f"data.shapenet_root={tmp_path}", "--set", f"data.categories=[{SOFA}, car]",
            "--set", "data.heldout_categories=03001627", "--set", "selftrain.category=99000001"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "- sofa\n  - car\n" in out and "- chair\n" in out and "category: bird" in out
    assert main(["config", "--set", f"data.categories=[{WASHER}]"]) == 2
    assert "set data.shapenet_root" in capsys.readouterr().err


# ------------------------------------------------------------------------ a real ShapeNet root
def _sofa(rng: np.random.Generator) -> trimesh.Trimesh:
    """A seat, a back and two arms (boxes), proportions varying per model."""
    w, d, h = rng.uniform(1.4, 2.2), rng.uniform(0.6, 0.9), rng.uniform(0.3, 0.5)
    parts = [trimesh.creation.box((w, h, d), trimesh.transformations.translation_matrix(
                 (0, h / 2, 0))),
             trimesh.creation.box((w, 2 * h, 0.15), trimesh.transformations.translation_matrix(
                 (0, h, -d / 2 + 0.075)))]
    for side in (-1, 1):
        parts.append(trimesh.creation.box((0.15, 1.4 * h, d),
                                          trimesh.transformations.translation_matrix(
                                              (side * (w / 2 - 0.075), 0.7 * h, 0))))
    return trimesh.util.concatenate(parts)


def _model_ids(count: int) -> list[str]:
    """ShapeNet-like ids covering every split (pre-training needs train and held-out rows)."""
    want = {"train": count - 2, "val": 1, "test": 1}
    ids = []
    for i in range(1000):
        model_id = f"{i:08x}5afe0000cafe0000{i:08x}"
        split = stable_split(model_id, **{k.split(".")[1]: v for k, v in FRACTIONS.items()})
        if want[split] > 0:
            want[split] -= 1
            ids.append(model_id)
        if len(ids) == count:
            return ids
    raise AssertionError("no ids for every split")


@pytest.fixture(scope="module")
def sofa_root(tmp_path_factory):
    """A ShapeNetCore v2 tree with one synset that no procedural generator makes."""
    root = tmp_path_factory.mktemp("ShapeNetCore.v2")
    rng = np.random.default_rng(0)
    for k, model_id in enumerate(_model_ids(5)):
        models = root / SOFA / model_id / "models"
        models.mkdir(parents=True)
        mesh = _sofa(rng)
        if k % 2:  # some with colours, some untextured (the loader's default grey)
            mesh.visual.face_colors = rng.integers(40, 255, (len(mesh.faces), 4))
        mesh.export(models / "model_normalized.obj")
    (root / "taxonomy.json").write_text("[]")
    return root


def test_shapenet_loader_resolves_names_aliases_and_ids(sofa_root):
    for query in ("sofa", "couch", SOFA):
        records = index_shapenet(sofa_root, [query])
        assert len(records) == 5 and {r.category for r in records} == {"sofa"}
    assert {r.category for r in index_shapenet(sofa_root)} == {"sofa"}
    with pytest.raises(ShapeNetError, match="no models for categories \\['rifle'\\]"):
        index_shapenet(sofa_root, ["rifle"])
    with pytest.raises(ShapeNetError, match="did you mean sofa"):
        index_shapenet(sofa_root, ["sofaa"])


def test_render_stage_refuses_a_collection_it_cannot_render(sofa_root, tmp_path):
    cfg = load_config(None, {"data.root": str(tmp_path / "data"),
                             "data.shapenet_root": str(sofa_root), "data.categories": ["sofa"],
                             "data.heldout_categories": [],
                             "data.collections": ["washing_machine"]})
    with pytest.raises(ConfigError, match="data.collections: 'washer' has no procedural "
                       "generator.*ss3d ingest"):
        render_stage(cfg, progress=False, track=False)
    assert not (tmp_path / "data" / "renders.h5").exists()  # refused before any rendering


def test_real_shapenet_sofa_renders_and_pretrains_through_cli(sofa_root, tmp_path,
                                                              mlflow_store, capsys):
    """`ss3d render` / `ss3d pretrain --set data.categories=[04256520]` on a real v2 root."""
    sets = {
        "name": "sofa", "data.root": str(tmp_path / "data"), "output_dir": str(tmp_path / "out"),
        "data.shapenet_root": str(sofa_root), "data.categories": f"[{SOFA}]",
        "data.heldout_categories": "[]", "data.collections": "[]",
        "data.models_per_category": 5, **FRACTIONS,
        "render.image_size": 32, "render.views_per_model": 2, "render.supersample": 1,
        "render.surface_samples": 64, "render.volume_samples": 64,
        "model.encoder_size": 32, "model.latent_dim": 16, "model.hidden": 16,
        "model.layers": 1, "model.n_samples": 8, "optim.batch_size": 2, "optim.device": "cpu",
        "pretrain.steps": 2, "pretrain.views_per_object": 1, "pretrain.rays_per_view": 32,
        "pretrain.val_models": 1, "pretrain.val_views": 1, "pretrain.val_every": 2,
        "pretrain.checkpoint_every": 2,
    }
    args = ["--config", str(REPO / "experiments/smoke.yaml")]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    assert main(["render", *args]) == 0
    assert "sofa: 5 models" in capsys.readouterr().out
    with h5py.File(tmp_path / "data" / "renders.h5", "r") as f:
        n = int(f.attrs["complete_models"])
        assert n == 5 and f.attrs["source"] == str(sofa_root)
        assert set(f["category"].asstr()[:n]) == {"sofa"}
        assert set(f["synset"].asstr()[:n]) == {SOFA}
        assert set(f["split"].asstr()[:n]) == {"train", "val", "test"}
        assert sorted(f["model_id"].asstr()[:n]) == sorted(p.name for p in (sofa_root / SOFA)
                                                           .iterdir())
        assert f["mask"][:n].reshape(n, -1).any(axis=1).all()  # every sofa is visible
    assert not (tmp_path / "data" / "shapenet").exists()  # nothing procedural was generated

    assert main(["pretrain", *args]) == 0
    assert "pre-training done" in capsys.readouterr().out
    ckpt = load_checkpoint(tmp_path / "out" / "sofa" / "pretrain" / "last.pt")
    assert ckpt["step"] == 2
    assert ckpt["config"]["data"]["categories"] == ["sofa"]


def test_yaml_file_with_unquoted_synset_ids(tmp_path):
    """YAML 1.1 reads 04256520 as an octal number and 02958343 as a decimal one: both come back
    as their synsets (and then their canonical names)."""
    path = tmp_path / "x.yaml"
    path.write_text("data:\n  categories: [02691156, 02958343]\n  heldout_categories: []\n"
                    "  collections: [bird]\nselftrain:\n  category: bird\n")
    assert load_config(path).data.categories == ["airplane", "car"]
