"""Evaluation, reports and single-image reconstruction on a tiny tracked experiment."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from ss3d.cli import main
from ss3d.config import load_config
from ss3d.report import MissingEvaluationError, write_report
from ss3d.stages.data import render_stage
from ss3d.stages.distill import distill_stage
from ss3d.stages.evaluate import evaluate_stage
from ss3d.stages.pretrain import pretrain_stage
from ss3d.stages.selftrain import selftrain_stage

from .conftest import REPO, load_benchmark
from .test_pretrain import TINY

EVAL = {**TINY, "name": "tiny-eval", "data.heldout_categories": ["chair"],
        "data.models_per_category": 6, "data.collections": ["bird"],
        "data.images_per_collection": 8, "data.collection_image_size": 48,
        "data.crop_size": 24, "pretrain.steps": 4, "pretrain.val_every": 4,
        "selftrain.hypotheses": 2, "selftrain.camera_steps": 1, "selftrain.epochs": 1,
        "selftrain.phase_a_epochs": 0, "selftrain.camera_rays": 16,
        "selftrain.camera_samples": 6, "selftrain.selection_size": 8,
        "selftrain.rays_per_image": 32, "selftrain.ablation": False, "optim.batch_size": 3,
        "distill.steps": 2, "distill.points_per_image": 128, "distill.agreement_images": 1,
        "evaluate.mesh_resolution": 16, "evaluate.surface_points": 256,
        "evaluate.models_per_category": 2, "evaluate.collection_images": 2,
        "evaluate.figure_size": 32, "evaluate.turntable_frames": 4,
        "render.surface_samples": 256}


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """Every stage of a tiny experiment, tracked in its own SQLite MLflow store."""
    root = tmp_path_factory.mktemp("evaluate")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    overrides = {**EVAL, "data.root": str(root / "data"), "output_dir": str(root / "out")}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        cfg = load_config(None, overrides)
        render_stage(cfg, progress=False)
        pretrain_stage(cfg, progress=False)
        selftrain_stage(cfg, progress=False)
        distill_stage(cfg, progress=False)
        result = evaluate_stage(cfg, progress=False)
        yield root, cfg, overrides, uri, result


@pytest.fixture
def store(experiment, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", experiment[3])
    return experiment


def test_every_stage_is_evaluated_beside_baselines(store):
    root, cfg, _, uri, result = store
    models = {r["model"] for r in result.rows}
    assert {"pretrained", "selftrained-bird", "distilled", "baseline: sphere"} <= models
    sets = {(r["set"], r["category"]) for r in result.rows}
    assert ("collection", "bird") in sets
    assert any(r.get("zero_shot") for r in result.rows), "the held-out category is evaluated"
    for r in result.rows:
        assert 0.0 <= r["fscore@0.1"] <= 1.0 and r["chamfer_l1"] >= 0.0
    # input-view fidelity: every learned model on every item (a render's known camera, a
    # photo's searched one), and the sphere on renders; summarised with intervals
    for r in result.rows:
        if not r["model"].startswith("baseline"):
            assert 0.0 <= r["input_mask_iou"] <= 1.0 and r["input_psnr"] > 0.0, r
        elif r["model"] == "baseline: sphere" and r["set"] == "synthetic":
            assert 0.0 <= r["input_mask_iou"] <= 1.0, r
    assert all("input_mask_iou_lo" in s for s in result.summary
               if not s["model"].startswith("baseline") and s["n"] > 1)
    assert any(r["category"] == "bird" and r["set"] == "collection" for r in result.ratios)
    out = Path(cfg.output_dir) / cfg.name / "evaluate"
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(result.summary, default=float))
    assert list((out / "turntables").glob("*.gif"))
    run = MlflowClient(uri).get_run(result.run_id)
    # per-category comparisons as tables (one page per set), not one metric per cell
    logged = {f.path for f in MlflowClient(uri).list_artifacts(result.run_id, "tables")}
    assert {"tables/collection.json", "tables/synthetic.json",
            "tables/distillation_ratios.json"} <= logged
    assert not [k for k in run.data.metrics if "/" in k], "no per-cell metrics"
    assert run.data.tags["ss3d.stage"] == "evaluate"
    assert len(run.data.tags["ss3d.consumed_runs"].split(",")) == 3


def test_every_stage_logs_its_headline_numbers_under_stable_names(store):
    """``headline.*``: a few numbers per stage, named alike in every run (runs-table columns)."""
    _, cfg, _, uri, result = store
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(cfg.name).experiment_id])
    headline = {r.data.tags["ss3d.stage"]: {k for k in r.data.metrics if k.startswith(
        "headline.")} for r in runs}
    assert headline["render"] == {"headline.models", "headline.images", "headline.skipped"}
    assert {"headline.val_mask_iou", "headline.val_psnr"} <= headline["pretrain"]
    assert {"headline.mask_iou", "headline.pose_acc30", "headline.pose_acc30_vertical",
            "headline.viewpoint_net_acc30"} <= headline["selftrain"]
    assert headline["distill"] == {"headline.agreement"}
    assert {"headline.collection.distilled.fscore_0.05",
            "headline.synthetic.pretrained.fscore_0.05"} <= headline["evaluate"]
    # one collection here, so the headline is bird's value (the mean over several categories:
    # test_the_evaluation_headline_is_the_mean_over_categories)
    bird = next(s for s in result.summary if s["model"] == "distilled"
                and s["set"] == "collection")
    logged = client.get_run(result.run_id).data.metrics
    assert logged["headline.collection.distilled.fscore_0.05"] == pytest.approx(
        bird["fscore@0.05"])


def test_the_evaluation_headline_is_the_mean_over_categories(tmp_path):
    """``headline.<set>.<kind>.fscore_0.05``: per set, the mean over categories (every
    self-trained model pooled as ``selftrained``) of each learned model's F@0.05; non-finite
    cells are left out and baselines have none.

    Mutations caught: the first category's value logged instead of the mean
    (``values[0]``); the mean taken over every set at once (the set filter dropped)."""
    from ss3d.stages.evaluate import EvalResult, _log_evaluation

    cells = [("collection", "bird", "distilled", 0.40), ("collection", "car", "distilled", 0.60),
             ("collection", "bird", "selftrained-bird", 0.50),
             ("collection", "car", "selftrained-car", 0.90),
             ("collection", "car", "baseline: sphere", 0.10),
             ("synthetic", "airplane", "pretrained", 0.20),
             ("synthetic", "chair", "pretrained", 0.30),
             ("synthetic", "lamp", "pretrained", math.nan),
             ("synthetic", "chair", "distilled", 0.80)]
    summary = [{"set": set_, "category": category, "model": model, "fscore@0.05": value}
               for set_, category, model, value in cells]

    class Run:  # records the headline; every other logging call does nothing
        def __init__(self):
            self.headline: dict[str, float] = {}

        def log_headline(self, metrics):
            self.headline.update(metrics)

        def __getattr__(self, name):
            return lambda *args, **kwargs: None

    run = Run()
    _log_evaluation(run, EvalResult(run_id=None, summary=summary), tmp_path)
    assert run.headline == pytest.approx({"collection.distilled.fscore_0.05": 0.50,
                                          "collection.selftrained.fscore_0.05": 0.70,
                                          "synthetic.pretrained.fscore_0.05": 0.25,
                                          "synthetic.distilled.fscore_0.05": 0.80})


def test_report_links_only_to_files_that_exist(store, tmp_path):
    _, cfg, _, _, _ = store
    index = write_report(cfg, out_dir=tmp_path / "report")
    text = index.read_text()
    links = re.findall(r"(?:href|src)='([^']+)'", text)
    assert links, "the report shows figures"
    local = [link for link in links if not link.startswith(("http://127.0.0.1:5000/", "#"))]
    for link in local:
        assert (index.parent / link).is_file(), link
    ui = [link for link in links if link.startswith("http://127.0.0.1:5000/")]  # `make ui`
    # in MLflow's model-training view (ss3d.mlflow_ui)
    assert all(re.search(r"#/experiments/\w+/runs(/[0-9a-f]{32})?\?workflowType=machine_learning$",
                         u) for u in ui)
    assert any(re.search(r"/runs/[0-9a-f]{32}\?", u) for u in ui)  # each run id is a link
    assert "selftrained-bird" in text and "baseline: sphere" in text
    assert "<code>" in text and (index.parent / "README.md").is_file()
    # narrow screens: a viewport, and every table inside a horizontally scrolling box
    assert "name='viewport'" in text
    assert text.count("<table>") == text.count("<div class='scroll'><table>") > 0
    assert text.count("<figure>") == text.count("<figcaption>") >= len(
        [link for link in local if link.endswith((".png", ".gif"))])


def test_report_flags_results_below_their_aims():
    from ss3d.report import _warnings

    data = {"ratios": [{"set": "collection", "category": "bird", "ratio": 0.94},
                       {"set": "collection", "category": "airplane", "ratio": 1.01}]}
    runs = [{"stage": "distill", "metrics": {"agreement_before/bird": 0.8, "agreement/bird": 0.7,
                                             "agreement_before/airplane": 0.5,
                                             "agreement/airplane": 0.6}}]
    notes = _warnings(data, runs)
    assert len(notes) == 2
    assert "collection bird 0.94" in notes[0] and "aim" in notes[0]
    assert "agreement dropped" in notes[1] and "bird 0.800 → 0.700" in notes[1]
    assert "airplane" not in notes[1]


def test_report_without_evaluation_says_what_to_run(tmp_path, mlflow_store):
    cfg = load_config(None, {"name": "never-evaluated", "output_dir": str(tmp_path)})
    with pytest.raises(MissingEvaluationError, match="04_evaluate"):
        write_report(cfg, out_dir=tmp_path / "r")
    assert not (tmp_path / "r").exists()


def _photo(root: Path) -> tuple[Path, Path]:
    image = sorted((root / "data" / "photos" / "bird" / "images").rglob("*.jpg"))[0]
    mask = root / "data" / "photos" / "bird" / "segmentations" / image.parent.name / \
        f"{image.stem}.png"
    return image, mask


@pytest.mark.parametrize("model", ["checkpoint", "ss3d-unified"])
def test_reconstruct_writes_a_mesh_and_a_turntable(store, tmp_path, capsys, model):
    root, cfg, _, _, _ = store
    image, mask = _photo(root)
    spec = str(Path(cfg.output_dir) / cfg.name / "pretrain" / "last.pt") \
        if model == "checkpoint" else model
    obj, gif = tmp_path / "bird.obj", tmp_path / "bird.gif"
    code = main(["reconstruct", str(image), "--mask", str(mask), "--model", spec, "-o",
                 str(obj), "--turntable", str(gif), "--set", "evaluate.mesh_resolution=24",
                 "--set", "evaluate.density_threshold=0.05"])  # a 4-step model is faint
    assert code == 0, capsys.readouterr().err
    # the input-view fit printed beside the mesh is the reconstruction's own (the values:
    # tests/test_input_view.py)
    from ss3d.config import load_config as _load_config
    from ss3d.reconstruct import Reconstructor

    faint = _load_config(None, {"evaluate.mesh_resolution": 24,
                                "evaluate.density_threshold": 0.05})
    fit = Reconstructor(spec, faint).mesh(image, mask)[2]
    assert (f"input-view fit: mask IoU {fit['input_mask_iou']:.2f}, PSNR "
            f"{fit['input_psnr']:.1f} dB") in capsys.readouterr().out
    lines = obj.read_text().splitlines()
    assert any(line.startswith("v ") and len(line.split()) == 7 for line in lines)  # colours
    assert any(line.startswith("f ") for line in lines)
    assert gif.read_bytes()[:6] in (b"GIF87a", b"GIF89a")


def test_reconstruct_from_a_checkpoint_loads_only_what_it_uses(store, tmp_path):
    """One photo from a checkpoint file, in a fresh process as a user runs it: a mesh, and
    none of the slow imports it does not need (MLflow, torchvision, torch._dynamo and SymPy
    through the meta device's normal_ or broadcast_shapes, SciPy's k-d tree)."""
    root, cfg, _, _, _ = store
    image, mask = _photo(root)
    ckpt = Path(cfg.output_dir) / cfg.name / "pretrain" / "last.pt"
    obj = tmp_path / "one.obj"
    heavy = ("mlflow", "torchvision", "torch._dynamo", "sympy", "scipy.spatial")
    code = ("import sys\nfrom ss3d.cli import main\n"
            f"code = main(['reconstruct', {str(image)!r}, '--mask', {str(mask)!r}, '--model', "
            f"{str(ckpt)!r}, '-o', {str(obj)!r}, '--set', 'evaluate.mesh_resolution=16', "
            "'--set', 'evaluate.density_threshold=0.05'])\n"
            f"print(sorted(m for m in {heavy!r} if m in sys.modules))\nsys.exit(code)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout
    assert any(line.startswith("f ") for line in obj.read_text().splitlines())


def test_load_network_without_initialising_equals_the_default(store):
    """``skip_init`` (the meta device, then the checkpoint's tensors) gives the same network."""
    from ss3d.model import load_network

    _, cfg, _, _, _ = store
    ckpt = Path(cfg.output_dir) / cfg.name / "pretrain" / "last.pt"
    plain, fast = load_network(ckpt)[0], load_network(ckpt, skip_init=True)[0]
    a, b = plain.state_dict(), fast.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not any(t.is_meta for t in [*fast.parameters(), *fast.buffers()])
    images = torch.rand(2, 3, 64, 64)
    assert torch.equal(plain.encode(images), fast.encode(images))


def test_reconstruct_many_inputs_with_one_loaded_model(store, tmp_path, capsys):
    """Several images (or a folder of them) with their masks: one model load, one mesh per
    image named after it; a bad input fails the call before anything is written."""
    import shutil

    root, cfg, _, _, _ = store
    photos = root / "data" / "photos" / "bird"
    images = sorted((photos / "images").rglob("*.jpg"))[:3]
    ckpt = str(Path(cfg.output_dir) / cfg.name / "pretrain" / "last.pt")
    faint = ["--set", "evaluate.mesh_resolution=16", "--set", "evaluate.density_threshold=0.05"]
    image_dir, mask_dir = tmp_path / "images", tmp_path / "masks"
    image_dir.mkdir(), mask_dir.mkdir()
    for image in images:
        shutil.copy(image, image_dir / image.name)
        shutil.copy(photos / "segmentations" / image.parent.name / f"{image.stem}.png",
                    mask_dir / f"{image.stem}.png")
    out = tmp_path / "meshes"
    code = main(["reconstruct", str(image_dir), "--mask", str(mask_dir), "--model", ckpt,
                 "-o", str(out), *faint])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{p.stem}.obj" for p in images)
    assert "3 mesh(es)" in capsys.readouterr().out
    # the same as a list, with GIFs beside the meshes
    listed = tmp_path / "listed"
    masks = [str(mask_dir / f"{p.stem}.png") for p in images[:2]]
    code = main(["reconstruct", *[str(image_dir / p.name) for p in images[:2]], "--mask",
                 *masks, "--model", ckpt, "-o", str(listed), "--turntable", "yes", *faint])
    assert code == 0 and len(list(listed.glob("*.gif"))) == 2
    # one unreadable input among good ones: a clear error and nothing written
    (image_dir / "zz_broken.jpg").write_text("not a picture")
    (mask_dir / "zz_broken.png").write_bytes((mask_dir / f"{images[0].stem}.png").read_bytes())
    fresh = tmp_path / "fresh"
    code = main(["reconstruct", str(image_dir), "--mask", str(mask_dir), "--model", ckpt,
                 "-o", str(fresh), *faint])
    err = capsys.readouterr().err
    assert code == 2 and "zz_broken.jpg" in err and "nothing written" in err
    assert not fresh.exists()
    # counts that do not match
    code = main(["reconstruct", str(images[0]), str(images[1]), "--mask", masks[0],
                 "--model", ckpt, "-o", str(fresh)])
    assert code == 2 and "one mask per image" in capsys.readouterr().err


def test_reconstruct_bad_inputs_fail_clearly_and_write_nothing(store, tmp_path, capsys):
    root, cfg, _, _, _ = store
    image, mask = _photo(root)
    ckpt = str(Path(cfg.output_dir) / cfg.name / "pretrain" / "last.pt")
    not_image = tmp_path / "notes.jpg"
    not_image.write_text("not a picture")
    import cv2
    import numpy as np

    empty = tmp_path / "empty.png"
    cv2.imwrite(str(empty), np.zeros(cv2.imread(str(mask)).shape[:2], np.uint8))
    speck = tmp_path / "speck.png"
    one_pixel = np.zeros(cv2.imread(str(mask)).shape[:2], np.uint8)
    one_pixel[5, 5] = 255
    cv2.imwrite(str(speck), one_pixel)
    folder = tmp_path / "meshes.obj"
    folder.mkdir()
    cases = [
        ([str(tmp_path / "missing.jpg"), "--mask", str(mask), "--model", ckpt], "not found"),
        ([str(not_image), "--mask", str(mask), "--model", ckpt], "not a readable image"),
        ([str(image), "--mask", str(empty), "--model", ckpt], "mask is empty"),
        ([str(image), "--mask", str(mask), "--model", str(REPO / "README.md")],
         "not a readable checkpoint"),
        ([str(image), "--mask", str(mask), "--model", "no-such-thing"], "not an existing"),
        ([str(image), "--mask", str(speck), "--model", ckpt], "covers 1 pixel(s)"),
    ]
    out = tmp_path / "out.obj"
    for args, message in cases:
        code = main(["reconstruct", *args, "-o", str(out), "--turntable",
                     str(tmp_path / "t.gif")])
        err = capsys.readouterr().err
        assert code == 2 and message in err, (args, err)
        assert not out.exists() and not (tmp_path / "t.gif").exists()
    # a folder as the output fails before the model is even loaded
    code = main(["reconstruct", str(image), "--mask", str(mask), "--model", "no-such-thing",
                 "-o", str(folder)])
    assert code == 2 and "is a folder" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_notebook_through_papermill_writes_report(store, tmp_path):
    root, _, overrides, uri, _ = store
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    out = tmp_path / "out.ipynb"
    cmd = [sys.executable, "-m", "papermill", str(REPO / "notebooks/04_evaluate.ipynb"),
           str(out), "-p", "progress", "False", "-p", "report", "True",
           "-y", json.dumps({"overrides": overrides}), "--cwd", str(REPO)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text()
    assert "image/png" in text and "F@0.1" in text
    report = REPO / "reports" / overrides["name"]
    try:
        assert (report / "index.html").is_file()
    finally:
        import shutil

        shutil.rmtree(report, ignore_errors=True)


def test_oracle_and_medoid_baselines_beside_every_synthetic_item(store):
    _, cfg, _, _, result = store
    by_item: dict = {}
    for r in result.rows:
        if r["set"] == "synthetic" and not r["zero_shot"]:
            by_item.setdefault(r["item"], {})[r["model"]] = r
    assert by_item
    for models in by_item.values():
        oracle, medoid = models["baseline: oracle NN"], models["baseline: category medoid"]
        # the oracle is the best training shape for this item, so never below the medoid
        assert oracle["fscore@0.05"] >= medoid["fscore@0.05"] - 1e-9
        assert oracle["oracle_model"]
    # every summary cell carries its items' bootstrap interval (seeded by the config);
    # paired differences against the pre-trained model
    from ss3d.eval.stats import bootstrap_ci

    for cell in result.summary:
        items = [r["fscore@0.05"] for r in result.rows if "fscore@0.05" in r and (
            r["set"], r["category"], r["model"]) == (cell["set"], cell["category"], cell["model"])]
        ci = bootstrap_ci(items, seed=cfg.seed)
        assert cell["fscore@0.05"] == pytest.approx(ci.estimate)
        if cell["n"] >= 2:
            assert (cell["fscore@0.05_lo"], cell["fscore@0.05_hi"]) == (ci.low, ci.high)
        else:  # one item gives no interval, never a fake zero-width one
            assert math.isnan(cell["fscore@0.05_lo"])
    assert any(c["n"] >= 2 for c in result.summary)
    assert {d["model"] for d in result.differences} >= {"distilled"}
    assert any(v.startswith("synthetic") and "distilled" in v for v in result.verdicts)
    assert "F@0.02" in result.tables_markdown and "oracle NN" in result.tables_markdown


def test_oracle_finds_a_test_shape_that_is_also_a_training_shape(store):
    """The oracle's answer is exact: a training shape given as the test item scores F = 1."""
    import torch

    from ss3d.eval.baselines import build_baselines, oracle_index, shape_metrics
    from ss3d.eval.items import EvalItem
    from ss3d.stages.data import data_paths

    _, cfg, _, _, _ = store
    baselines = build_baselines(cfg, data_paths(cfg).renders)
    category = cfg.data.categories[0]
    shapes = baselines.train[category]
    assert shapes.surfaces.shape[0] >= 2
    k = shapes.surfaces.shape[0] - 1
    item = EvalItem("synthetic", category, shapes.ids[k], torch.zeros(3, 8, 8),
                    shapes.surfaces[k], shapes.volume_points[k], shapes.volume_inside[k], None)
    assert oracle_index(shapes, item) == k
    m = shape_metrics(shapes, k, item, (0.02, 0.05, 0.1))
    assert m["fscore@0.02"] == 1.0 and m["vol_iou"] == 1.0 and m["chamfer_l1"] == 0.0


def _rows(model: str, values: list[float], category: str = "car") -> list[dict]:
    return [{"set": "synthetic", "category": category, "model": model, "item": f"m{i}",
             "fscore@0.05": v, "fscore@0.1": v, "chamfer_l1": 1 - v}
            for i, v in enumerate(values)]


def test_paired_differences_and_verdicts_known_answers():
    """Per-item difficulty shared by two models: their own intervals overlap, the paired one
    does not; verdicts say beats / below / not separable from exactly as the intervals do."""
    import numpy as np

    from ss3d.eval.summary import paired_differences, summarise, verdicts

    rng = np.random.default_rng(0)
    hard = rng.uniform(0.2, 0.8, 40)
    rows = (_rows("pretrained", list(hard)) + _rows("selftrained", list(hard + 0.02))
            + _rows("baseline: sphere", [0.05] * 40)
            + _rows("baseline: oracle NN", list(np.clip(hard + 0.5, 0, 1))))
    summary = summarise(rows)
    diffs = paired_differences(rows)
    d = next(x for x in diffs if x["model"] == "selftrained")
    assert d["n"] == 40 and abs(d["fscore@0.05"] - 0.02) < 1e-9
    assert d["fscore@0.05_lo"] > 0  # pairing resolves a 0.02 gain
    own = {s["model"]: s for s in summary}
    assert own["selftrained"]["fscore@0.05_lo"] < own["pretrained"]["fscore@0.05_hi"]
    lines = verdicts(summary, diffs)
    line = next(v for v in lines if ": selftrained " in v)
    assert "beats sphere" in line and "below oracle NN" in line
    assert "above the pre-trained model" in line
    # a model equal to the pre-trained one is "not separable" from it
    same = paired_differences(_rows("pretrained", [0.5, 0.6, 0.7])
                              + _rows("distilled", [0.5, 0.6, 0.7]))
    assert same[0]["fscore@0.05"] == 0.0
    assert "not separable from the pre-trained" in verdicts(
        summarise(_rows("pretrained", [0.5, 0.6, 0.7]) + _rows("distilled", [0.5, 0.6, 0.7])),
        same)[-1]


def test_frame_checks_known_answers():
    """Aligned rows read two ways, each minus the pre-trained model on the same items; models
    without the prior-frame reading, and the pre-trained model itself, get no entry."""
    from ss3d.eval.summary import frame_checks

    pre = [{"set": "collection", "category": "bird", "model": "pretrained", "item": f"i{i}",
            "fscore@0.05": 0.4} for i in range(5)]
    selftrained = [{"set": "collection", "category": "bird", "model": "selftrained-bird",
                    "item": f"i{i}", "fscore@0.05": 0.3, "fscore@0.05_prior_frame": 0.5,
                    "frame_turn_deg": 90.0} for i in range(5)]
    plain = [{"set": "synthetic", "category": "car", "model": "distilled", "item": "c0",
              "fscore@0.05": 0.6}]
    (entry,) = frame_checks(pre + selftrained + plain)
    assert (entry["model"], entry["n"], entry["n_paired"]) == ("selftrained-bird", 5, 5)
    assert entry["turn_deg"] == 90.0
    assert entry["aligned"] == pytest.approx(0.3) and entry["prior_frame"] == pytest.approx(0.5)
    assert entry["aligned_diff"] == pytest.approx(-0.1)
    assert entry["prior_frame_diff"] == pytest.approx(0.1)
    assert entry["scored_in"] == "aligned"
    # rows scored in the prior's frame (the default) carry the aligned reading instead: the
    # same two readings come out, and the entry says which one the other tables use
    swapped = [{**{k: v for k, v in r.items() if k != "fscore@0.05_prior_frame"},
                "fscore@0.05": 0.5, "fscore@0.05_aligned": 0.3} for r in selftrained]
    (other,) = frame_checks(pre + swapped + plain)
    assert other["scored_in"] == "prior_frame"
    for key in ("aligned", "prior_frame", "aligned_diff", "prior_frame_diff", "n_paired"):
        assert other[key] == pytest.approx(entry[key])


def test_baselines_are_beaten_by_paired_intervals():
    """A model a little above the medoid on every item beats it by the paired interval while
    the two unpaired intervals overlap; one level with it on average is not separable; one
    below it on every item is below it."""
    import numpy as np

    from ss3d.eval.summary import baseline_differences, summarise, verdicts

    rng = np.random.default_rng(1)
    hard = rng.uniform(0.2, 0.8, 30)
    noise = rng.normal(0, 0.05, 30)
    rows = (_rows("baseline: category medoid", list(hard))
            + _rows("pretrained", list(hard + 0.03))
            + _rows("selftrained", list(hard + noise - noise.mean()))
            + _rows("distilled", list(hard - 0.03)))
    summary = summarise(rows)
    own = {s["model"]: s for s in summary}
    assert own["pretrained"]["fscore@0.05_lo"] < own["baseline: category medoid"][
        "fscore@0.05_hi"]  # unpaired: overlapping
    against = baseline_differences(rows)
    assert {d["reference"] for d in against} == {"baseline: category medoid"}
    assert {d["model"] for d in against} == {"pretrained", "selftrained", "distilled"}
    lines = {v.split(": ")[1].split(" ")[0]: v for v in verdicts(summary, [],
                                                                 against_baselines=against)}
    assert "beats category medoid (paired Δ 0.030" in lines["pretrained"]
    assert "not separable from category medoid" in lines["selftrained"]
    assert "below category medoid (paired Δ -0.030" in lines["distilled"]
    # without the paired entries the same data is judged by the overlapping intervals
    assert "beats no baseline" in verdicts(summary, [])[0]


def test_student_is_compared_with_the_teacher_it_learned_from():
    from pathlib import Path

    from ss3d.stages.evaluate import EvalModel, ratio_rows

    summary = [{"set": "synthetic", "category": "airplane", "model": m, "fscore@0.1": f}
               for m, f in (("pretrained", 0.9), ("selftrained-airplane", 0.8),
                            ("distilled", 0.76))]
    summary += [{"set": "synthetic", "category": "car", "model": m, "fscore@0.1": f}
                for m, f in (("pretrained", 0.9), ("distilled", 0.9))]
    summary += [{"set": "collection", "category": "airplane", "model": m, "fscore@0.1": f}
                for m, f in (("pretrained", 0.7), ("selftrained-airplane", 0.8),
                             ("distilled", 0.8))]
    plain = EvalModel("distilled", "distill", Path("x.pt"))
    specialist = EvalModel("distilled", "distill", Path("x.pt"),
                           specialist_renders=frozenset({"airplane"}))
    for model, synthetic_teacher in ((plain, "pretrained"),
                                     (specialist, "selftrained-airplane")):
        rows = {(r["set"], r["category"]): r for r in ratio_rows(summary, [model])}
        assert rows[("synthetic", "airplane")]["teacher"] == synthetic_teacher
        assert rows[("synthetic", "car")]["teacher"] == "pretrained"  # no specialist
        assert rows[("collection", "airplane")]["teacher"] == "selftrained-airplane"
    rows = {(r["set"], r["category"]): r for r in ratio_rows(summary, [specialist])}
    assert abs(rows[("synthetic", "airplane")]["ratio"] - 0.76 / 0.8) < 1e-9


def test_pose_table_carries_wilson_intervals():
    from ss3d.eval.summary import half_widths, pose_interval, tables

    pose = {"category": "bird", "run": "selftrained-bird", "hypotheses": 8, "pose_n": 10.0,
            "pose_acc15": 0.5, "pose_acc30": 0.8, "pose_best_of_h_acc30": 1.0,
            "pose_median_deg": 12.0, "initial_pose_acc30": 0.4, "mask_iou": 0.7,
            "viewpoint_net_acc30": 0.25}
    ci = pose_interval(pose, "pose_acc30")
    assert abs(ci.low - 0.4902) < 1e-3 and abs(ci.high - 0.9433) < 1e-3
    table = tables([], [pose], [])[0]
    assert "0.80 [0.49, 0.94]" in table.rows[0]
    assert table.rows[0][table.header.index("pose prior's acc@30")] == "0.25"
    assert abs(half_widths([], [pose])["pose acc@30"] - (0.9433 - 0.4902) / 2) < 1e-3



@pytest.mark.parametrize(("label", "kind", "category", "name"), [
    ("pretrained", "pretrained", None, None),
    ("distilled", "distilled", None, None),
    ("selftrained", "selftrained", None, None),
    ("selftrained-bird", "selftrained", "bird", None),
    ("selftrained-sports-car", "selftrained", "sports-car", None),
    ("baseline: sphere", "baseline", None, "sphere"),
    ("baseline: category medoid", "baseline", None, "category medoid"),
    ("baseline: oracle NN", "baseline", None, "oracle NN"),
])
def test_model_key_round_trips_the_row_labels(label, kind, category, name):
    """The labels in evaluation.json, tables.md, the report and the MLflow metric names are
    today's strings: a key parsed from one gives it back, and is the key built directly."""
    from ss3d.eval.keys import ModelKey

    key = ModelKey.parse(label)
    assert (key.kind, key.category, key.name) == (kind, category, name)
    assert key.label == str(key) == label
    assert key == ModelKey(kind, category, name) and hash(key) == hash(ModelKey.parse(label))
    assert key.is_baseline == (kind == "baseline")


def test_model_key_labels_and_refusals():
    from dataclasses import FrozenInstanceError

    from ss3d.eval.baselines import MEDOID, ORACLE, SPHERE
    from ss3d.eval.keys import ModelKey
    from ss3d.eval.summary import PRETRAINED, is_baseline

    assert ModelKey.selftrained("bird").label == "selftrained-bird"
    assert (SPHERE, MEDOID, ORACLE, PRETRAINED) == (
        "baseline: sphere", "baseline: category medoid", "baseline: oracle NN", "pretrained")
    assert is_baseline(SPHERE) and not is_baseline("selftrained-bird")
    for label in ("", "baseline", "baseline: ", "selftrained-", "Pretrained", "student",
                  "teacher-bird"):
        with pytest.raises(ValueError):
            ModelKey.parse(label)
    for kind, category, name in (("baseline", None, None), ("pretrained", "bird", None),
                                 ("selftrained", None, "sphere"), ("teacher", None, None),
                                 ("selftrained", "", None)):
        with pytest.raises(ValueError):
            ModelKey(kind, category, name)
    with pytest.raises(FrozenInstanceError):
        ModelKey.parse("distilled").kind = "pretrained"


# The report in a real browser: headless Chromium at 500 px wide (`.ci/run` installs it).
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Runs once the page (and every image) has loaded; the result lands in the dumped DOM.
# Every folded section opened (their tables must fit too); lazy images load only when opened.
CHECK = """<script>window.addEventListener('load', () => {
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  const width = window.innerWidth;
  const images = [...document.images].filter(i => i.loading !== 'lazy').map(
    i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0}));
  const tables = [...document.querySelectorAll('table')].map(t => {
    const box = t.parentElement.getBoundingClientRect();
    return {right: box.right, scrolls: t.parentElement.scrollWidth > box.width};
  });
  const out = document.createElement('pre');
  out.id = 'ss3d-check';
  out.textContent = JSON.stringify({width, page: document.documentElement.scrollWidth,
                                    images, tables});
  document.body.appendChild(out);
});</script>"""


@pytest.mark.slow
def test_report_in_headless_chromium_at_500_px(store, tmp_path):
    assert CHROMIUM, "headless Chromium is needed (.ci/run installs Debian's chromium)"
    _, cfg, _, _, _ = store
    index = write_report(cfg, out_dir=tmp_path / "report")
    page = index.with_name("checked.html")
    page.write_text(index.read_text().replace("</body>", CHECK + "</body>"))
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=500,900",
         "--virtual-time-budget=10000", "--allow-file-access-from-files", "--dump-dom",
         page.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r"<pre id=\"ss3d-check\">(.*?)</pre>", proc.stdout, re.S)
    assert found, proc.stderr[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert result["width"] <= 500
    assert result["images"] and all(i["ok"] for i in result["images"]), result["images"]
    assert result["page"] <= result["width"], "the page is wider than the window"
    assert result["tables"], "the report has tables"
    assert all(t["right"] <= result["width"] + 0.5 for t in result["tables"]), result["tables"]
    assert any(t["scrolls"] for t in result["tables"]), "at 500 px some table must scroll"


def test_items_shared_with_a_worker_process_give_the_serial_rows(store, tmp_path, monkeypatch):
    """evaluate.workers = 2 (the default): a spawned process takes items beside this one; the
    rows, and so every number of the evaluation, equal one process's."""
    import ss3d.stages.evaluate_items as evaluate_items

    _, _, overrides, _, _ = store
    submitted: list[int] = []

    class Counting(evaluate_items.ProcessPoolExecutor):
        def submit(self, fn, position, *args, **kwargs):
            submitted.append(position)
            return super().submit(fn, position, *args, **kwargs)

    monkeypatch.setattr(evaluate_items, "ProcessPoolExecutor", Counting)
    results = {}
    for workers in (1, 2):
        cfg = load_config(None, {**overrides, "evaluate.workers": workers})
        results[workers] = evaluate_stage(cfg, progress=False, track=False,
                                          out_dir=tmp_path / str(workers))
    assert submitted, "no item went to a worker process"
    items = {(r["set"], r["category"], r["item"]) for r in results[1].rows}
    assert len(submitted) < len(items)  # this process took its share
    assert results[2].rows == results[1].rows
    for name in ("evaluation.json", "tables.md"):
        assert (tmp_path / "2" / name).read_text() == (tmp_path / "1" / name).read_text()
    # the figures and turntables, rendered in two processes too, have the same pixels
    import numpy as np
    from PIL import Image, ImageSequence

    def pixels(path: Path) -> list[np.ndarray]:
        with Image.open(path) as image:
            return [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(image)]

    def pictures(root: Path) -> list[Path]:
        return sorted(p.relative_to(root) for p in root.rglob("*.*")
                      if p.suffix in (".png", ".gif"))

    serial = pictures(tmp_path / "1")
    assert len([p for p in serial if p.suffix == ".gif"]) >= 2
    assert serial == pictures(tmp_path / "2")
    for relative in serial:
        a, b = pixels(tmp_path / "1" / relative), pixels(tmp_path / "2" / relative)
        assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b)), relative


