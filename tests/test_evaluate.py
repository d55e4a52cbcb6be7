"""Evaluation, reports and single-image reconstruction on a tiny tracked experiment."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from ss3d.cli import main
from ss3d.config import load_config
from ss3d.report import MissingEvaluationError, write_report
from ss3d.stages.data import render_stage
from ss3d.stages.distill import distill_stage
from ss3d.stages.evaluate import evaluate_stage
from ss3d.stages.pretrain import pretrain_stage
from ss3d.stages.selftrain import selftrain_stage

from .conftest import REPO
from .test_pretrain import TINY

EVAL = {**TINY, "name": "tiny-eval", "data.heldout_categories": ["chair"],
        "data.models_per_category": 6, "data.collections": ["bird"],
        "data.images_per_collection": 8, "data.collection_image_size": 48,
        "data.crop_size": 24, "pretrain.steps": 4, "pretrain.val_every": 4,
        "selftrain.hypotheses": 2, "selftrain.n_cam_iters": 1, "selftrain.epochs": 1,
        "selftrain.stage_one_epochs": 0, "selftrain.camera_rays": 16,
        "selftrain.camera_samples": 6, "selftrain.selection_resolution": 8,
        "selftrain.rays_per_image": 32, "selftrain.ablation": False, "optim.batch_size": 3,
        "distill.steps": 2, "distill.points_per_image": 128, "distill.agreement_images": 1,
        "evaluate.grid_resolution": 16, "evaluate.surface_points": 256,
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
    assert any(r["category"] == "bird" and r["set"] == "collection" for r in result.ratios)
    out = Path(cfg.output_dir) / cfg.name / "evaluate"
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(result.summary, default=float))
    assert list((out / "turntables").glob("*.gif"))
    run = MlflowClient(uri).get_run(result.run_id)
    assert "collection.bird.distilled.fscore_0.1" in run.data.metrics
    assert run.data.tags["ss3d.stage"] == "evaluate"
    assert len(run.data.tags["ss3d.consumed_runs"].split(",")) == 3


def test_report_links_only_to_files_that_exist(store, tmp_path):
    _, cfg, _, _, _ = store
    index = write_report(cfg, out_dir=tmp_path / "report")
    text = index.read_text()
    links = re.findall(r"(?:href|src)='([^']+)'", text)
    assert links, "the report shows figures"
    for link in links:
        assert (index.parent / link).is_file(), link
    assert "selftrained-bird" in text and "baseline: sphere" in text
    assert "<code>" in text and (index.parent / "README.md").is_file()


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
                 str(obj), "--turntable", str(gif), "--set", "evaluate.grid_resolution=24",
                 "--set", "evaluate.density_threshold=0.05"])  # a 4-step model is faint
    assert code == 0, capsys.readouterr().err
    lines = obj.read_text().splitlines()
    assert any(line.startswith("v ") and len(line.split()) == 7 for line in lines)  # colours
    assert any(line.startswith("f ") for line in lines)
    assert gif.read_bytes()[:6] in (b"GIF87a", b"GIF89a")


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
    cases = [
        ([str(tmp_path / "missing.jpg"), "--mask", str(mask), "--model", ckpt], "not found"),
        ([str(not_image), "--mask", str(mask), "--model", ckpt], "not a readable image"),
        ([str(image), "--mask", str(empty), "--model", ckpt], "mask is empty"),
        ([str(image), "--mask", str(mask), "--model", str(REPO / "README.md")],
         "not a readable checkpoint"),
        ([str(image), "--mask", str(mask), "--model", "no-such-thing"], "not an existing"),
    ]
    out = tmp_path / "out.obj"
    for args, message in cases:
        code = main(["reconstruct", *args, "-o", str(out), "--turntable",
                     str(tmp_path / "t.gif")])
        err = capsys.readouterr().err
        assert code == 2 and message in err, (args, err)
        assert not out.exists() and not (tmp_path / "t.gif").exists()


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
