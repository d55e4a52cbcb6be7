"""Distillation: teacher grouping, both loss modes, the registry, the notebook."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from ss3d.config import load_config
from ss3d.engine import save_checkpoint
from ss3d.model import ReconstructionNet, load_network
from ss3d.stages.data import build_rendered_collection, data_paths, render_stage
from ss3d.stages.distill import (
    SYNTHETIC,
    DistillData,
    MissingTeacherError,
    TeacherPool,
    distill_stage,
    find_teachers,
    per_image_loss,
    point_outputs,
    random_points,
    random_rays,
    ray_outputs,
)
from ss3d.stages.pretrain import pretrain_stage
from ss3d.stages.unified import load_unified

from .conftest import REPO, notebook_outputs
from .test_pretrain import TINY

DIST = {**TINY, "data.collections": ["bird"], "data.images_per_collection": 6,
        "data.collection_image_size": 48, "data.crop_size": 24, "distill.steps": 12,
        "distill.points_per_image": 256, "distill.rays_per_image": 48,
        "distill.agreement_images": 2, "distill.p_synthetic": 0.3, "distill.lr": 1e-3,
        "optim.batch_size": 4}


@pytest.fixture(scope="module")
def tiny_teachers(tmp_path_factory):
    """Renders, a bird collection, a pre-trained model and a 'bird' teacher that differs from
    it (a separately initialised network), so distillation has something to learn."""
    root = tmp_path_factory.mktemp("distill")
    cfg = load_config(None, {**DIST, "data.root": str(root / "data"),
                             "output_dir": str(root / "out"), "pretrain.steps": 3,
                             "pretrain.val_every": 3})
    render_stage(cfg, with_collections=False, progress=False, track=False)
    build_rendered_collection(cfg, "bird", data_paths(cfg), progress=False)
    pre = pretrain_stage(cfg, progress=False, track=False)
    torch.manual_seed(123)
    other = ReconstructionNet(cfg.model)
    with torch.no_grad():  # a clearly different field (the FiLM head starts at zero)
        other.decoder.out.bias.copy_(torch.tensor([1.0, -1.0, 0.5, 0.3]))
    teacher = save_checkpoint(root / "bird_teacher.pt", stage="selftrain", step=0,
                              config={"model": cfg.model.__dict__}, model=other)
    return root, pre.checkpoint, teacher


def _cfg(root, **extra):
    return load_config(None, {**DIST, "name": "unit", "data.root": str(root / "data"),
                              "output_dir": str(root / "out"), **extra})


def test_batch_with_three_teachers_makes_three_teacher_forwards():
    torch.manual_seed(0)
    cfg = load_config(None, TINY)
    nets = {name: ReconstructionNet(cfg.model) for name in ("synthetic", "bird", "airplane")}
    pool = TeacherPool(nets, torch.device("cpu"), on_device=False)
    labels = ["bird", "synthetic", "bird", "airplane", "synthetic", "bird", "airplane", "bird"]
    images = torch.rand(len(labels), 3, 24, 24)
    points = random_points(len(labels), 50, 0.6, torch.device("cpu"))
    out = pool.grouped(labels, lambda net, rows: point_outputs(net, images[rows], points[rows]))
    assert pool.forwards == 3
    assert set(out) == {"bird", "synthetic", "airplane"}
    assert out["bird"][0].tolist() == [0, 2, 5, 7]
    # grouped results equal each image through its own teacher
    for name, (rows, (rgb, dens)) in out.items():
        nets[name].eval()
        for k, r in enumerate(rows.tolist()):
            ref = point_outputs(nets[name], images[r:r + 1], points[r:r + 1])
            assert torch.allclose(rgb[k], ref[0][0], atol=1e-5)
            assert torch.allclose(dens[k], ref[1][0], atol=1e-5)


def _fixed_loss(cfg, student, teacher, images, seed=0):
    g = torch.Generator().manual_seed(seed)
    cpu = torch.device("cpu")
    with torch.no_grad():
        if cfg.distill.mode == "point":
            pts = random_points(images.shape[0], 512, cfg.distill.point_cube, cpu, g)
            s, t = point_outputs(student, images, pts), point_outputs(teacher, images, pts)
        else:
            from ss3d.cameras import Intrinsics

            intr = Intrinsics.from_fov(cfg.render.fov_degrees, cfg.data.crop_size)
            rays = random_rays(images.shape[0], 128, cfg, intr, cpu, g)
            s = ray_outputs(student, images, rays, cfg.model.n_samples, 7)
            t = ray_outputs(teacher, images, rays, cfg.model.n_samples, 7)
    return float(per_image_loss(cfg, s, t).mean())


@pytest.mark.parametrize("to_specialist", [False, True])
def test_renders_of_a_category_with_a_specialist_go_to_that_teacher(tiny_teachers,
                                                                   to_specialist):
    root, _, _ = tiny_teachers
    cfg = _cfg(root, **{"distill.p_synthetic": 1.0,
                        "distill.renders_to_specialist": to_specialist})
    paths = data_paths(cfg)
    # the bird photos stand in for a collection of the synthetic category "car"
    data = DistillData(cfg, {"car": paths.collection("bird")}, paths.renders, 0)
    _, labels, cats = data.batch(24)
    assert set(cats) == {"car", "laptop"}  # p_synthetic = 1: renders only
    for label, cat in zip(labels, cats):
        expected = "car" if (to_specialist and cat == "car") else SYNTHETIC
        assert label == expected, (label, cat)


@pytest.mark.parametrize("mode", ["point", "ray"])
def test_distillation_lowers_the_loss(tiny_teachers, mode):
    root, pretrained, teacher_path = tiny_teachers
    cfg = _cfg(root, **{"distill.mode": mode, "distill.p_synthetic": 0.0,
                        "output_dir": str(root / f"out-{mode}")})
    teacher, _ = load_network(teacher_path)
    start, _ = load_network(pretrained)
    images = DistillData(cfg, {"bird": data_paths(cfg).collection("bird")}, None, 5).batch(4)[0]
    before = _fixed_loss(cfg, start, teacher, images)
    result = distill_stage(cfg, teachers={"synthetic": str(pretrained),
                                          "bird": str(teacher_path)},
                           progress=False, track=False)
    student, _ = load_network(result.checkpoint)
    after = _fixed_loss(cfg, student, teacher, images)
    assert after < 0.7 * before, (before, after)
    assert all(f"loss/{SYNTHETIC}" not in h for h in result.history)  # p_synthetic = 0
    assert set(result.agreement) == {"bird"}


def test_missing_teacher_says_what_to_run(tiny_teachers, mlflow_store):
    root, pretrained, _ = tiny_teachers
    cfg = _cfg(root, **{"output_dir": str(root / "empty")})
    with pytest.raises(MissingTeacherError, match="02_selftrain.ipynb .*-p category bird"):
        find_teachers(cfg, {"synthetic": str(pretrained)})
    with pytest.raises(ValueError, match="teacher override for \\['cat'\\]"):
        find_teachers(cfg, {"cat": "x.pt"})


def test_student_is_registered_and_loads_by_name(tiny_teachers, mlflow_store):
    root, pretrained, teacher_path = tiny_teachers
    cfg = _cfg(root, **{"distill.steps": 2, "output_dir": str(root / "out-registry")})
    result = distill_stage(cfg, teachers={"synthetic": str(pretrained),
                                          "bird": str(teacher_path)}, progress=False)
    assert result.model_version == "1"

    run = MlflowClient(mlflow_store).get_run(result.run_id)
    assert "agreement/bird" in run.data.metrics and "loss/bird" in run.data.metrics
    loaded = load_unified()
    student, _ = load_network(result.checkpoint)
    images = torch.rand(2, 3, 24, 24)
    pts = random_points(2, 64, 0.5, torch.device("cpu"))
    with torch.no_grad():
        assert torch.allclose(point_outputs(loaded, images, pts)[1],
                              point_outputs(student, images, pts)[1], atol=1e-6)
    # the pyfunc: latent codes from images, the weights in an ss3d checkpoint (no pickle)
    import mlflow.pyfunc

    pyfunc = mlflow.pyfunc.load_model("models:/ss3d-unified/1")
    with torch.no_grad():
        expected = student.encode(images).numpy()
    assert np.allclose(pyfunc.predict(images.numpy()), expected, atol=1e-6)
    client = MlflowClient(mlflow_store)
    version = client.get_model_version("ss3d-unified", "1")
    assert version.tags["ss3d.run_id"] == result.run_id and "bird" in version.description
    from mlflow.artifacts import download_artifacts

    local = Path(download_artifacts(artifact_uri="models:/ss3d-unified/1"))
    files = [p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()]
    assert "artifacts/student.pt" in files
    assert not any(f.endswith((".pkl", ".pth")) for f in files), files
    # a resumed run continues in the same MLflow run and registers version 2
    cfg.distill.steps = 3
    again = distill_stage(cfg, teachers={"synthetic": str(pretrained),
                                         "bird": str(teacher_path)}, resume=True,
                          progress=False)
    assert again.run_id == result.run_id and again.model_version == "2"
    assert [h["step"] for h in again.history] == [1, 2, 3]


@pytest.mark.slow
def test_distill_notebook_through_papermill(tiny_teachers, tmp_path):
    root, pretrained, teacher_path = tiny_teachers
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    out = tmp_path / "out.ipynb"
    overrides = {**DIST, "data.root": str(root / "data"), "output_dir": str(tmp_path),
                 "distill.steps": 3}
    params = {"overrides": overrides, "progress": False,
              "teachers": {"synthetic": str(pretrained), "bird": str(teacher_path)}}
    cmd = [sys.executable, "-m", "papermill", str(REPO / "notebooks/03_distill.ipynb"),
           str(out), "-p", "mode", "ray", "-y", json.dumps(params), "--cwd", str(REPO)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text, figures = notebook_outputs(out)
    assert "registered version 1" in text and re.search(r"bird\s+\d\.\d{3}\s+\d\.\d{3}", text)
    assert figures >= 3  # curves, agreement, comparison


def test_student_augmentations_keep_geometry_and_background():
    from ss3d.stages.distill import augment_images

    g = torch.Generator().manual_seed(0)
    images = torch.zeros(6, 3, 16, 16)
    images[:, :, 4:12, 4:12] = torch.rand(6, 3, 8, 8) * 0.8 + 0.1
    out = augment_images(images, g)
    assert out.shape == images.shape and out.min() >= 0 and out.max() <= 1
    background = images.sum(1, keepdim=True) == 0
    assert (out.masked_select(background) == 0).all()  # masked background stays black
    assert not torch.allclose(out, images)  # colours change ...
    assert torch.equal(out.sum(1) > 0, images.sum(1) > 0)  # ... the silhouette does not