def test_transfer_pairs_every_look_with_the_same_items(store, tmp_path):
    """ss3d transfer: the pre-trained and distilled models on every look of the same test
    items; each difference is the mean of the per-item differences; tracked in MLflow."""
    from ss3d.eval.stats import paired_bootstrap_diff
    from ss3d.stages.transfer import LOOKS, transfer_stage

    _, cfg, _, uri, evaluation = store
    result = transfer_stage(cfg, progress=False, out_dir=tmp_path)
    models = {r["model"] for r in result.rows}
    assert models == {"pretrained", "distilled"}
    items = {(r["category"], r["key"]) for r in result.rows}
    assert len(items) >= 3 and any(r["zero_shot"] for r in result.rows)  # chair
    assert len(result.rows) == len(models) * len(LOOKS) * len(items)
    for d in (d for d in result.differences if d["group"] == "all"):
        look = d["look"].split(" ")[0]
        value = {(r["category"], r["key"]): r["fscore@0.05"] for r in result.rows
                 if r["model"] == d["model"] and r["look"] == look}
        base = {(r["category"], r["key"]): r["fscore@0.05"] for r in result.rows
                if r["model"] == d["model"] and r["look"] == "plain"}
        assert d["fscore@0.05"] == pytest.approx(
            sum(value[k] - base[k] for k in items) / len(items))
        # its interval: the paired bootstrap of the items in row order, seeded by the config
        order = [(r["category"], r["key"]) for r in result.rows
                 if r["model"] == d["model"] and r["look"] == look]
        ci = paired_bootstrap_diff([value[k] for k in order], [base[k] for k in order],
                                   seed=cfg.seed)
        assert d["fscore@0.05_ci"] == [ci.low, ci.high]
    # on the plain look, the evaluation's own inputs: its numbers
    evaluated = {(r["model"], r["category"], r["item"]): r["fscore@0.05"]
                 for r in evaluation.rows if r["set"] == "synthetic" and "model" in r}
    plain = [r for r in result.rows if r["look"] == "plain"]
    assert all(r["fscore@0.05"] == evaluated[(r["model"], r["category"], r["key"])]
               for r in plain)
    # each model at the level the evaluation read it at (chosen again: the same choice)
    levels = json.loads((tmp_path / "transfer.json").read_text())["surface_levels"]
    assert levels == {m["label"]: m["surface_level"] for m in evaluation.models
                      if m["stage"] in ("pretrain", "distill")}
    assert "heldout − plain" in (tmp_path / "transfer.md").read_text()
    for name in ("transfer.json", "transfer_inputs.png", "transfer_bars.png"):
        assert (tmp_path / name).is_file()
    run = MlflowClient(uri).get_run(result.run_id)
    assert "headline.pretrained.heldout_minus_plain.fscore_0.05" in run.data.metrics
    assert run.data.tags["ss3d.stage"] == "transfer"


