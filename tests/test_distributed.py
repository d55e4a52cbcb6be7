"""Several processes (gloo on CPU): the same arithmetic as one process, one writer, any resume.

The step-level tests spawn two processes that rendezvous through a file; the stage test runs
``torchrun --nproc-per-node 2`` on the real CLI, as a cluster job would.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from mlflow.tracking import MlflowClient

from ss3d.config import format_set_args, load_config
from ss3d.engine import Runtime, grad_scaler, load_checkpoint, make_adam, optimiser_step
from ss3d.hypotheses import CameraBank
from ss3d.model import ReconstructionNet
from ss3d.stages.selftrain_loops import merge_bank

from .conftest import REPO
from .test_pretrain import TINY

WORLD = 2


def _model_cfg():
    return load_config(None, TINY).model


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(4, 3, 32, 32, generator=g), torch.rand(4, 50, 3, generator=g) - 0.5


def _loss(net: ReconstructionNet, images: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    rgb, density = net(images, points)
    return rgb.pow(2).mean() + torch.tanh(density).mean()


def _one_step(net: ReconstructionNet, images, points, runtime: Runtime | None
              ) -> tuple[float, dict[str, torch.Tensor]]:
    """One update without clipping; the gradient norm and the gradients it applied."""
    optimizer = make_adam(net.reconstruction_parameters(), 1e-3)
    norm = optimiser_step(_loss(net, images, points), optimizer,
                          grad_scaler(torch.device("cpu")), net.reconstruction_parameters(),
                          grad_clip=0, runtime=runtime)
    return float(norm), {name: p.grad.clone() for name, p in net.named_parameters()
                         if not name.startswith("viewpoint.")}


def _worker(rank: int, rendezvous: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank,
                            world_size=WORLD)
    runtime = Runtime(device=torch.device("cpu"), rank=rank, world_size=WORLD)
    torch.manual_seed(100 + rank)  # each rank initialises differently ...
    net = ReconstructionNet(_model_cfg()).eval()  # eval: BatchNorm statistics are not batched
    runtime.broadcast_module(net)  # ... until rank 0's weights are broadcast
    images, points = _batch()
    mine = runtime.shard(4)
    norm, grads = _one_step(net, images[mine], points[mine], runtime)

    bank = CameraBank([f"img{i}" for i in range(5)], 3, seed=1)
    owned = runtime.shard(len(bank))
    bank.logits[owned] = float(rank + 1)  # every rank changes only its own rows
    bank.raw_azimuth[owned] += 10.0 * (rank + 1)
    merge_bank(bank, owned, runtime)
    torch.save({"state": net.state_dict(), "norm": norm, "grads": grads,
                "bank": bank.state_dict(),
                "owned": owned}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_two_ranks_step_like_one_process_with_the_global_batch(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=WORLD)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]

    torch.manual_seed(100)  # rank 0's initialisation, in one process, on all four images
    net = ReconstructionNet(_model_cfg()).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    norm, grads = _one_step(net, *_batch(), runtime=None)
    for rank in ranks:
        # the mean of the two half-batch gradients is the full batch's (a sum would be twice
        # it; Adam's step is blind to that scale, so the gradients are compared, not only the
        # weights)
        assert rank["norm"] == pytest.approx(norm, rel=1e-4)
        for key, grad in grads.items():
            torch.testing.assert_close(rank["grads"][key], grad, rtol=1e-4, atol=1e-7)
        changed = 0
        for key, value in net.state_dict().items():
            # Adam divides by sqrt(v) + eps: a gradient within float noise of 0 can step by up
            # to lr either way, so weights agree to a fraction of lr (1e-3), not to float eps
            torch.testing.assert_close(rank["state"][key], value, rtol=0, atol=2e-4)
            changed += int(not torch.equal(value, before[key]))
        # not vacuous: the step moved weights (the decoder's; FiLM's zero-initialised output
        # layer leaves the encoder without a gradient at the first step)
        assert changed > 0 and sum(int(g.abs().sum() > 0) for g in grads.values()) >= 4

    # the merged camera bank: each row as its owner left it, the same on every rank
    expected = CameraBank([f"img{i}" for i in range(5)], 3, seed=1)
    for r, rank in enumerate(ranks):
        expected.logits[rank["owned"]] = float(r + 1)
        expected.raw_azimuth[rank["owned"]] += 10.0 * (r + 1)
    for rank in ranks:
        assert torch.equal(rank["bank"]["logits"], expected.logits)
        assert torch.equal(rank["bank"]["raw_azimuth"], expected.raw_azimuth)


def test_local_batch_and_shards():
    runtime = Runtime(device=torch.device("cpu"), rank=1, world_size=3)
    assert runtime.local_batch(6) == 2
    with pytest.raises(ValueError, match="global batch.*3 processes"):
        runtime.local_batch(8)
    assert runtime.local_batch(8, available=7) == 2  # a small dataset: 6 of its 7 items
    shards = [Runtime(torch.device("cpu"), rank=r, world_size=3).shard(7) for r in range(3)]
    assert sorted(torch.cat(shards).tolist()) == list(range(7))  # each item exactly once


@pytest.mark.slow
def test_selftrain_under_torchrun_writes_once_and_resumes_on_one_process(tmp_path):
    """Two gloo processes self-train through the CLI; one MLflow run and one checkpoint with
    the whole camera bank; the checkpoint resumes in one process."""
    from .test_selftrain import SELF

    overrides = {**SELF, "name": "ddp", "data.root": str(tmp_path / "data"),
                 "output_dir": str(tmp_path / "out"), "pretrain.steps": 4,
                 "pretrain.val_every": 4, "data.images_per_collection": 8,
                 "optim.batch_size": 4, "selftrain.epochs": 2, "selftrain.eval_every": 1}
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "ss3d.cli"]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc-per-node", str(WORLD)]

    def call(command: list[str]) -> None:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    call(cli + ["render"] + format_set_args(overrides))
    call(torchrun + ["-m", "ss3d.cli", "pretrain"] + format_set_args(overrides))
    call(torchrun + ["-m", "ss3d.cli", "selftrain"] + format_set_args(overrides))

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("ddp")
    runs = {stage: client.search_runs([experiment.experiment_id],
                                      f"tags.`ss3d.stage` = '{stage}'")
            for stage in ("pretrain", "selftrain")}
    assert [len(r) for r in runs.values()] == [1, 1]  # rank 1 opened no run
    assert all(r[0].info.status == "FINISHED" for r in runs.values())
    out = tmp_path / "out" / "ddp" / "selftrain-bird"
    assert sorted(p.name for p in out.iterdir()) == ["camera_bank.pt", "last.pt"]
    payload = load_checkpoint(out / "last.pt")
    n_train = len(payload["extra"]["bank"]["image_ids"])
    # searched hypotheses have left the grid's round elevations
    cfg = load_config(None, overrides)
    from ss3d.scoring import pose_grid

    grid_elevations = set(pose_grid(cfg)[1].tolist())
    bank = CameraBank(payload["extra"]["bank"]["image_ids"], cfg.selftrain.hypotheses)
    bank.load_state_dict(payload["extra"]["bank"])
    elevation = bank.cameras()[1]
    searched = [i for i in range(n_train)
                if not all(round(float(e), 3) in grid_elevations for e in elevation[i])]
    # each rank searches at least one batch of its own images (every WORLD-th) per epoch, and
    # rank 0's checkpoint holds both ranks' rows
    assert {i % WORLD for i in searched} == set(range(WORLD)), searched
    assert payload["step"] == 2 * (n_train // 4)  # two epochs of the global batch
    assert runs["selftrain"][0].data.metrics["epoch/mask_iou"] > 0

    # resume in one process, one epoch further: the same run continues
    call(cli + ["selftrain", "--resume"] + format_set_args({**overrides,
                                                            "selftrain.epochs": 3}))
    resumed = load_checkpoint(out / "last.pt")
    assert resumed["step"] == 3 * (n_train // 4)
    assert resumed["mlflow_run_id"] == runs["selftrain"][0].info.run_id
    assert len(resumed["extra"]["epochs"]) == 4  # start, three epochs
