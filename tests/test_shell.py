"""The stage shell and what every stage shares: known answers, no tracking branches."""

from __future__ import annotations

import contextlib
import math
import resource
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from ss3d import tracking
from ss3d.config import ConfigError, describe_fields, load_config
from ss3d.engine import Runtime, grad_scaler, load_checkpoint, make_adam, optimiser_step
from ss3d.eval.baselines import baseline_rows
from ss3d.files import WriteError, write_error
from ss3d.stages.evaluate import EvalModel, ratio_rows
from ss3d.stages.pretrain import _lr_factor
from ss3d.stages.shell import StageRun

from .conftest import REPO


def _cfg(tmp_path: Path, **extra):
    return load_config(None, {"name": "shell", "output_dir": str(tmp_path / "out"), **extra})


@dataclass
class _State:
    """The smallest stage state: a step and one list."""

    step: int = 0
    seen: list[int] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        return {"seen": list(self.seen)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.seen = list(state["seen"])


def _exercise(run: StageRun) -> None:
    net = torch.nn.Linear(2, 1)
    with run.open(consumed=[None]):
        run.log_metrics({"loss": 0.5, "step": 1}, step=1)
        fig = __import__("matplotlib.pyplot").pyplot.figure()
        run.log_figure(fig, "a_figure")
        run.set_tag("ss3d.test", "yes")
        run.save(_State(step=3, seen=[1]), model=net)


def test_untracked_run_logs_nothing_and_still_writes_its_checkpoint(tmp_path, mlflow_store):
    run = StageRun(_cfg(tmp_path), "pretrain", out_dir=tmp_path / "stage", track=False)
    _exercise(run)
    assert run.run_id is None
    assert MlflowClient(mlflow_store).search_experiments(filter_string="name = 'shell'") == []
    assert load_checkpoint(run.checkpoint, stage="pretrain")["step"] == 3


def test_tracked_run_logs_metrics_figures_and_the_checkpoint(tmp_path, mlflow_store):
    run = StageRun(_cfg(tmp_path), "pretrain", out_dir=tmp_path / "stage", track=True)
    _exercise(run)
    stored = MlflowClient(mlflow_store).get_run(run.run_id)
    assert stored.info.status == "FINISHED"
    assert stored.data.metrics["loss"] == 0.5 and "step" not in stored.data.metrics
    assert "wall_seconds" in stored.data.metrics and stored.data.tags["ss3d.test"] == "yes"
    client = MlflowClient(mlflow_store)
    assert {a.path for a in client.list_artifacts(run.run_id, "figures")} == {
        "figures/a_figure.png"}
    assert [a.path for a in client.list_artifacts(run.run_id, "checkpoints")] == [
        "checkpoints/last.pt"]
    assert load_checkpoint(run.checkpoint)["mlflow_run_id"] == run.run_id
    # resuming adopts the run id: the same MLflow run continues
    again = StageRun(_cfg(tmp_path), "pretrain", out_dir=tmp_path / "stage", track=True)
    state = _State()
    again.resume(True, state, model=torch.nn.Linear(2, 1))
    assert again.run_id == run.run_id
    assert (state.step, state.seen) == (3, [1])


def test_finish_writes_the_state_unless_the_loop_just_saved_it(tmp_path):
    """One rule for "resumed with nothing left to do": the run ends with its state on disk."""
    net = torch.nn.Linear(2, 1)
    run = StageRun(_cfg(tmp_path), "pretrain", out_dir=tmp_path / "stage", track=False)
    state = _State(step=2, seen=[1, 2])
    run.save(state, model=net)
    stamp = run.checkpoint.stat().st_mtime_ns
    run.finish(state, model=net)  # just saved at this step: nothing written
    assert run.checkpoint.stat().st_mtime_ns == stamp
    # a new invocation resumed at the end (nothing left to do) still writes its checkpoint
    again = StageRun(_cfg(tmp_path), "pretrain", out_dir=tmp_path / "other", track=False)
    resumed = _State()
    again.resume(run.checkpoint, resumed, model=net)
    assert not again.checkpoint.exists()
    again.finish(resumed, model=net)
    payload = load_checkpoint(again.checkpoint, stage="pretrain")
    assert payload["step"] == 2 and payload["extra"] == {"seen": [1, 2]}
    # an untouched state is left alone when resume is off
    untouched = _State(step=5)
    assert again.resume(False, untouched, model=net) is None and untouched.step == 5


def test_training_states_round_trip_through_a_checkpoint(tmp_path):
    """Each training stage's state comes back from its checkpoint as it was saved.

    Mutation caught: the camera bank's logits restored with an error of 1e-6 (``repr``, which
    this test compared before, rounds it away)."""
    from ss3d.hypotheses import CameraBank
    from ss3d.stages.distill import DistillState
    from ss3d.stages.pretrain import PretrainState
    from ss3d.stages.selftrain import SelftrainState

    bank = CameraBank(["a", "b", "c"], 4, (-30.0, 30.0), (1.8, 2.2), seed=1)
    bank.logits[1, 2] = 3.0
    generator = torch.Generator().manual_seed(7)
    torch.rand(3, generator=generator)
    states = {
        "pretrain": (PretrainState(step=4, history=[{"loss": 0.5}], baselines={"b": 1.0},
                                   validation=[{"mask_iou": 0.4}], renders="r.h5"),
                     # the renders are this invocation's (the stage sets them), not restored
                     lambda: PretrainState(renders="r.h5")),
        "selftrain": (SelftrainState(bank=bank, category="bird", pretrained="p.pt", step=6,
                                     epoch=2, last_choice=torch.tensor([0, 3, 1]),
                                     alignment=[[1.0, 0.0], [0.0, 1.0]],
                                     history=[{"loss_after_cameras": 0.1}],
                                     epochs=[{"epoch": 2, "mask_iou": 0.3}]),
                      lambda: SelftrainState(bank=CameraBank(["a", "b", "c"], 4, (-30.0, 30.0),
                                                             (1.8, 2.2), seed=2),
                                             category="bird", pretrained="p.pt")),
        "distill": (DistillState(generator=generator, teachers={"synthetic": "s.pt"}, step=3,
                                 history=[{"loss": 0.2}], agreement_before={"bird": 0.5}),
                    lambda: DistillState(generator=torch.Generator(), teachers={})),
    }
    net = torch.nn.Linear(2, 1)
    for stage, (saved, fresh) in states.items():
        run = StageRun(_cfg(tmp_path), stage, out_dir=tmp_path / stage, track=False)
        run.save(saved, model=net)
        loaded = fresh()
        StageRun(_cfg(tmp_path), stage, out_dir=tmp_path / stage,
                 track=False).resume(True, loaded, model=net)
        assert loaded.step == saved.step, stage
        before, after = saved.state_dict(), loaded.state_dict()
        if stage == "distill":  # the stream's state comes back as data, applied by the stage
            assert torch.equal(loaded.data_rng, before.pop("data_rng"))
            after.pop("data_rng")
            before.pop("teachers"), after.pop("teachers")
        assert _same(after, before), stage


def _same(a, b) -> bool:
    """Equal states: tensors bit for bit (``repr`` rounds them to four digits), containers
    item by item, anything else by ``==``."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
                and a.dtype == b.dtype and torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


def test_a_failing_stage_ends_its_run_failed(tmp_path, mlflow_store):
    run = StageRun(_cfg(tmp_path), "pretrain", out_dir=tmp_path / "stage", track=True)
    with pytest.raises(RuntimeError, match="boom"), run.open():
        raise RuntimeError("boom")
    assert MlflowClient(mlflow_store).get_run(run.run_id).info.status == "FAILED"
    assert mlflow.active_run() is None


def test_only_rank_zero_logs_and_writes(tmp_path, mlflow_store):
    run = StageRun(_cfg(tmp_path), "pretrain", out_dir=tmp_path / "stage", track=True,
                   distributed=False)
    run.runtime = Runtime(device=torch.device("cpu"), rank=1, world_size=2)  # a second rank
    _exercise(run)
    assert run.run_id is None and not run.checkpoint.exists()
    assert MlflowClient(mlflow_store).search_experiments(filter_string="name = 'shell'") == []


def test_learning_rate_schedule_known_values():
    cfg = load_config(None, {"pretrain.steps": 200})
    assert [_lr_factor(cfg, s) for s in (0, 9, 19)] == pytest.approx([0.05, 0.5, 1.0])
    assert _lr_factor(cfg, 20) == pytest.approx(1.0)  # warm-up done: the cosine's top
    middle = 20 + 90  # half-way through the cosine: 0.05 + 0.95 / 2
    assert _lr_factor(cfg, middle) == pytest.approx(0.525)
    assert _lr_factor(cfg, 200) == pytest.approx(0.05) and _lr_factor(cfg, 500) == 0.05
    constant = load_config(None, {"pretrain.steps": 200, "pretrain.schedule": "constant"})
    assert {_lr_factor(constant, s) for s in (0, 50, 199)} == {1.0}


def test_scaled_step_applies_the_unscaled_gradient():
    """The GradScaler path (fp16 on CUDA) on the CPU: scaled backward, unscale, clip, step
    give the same update and gradient norm as a plain step."""
    torch.manual_seed(0)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    results = []
    for scaler in (grad_scaler(torch.device("cpu")),  # inactive on the CPU: a pass-through
                   torch.amp.GradScaler("cpu", init_scale=2.0**12)):
        net = torch.nn.Linear(4, 1)
        torch.nn.init.constant_(net.weight, 0.5)
        torch.nn.init.zeros_(net.bias)
        opt = make_adam(net.parameters(), 0.1)
        loss = (net(x) - y).pow(2).mean()
        norm = optimiser_step(loss, opt, scaler, net.parameters(), grad_clip=0.1)
        results.append((float(norm), net.weight.detach().clone()))
    (plain_norm, plain_w), (scaled_norm, scaled_w) = results
    assert scaled_norm == pytest.approx(plain_norm, rel=1e-5) and plain_norm > 0.1  # clipped
    torch.testing.assert_close(scaled_w, plain_w)


def test_bf16_autocast_stage_step_on_cpu(tmp_path, monkeypatch):
    """A pre-training step of the real model under bf16 autocast (the CPU's AMP path)."""
    from ss3d.engine import autocast
    from ss3d.model import ReconstructionNet

    monkeypatch.setenv("SS3D_CPU_AMP", "1")
    cfg = load_config(None, {"model.encoder_size": 32, "model.latent_dim": 16,
                             "model.hidden": 16, "model.layers": 2})
    net = ReconstructionNet(cfg.model)
    opt = make_adam(net.parameters(), 1e-3)
    before = [p.detach().clone() for p in net.parameters()]
    with autocast(torch.device("cpu")):
        rgb, density = net(torch.rand(2, 3, 32, 32), torch.rand(2, 20, 3) - 0.5)
        assert rgb.dtype == torch.float32  # query returns fp32 for compositing
    loss = rgb.pow(2).mean() + density.mean()
    norm = optimiser_step(loss, opt, grad_scaler(torch.device("cpu")), net.parameters(), 1.0)
    assert math.isfinite(float(norm)) and float(norm) > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_ratio_rows_known_answer():
    summary = [
        {"set": "collection", "category": "bird", "model": "selftrained-bird",
         "fscore@0.1": 0.8},
        {"set": "collection", "category": "bird", "model": "pretrained", "fscore@0.1": 0.5},
        {"set": "collection", "category": "bird", "model": "distilled", "fscore@0.1": 0.6},
        {"set": "synthetic", "category": "car", "model": "pretrained", "fscore@0.1": 0.4},
        {"set": "synthetic", "category": "car", "model": "distilled", "fscore@0.1": 0.5},
    ]
    models = [EvalModel("distilled", "distill", Path("x"))]
    rows = {(r["set"], r["category"]): r for r in ratio_rows(summary, models)}
    # a collection's student is compared with its self-trained teacher, else the pre-trained
    assert rows[("collection", "bird")]["teacher"] == "selftrained-bird"
    assert rows[("collection", "bird")]["ratio"] == pytest.approx(0.75)
    assert rows[("synthetic", "car")]["teacher"] == "pretrained"
    assert rows[("synthetic", "car")]["ratio"] == pytest.approx(1.25)
    assert ratio_rows(summary, [EvalModel("pretrained", "pretrain", Path("x"))]) == []


@pytest.mark.parametrize("old, new", [
    ("optim.lr", "pretrain.lr"), ("selftrain.n_cam_iters", "selftrain.camera_steps"),
    ("selftrain.stage_one_epochs", "selftrain.phase_a_epochs"),
    ("selftrain.grid_resolution", "selftrain.score_size"),
    ("evaluate.grid_resolution", "evaluate.mesh_resolution")])
def test_renamed_keys_fail_naming_the_new_one(tmp_path, old, new):
    with pytest.raises(ConfigError, match=f"'{old}' was renamed '{new}'"):
        load_config(None, {old: 3})
    section, key = old.split(".")
    path = tmp_path / "old.yaml"
    path.write_text(f"name: old\n{section}:\n  {key}: 3\n")
    with pytest.raises(ConfigError, match=f"'{old}' was renamed '{new}' \\({path}\\)"):
        load_config(path)


def test_choices_are_literals_checked_up_front():
    with pytest.raises(ConfigError, match=r"selftrain.select: value 'best' is not one of "
                                          r"\['loss', 'weights'\]"):
        load_config(None, {"selftrain.select": "best"})


def test_every_key_is_documented_and_config_fields_prints_them():
    rows = describe_fields()
    keys = [r["key"] for r in rows if r["type"]]
    assert "selftrain.camera_steps" in keys and "pretrain.lr" in keys
    sections = [r for r in rows if not r["type"]]
    assert all(r["help"] for r in sections), [r["key"] for r in sections if not r["help"]]
    literal = next(r for r in rows if r["key"] == "selftrain.select")
    assert "Literal" in literal["type"] and literal["value"] == '"loss"'
    out = subprocess.run([sys.executable, "-m", "ss3d.cli", "config", "--fields", "--set",
                          "selftrain.hypotheses=3"], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert "selftrain.hypotheses (int) = 3" in out and "Camera hypotheses per image" in out


def _sphere_item(radius: float, category: str = "car", points: int = 4096) -> Any:
    from ss3d.eval.baselines import EvalItem

    g = torch.Generator().manual_seed(1)
    directions = torch.randn(points, 3, generator=g)
    surface = radius * directions / directions.norm(dim=-1, keepdim=True)
    volume = torch.rand(4096, 3, generator=g) - 0.5
    return EvalItem(set="synthetic", category=category, key="sphere",
                    image=torch.zeros(3, 16, 16), surface=surface, volume_points=volume,
                    volume_inside=volume.norm(dim=-1) <= radius, mesh_path=None)


class _SphereNet(torch.nn.Module):
    """An analytic 'network' whose field is a solid sphere of radius 0.3, whatever the image."""

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return torch.zeros(images.shape[0], 1)

    def query(self, points: torch.Tensor, latent: torch.Tensor):
        inside = (points.norm(dim=-1, keepdim=True) <= 0.3).float()
        return torch.zeros(*points.shape[:-1], 3), inside * 20.0


def test_evaluate_item_known_answer_on_an_analytic_sphere():
    """A field that is exactly the item's shape scores F = 1 and volumetric IoU = 1; the same
    field rotated by G (the self-training frame) is undone by the alignment."""
    from ss3d.stages.evaluate import evaluate_item

    cfg = load_config(None, {"evaluate.mesh_resolution": 48, "evaluate.coarse_factor": 1})
    item = _sphere_item(0.3)
    metrics, mesh = evaluate_item(_SphereNet(), item, None, cfg, None, torch.device("cpu"))
    assert metrics["fscore@0.05"] == pytest.approx(1.0) and metrics["fscore@0.1"] == 1.0
    assert metrics["vol_iou"] > 0.97 and metrics["empty_mesh"] == 0.0
    assert (mesh.verts.norm(dim=-1) - 0.3).abs().max() < 0.03  # the surface where it belongs
    small = _sphere_item(0.15)  # a shape half the size: far from the prediction
    worse, _ = evaluate_item(_SphereNet(), small, None, cfg, None, torch.device("cpu"))
    assert worse["fscore@0.05"] < 0.1 and worse["vol_iou"] == pytest.approx(0.125, abs=0.03)


class _OffCentreNet(torch.nn.Module):
    """A solid ball of radius 0.15 centred at (0.3, 0, 0) of its own frame, whatever the image."""

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return torch.zeros(images.shape[0], 1)

    def query(self, points: torch.Tensor, latent: torch.Tensor):
        centre = torch.tensor([0.3, 0.0, 0.0])
        inside = ((points - centre).norm(dim=-1, keepdim=True) <= 0.15).float()
        return torch.zeros(*points.shape[:-1], 3), inside * 20.0


def test_frame_check_reads_a_model_in_both_frames():
    """The ball of the learned frame lies at (0, 0, 0.3) of the true frame (G turns 90° about
    the up axis): scored as it stands (the prior's frame, the default) it misses the truth and
    its aligned reading finds it; scored turned by G it scores F = 1 and its prior-frame
    reading misses. Both name the turn."""
    import math

    from ss3d.eval.items import EvalItem
    from ss3d.stages.evaluate import evaluate_item

    cfg = load_config(None, {"evaluate.mesh_resolution": 48, "evaluate.coarse_factor": 1})
    g = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # x_learned = G x
    ball = _sphere_item(0.15)
    truth = EvalItem(set="collection", category="ball", key="b", image=ball.image,
                     surface=ball.surface + torch.tensor([0.0, 0.0, 0.3]),
                     volume_points=ball.volume_points,
                     volume_inside=(ball.volume_points - torch.tensor([0.0, 0.0, 0.3])).norm(
                         dim=-1) <= 0.15, mesh_path=None)
    cpu = torch.device("cpu")
    aligned, _ = evaluate_item(_OffCentreNet(), truth, g, cfg, None, cpu, g)
    assert aligned["fscore@0.05"] > 0.99
    assert aligned["fscore@0.05_prior_frame"] < 0.05 and "fscore@0.05_aligned" not in aligned
    assert aligned["frame_turn_deg"] == pytest.approx(90.0)
    as_is, _ = evaluate_item(_OffCentreNet(), truth, None, cfg, None, cpu, g)
    assert as_is["fscore@0.05"] < 0.05 and as_is["fscore@0.05_aligned"] > 0.99
    assert "fscore@0.05_prior_frame" not in as_is
    assert as_is["frame_turn_deg"] == pytest.approx(90.0)
    # with the identity the two readings are one
    same, _ = evaluate_item(_OffCentreNet(), truth, torch.eye(3), cfg, None, cpu, torch.eye(3))
    assert same["fscore@0.05_prior_frame"] == same["fscore@0.05"] < 0.05
    assert math.isclose(same["frame_turn_deg"], 0.0, abs_tol=1e-9)
    # a model without a frame from its poses has no frame check
    plain, _ = evaluate_item(_OffCentreNet(), truth, None, cfg, None, cpu)
    assert not any(k.endswith(("_prior_frame", "_aligned")) for k in plain)
    assert "frame_turn_deg" not in plain


def test_baseline_rows_known_answer():
    """A sphere item of the category's mean radius: the sphere baseline is exact; the medoid of
    three training spheres (radii 0.2, 0.3, 0.4) is the middle one, and the oracle finds the
    training sphere that is the item."""
    from ss3d.eval.baselines import MEDOID, ORACLE, SPHERE, Baselines, Shapes, medoid_index

    cfg = load_config(None, {})
    shapes = [_sphere_item(r) for r in (0.2, 0.3, 0.4)]
    train = Shapes(torch.stack([s.surface for s in shapes]),
                   torch.stack([s.volume_points for s in shapes]),
                   torch.stack([s.volume_inside for s in shapes]), ["r2", "r3", "r4"])
    assert medoid_index(train.surfaces) == 1
    baselines = Baselines(radius={"car": 0.3}, default_radius=0.5, medoid={"car": 1},
                          train={"car": train})
    rows = {r["model"]: r for r in baseline_rows(_sphere_item(0.3), baselines, cfg, None)}
    assert rows[SPHERE]["fscore@0.05"] == pytest.approx(1.0)
    assert rows[SPHERE]["vol_iou"] == pytest.approx(1.0)
    assert rows[MEDOID]["fscore@0.05"] == pytest.approx(1.0)
    assert rows[ORACLE]["oracle_model"] == "r3" and rows[ORACLE]["fscore@0.02"] == 1.0
    # zero-shot: no medoid or oracle, and the sphere takes the training categories' size
    zero = _sphere_item(0.3)
    zero.zero_shot = True
    rows = {r["model"]: r for r in baseline_rows(zero, baselines, cfg, None)}
    assert set(rows) == {SPHERE} and rows[SPHERE]["fscore@0.05"] < 0.1  # r 0.5 vs 0.3


@contextlib.contextmanager
def _file_size_limit(size: int):
    """A real write failure: the kernel refuses writes past ``size`` bytes (EFBIG; Python
    ignores SIGXFSZ), as a full disk refuses them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_failed_resume_leaves_the_finished_run_finished_and_names_the_file(tmp_path,
                                                                             mlflow_store):
    cfg, out = _cfg(tmp_path), tmp_path / "stage"
    net = torch.nn.Linear(64, 64)
    first = StageRun(cfg, "pretrain", out_dir=out, track=True)
    with first.open():
        first.finish(_State(step=3, seen=[1]), model=net)
    client = MlflowClient(mlflow_store)
    finished = client.get_run(first.run_id).info
    assert finished.status == "FINISHED"

    again = StageRun(cfg, "pretrain", out_dir=out, track=True)
    state = _State()
    again.resume(True, state, model=net)
    assert again.run_id == first.run_id
    with pytest.raises(WriteError) as err, again.open():
        state.step = 5
        with _file_size_limit(4096):
            again.save(state, model=net)
    assert str(err.value) == (f"cannot write {out / 'last.pt'}: the file exceeds the process's "
                              "file size limit (ulimit -f)")
    after = client.get_run(first.run_id).info
    assert (after.status, after.end_time) == ("FINISHED", finished.end_time)
    assert tracking.latest_run("shell", "pretrain").info.run_id == first.run_id
    assert load_checkpoint(out / "last.pt")["step"] == 3  # the good checkpoint is untouched
    assert [p.name for p in out.iterdir()] == ["last.pt"]  # no temp file left


def test_write_errors_name_the_file_and_the_cause(tmp_path):
    try:  # a real full disk: /dev/full refuses every write with ENOSPC
        with open("/dev/full", "wb") as fh:
            fh.write(b"x")
    except OSError as full:
        message = str(write_error(tmp_path / "last.pt", full))
    assert message.startswith(f"cannot write {tmp_path / 'last.pt'}: the disk is full (")
    assert write_error(tmp_path / "x", FileNotFoundError(2, "gone")) is None  # not a write