def test_mesh_level_benchmark_scores_every_setting(store):
    """``benchmarks/mesh_level.py`` on the tiny experiment's pre-trained model: one row per
    (resolution, coarse factor, level), scores in [0, 1], the zero-shot chair scored apart."""
    _, cfg, _, _, _ = store
    module = load_benchmark("mesh_level")
    settings = [(16, 1, 0.6), (16, 2, 0.6), (16, 2, 0.9)]
    rows = module.score_settings(cfg, Path(cfg.output_dir) / cfg.name / "pretrain" / "last.pt",
                                 "test", settings, progress=False)
    assert [(r["resolution"], r["coarse"], r["level"]) for r in rows] == settings
    for r in rows:
        assert r["items"] > 0 and r["seconds_per_mesh"] > 0
        assert r["seen_categories"] == len(cfg.data.categories)
        assert 0 <= r["above_medoid"] <= r["seen_categories"]
        for key in ("seen_f02", "seen_f05", "zero_shot_f05"):
            assert 0.0 <= r[key] <= 1.0, (key, r)
        assert math.isnan(r["airplane_f02"])  # the tiny experiment has no airplanes
        assert r["seen_f02"] <= r["seen_f05"]  # a looser threshold never scores lower
        per_item = r["per_item"]  # the pooled means are the per-item rows' means
        assert len(per_item) == r["items"]
        seen = [p for p in per_item if not p["zero_shot"]]
        assert math.isclose(sum(p["f05"] for p in seen) / len(seen), r["seen_f05"])
        assert all(p["f02"] <= p["f05"] for p in per_item)


