"""Pre-training: a short run lowers the loss, checkpoints, and resumes in the same MLflow run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from mlflow.tracking import MlflowClient

from ss3d import tracking
from ss3d.config import from_dict, load_config
from ss3d.engine import load_checkpoint
from ss3d.model import ReconstructionNet
from ss3d.stages.data import render_stage
from ss3d.stages.pretrain import pretrain_stage

from .conftest import REPO, notebook_outputs

TINY = {
    "data.categories": ["car", "laptop"], "data.heldout_categories": [],
    "data.models_per_category": 4, "data.val_fraction": 0.25, "data.test_fraction": 0.25,
    "data.collections": [], "render.image_size": 24, "render.views_per_model": 3,
    "render.surface_samples": 64, "render.volume_samples": 256,
    "model.encoder_size": 32, "model.latent_dim": 32, "model.hidden": 32, "model.layers": 2,
    "model.n_samples": 12, "optim.batch_size": 4, "pretrain.lr": 1e-3,
    "pretrain.views_per_object": 2, "pretrain.rays_per_view": 64, "pretrain.val_models": 2,
    "pretrain.val_views": 1, "pretrain.val_every": 10, "pretrain.checkpoint_every": 10,
}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain")
    cfg = load_config(None, {**TINY, "data.root": str(root / "data")})
    render_stage(cfg, with_collections=False, progress=False, track=False)
    return root


def _cfg(root, **extra):
    return load_config(None, {**TINY, "name": "unit", "data.root": str(root / "data"),
                              "output_dir": str(root / "out"), **extra})


def test_missing_renders_says_what_to_run(tmp_path, mlflow_store):
    cfg = load_config(None, {"data.root": str(tmp_path / "none")})
    with pytest.raises(FileNotFoundError, match="00_render"):
        pretrain_stage(cfg, progress=False)


def test_short_pretraining_lowers_loss_and_resumes(tiny_data, mlflow_store):
    cfg = _cfg(tiny_data, **{"pretrain.steps": 30})
    first = pretrain_stage(cfg, progress=False)
    losses = [h["loss"] for h in first.history]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    assert set(first.baselines) >= {"untrained_mask_iou", "sphere_mask_iou"}
    assert [v["step"] for v in first.validation] == [0, 10, 20, 30]
    ckpt = load_checkpoint(first.checkpoint)
    assert ckpt["step"] == 30 and ckpt["mlflow_run_id"] == first.run_id
    # the viewpoint network trains beside the reconstruction, on its own optimiser
    viewpoint = [h["loss_viewpoint"] for h in first.history]
    assert sum(viewpoint[-5:]) < sum(viewpoint[:5])
    assert all(0.0 <= v["viewpoint_acc30"] <= 1.0 for v in first.validation)
    saved_moments = ckpt["extra"]["viewpoint_training"]["optimizer"]["state"]
    net = ReconstructionNet(from_dict(ckpt["config"]).model)
    assert len(saved_moments) == len(list(net.viewpoint.parameters()))  # resumable
    # at its own learning rate, not the reconstruction's
    groups = ckpt["extra"]["viewpoint_training"]["optimizer"]["param_groups"]
    assert cfg.pretrain.viewpoint_lr != cfg.pretrain.lr
    assert groups[0]["initial_lr"] == pytest.approx(cfg.pretrain.viewpoint_lr)

    more = _cfg(tiny_data, **{"pretrain.steps": 40})
    second = pretrain_stage(more, resume=True, progress=False)
    assert second.run_id == first.run_id
    assert len(second.history) == 40 and second.history[:30] == first.history
    assert load_checkpoint(second.checkpoint)["step"] == 40
    client = MlflowClient(mlflow_store)
    steps = [m.step for m in client.get_metric_history(first.run_id, "loss")]
    assert steps == list(range(1, 41))
    run = client.get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.data.params["pretrain.steps"] == "30"
    artifacts = {a.path for a in client.list_artifacts(first.run_id, "checkpoints")}
    assert artifacts == {"checkpoints/last.pt"}
    figures = {a.path for a in client.list_artifacts(first.run_id, "figures")}
    assert "figures/curves.png" in figures
    assert tracking.latest_run("unit", "pretrain").info.run_id == first.run_id


@pytest.mark.slow
def test_pretrain_notebook_through_papermill(tiny_data, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    out = tmp_path / "out.ipynb"
    overrides = {**TINY, "data.root": str(tiny_data / "data"), "output_dir": str(tmp_path),
                 "pretrain.val_every": 5}
    cmd = [sys.executable, "-m", "papermill", str(REPO / "notebooks/01_pretrain.ipynb"),
           str(out), "-p", "steps", "6", "-p", "progress", "False",
           "-y", json.dumps({"overrides": overrides}), "--cwd", str(REPO)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text, figures = notebook_outputs(out)
    assert re.search(r"trained network\s+0\.\d{3}\s+\d+\.\d{2}", text), text[-2000:]
    assert figures >= 2  # curves and validation views
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    assert len(runs) == 1 and runs[0].data.metrics["val/mask_iou"] >= 0


def test_viewpoint_network_reads_cropped_views_and_the_reconstruction_whole_ones(tiny_data):
    """``pretrain.viewpoint_crop``: the viewpoint network's validation views are framed as its
    training views (and the collections) are; the reconstruction's input views are unchanged."""
    from ss3d.stages.data import data_paths
    from ss3d.stages.pretrain import ValidationSet, viewpoint_crop_margin

    cfg = _cfg(tiny_data)
    renders = data_paths(cfg).renders
    margin = viewpoint_crop_margin(cfg)
    assert cfg.pretrain.viewpoint_crop and margin == cfg.data.crop_margin
    whole = ValidationSet.from_renders(renders, cfg.data.categories, ("val", "test"), 4, 1)
    cropped = ValidationSet.from_renders(renders, cfg.data.categories, ("val", "test"), 4, 1,
                                         margin)
    assert whole.viewpoint_images is None
    assert torch.equal(cropped.images, whole.images)
    assert cropped.viewpoint_images.shape == whole.images.shape
    assert not torch.equal(cropped.viewpoint_images, whole.images)
    assert viewpoint_crop_margin(_cfg(tiny_data, **{"pretrain.viewpoint_crop": False})) is None
    assert viewpoint_crop_margin(_cfg(tiny_data, **{"model.viewpoint_net": False})) is None