def test_surface_levels_are_chosen_per_model_on_the_val_split(store, tmp_path):
    """``evaluate.surface_levels``: the pre-trained and distilled models each read at the
    candidate with the best val F@0.05, the self-trained one at its prior's; the rows are those
    of a fixed ``peak_fraction`` at that level."""
    _, _, overrides, _, _ = store
    candidates = [0.3, 0.6, 0.9]  # not the default 0.7: the level must really be applied
    cfg = load_config(None, {**overrides, "evaluate.surface_levels": candidates,
                             "evaluate.workers": 1})
    result = evaluate_stage(cfg, progress=False, track=False, out_dir=tmp_path / "chosen")
    by_label = {m["label"]: m for m in result.models}
    for label in ("pretrained", "distilled"):
        choice = by_label[label]["surface_level_choice"]
        assert choice["items"] > 0 and list(choice["scores"]) == ["0.3", "0.6", "0.9"]
        best = max(candidates, key=lambda c: choice["scores"][f"{c:g}"])
        assert by_label[label]["surface_level"] == best
    prior_level = by_label["pretrained"]["surface_level"]
    selftrained = [m for m in result.models if m["stage"] == "selftrain"]
    assert selftrained and all(m["surface_level"] == prior_level
                               and "surface_level_choice" not in m for m in selftrained)
    assert "## Surface levels" in (tmp_path / "chosen" / "tables.md").read_text()
    written = json.loads((tmp_path / "chosen" / "evaluation.json").read_text())["models"]
    assert [m["surface_level"] for m in written] == [m["surface_level"] for m in result.models]

    fixed = evaluate_stage(load_config(None, {**overrides, "evaluate.peak_fraction": prior_level,
                                              "evaluate.surface_levels": [],
                                              "evaluate.workers": 1}),
                           progress=False, track=False, out_dir=tmp_path / "fixed")
    labels = {"pretrained"} | {m["label"] for m in selftrained}

    def rows(r):
        return [row for row in r.rows if row["model"] in labels]

    assert rows(result) and rows(result) == rows(fixed)
